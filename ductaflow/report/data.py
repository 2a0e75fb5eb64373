"""The data behind the page: an index DataFrame (and each run's ``status.json``) as dataclasses.

``report_data(frame)`` gives a ``ReportData``: the header, the chart series and the table rows,
plain frozen values that the charts (``svg``) and the page (``html``) only format.
``relative_href`` is how every link is made: relative to the page, or a ``file://`` URI.
"""

from __future__ import annotations

import os
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..process import strip_ansi
from ..rundir import CONFIG_FILE
from ..spec import ERROR_ANCHOR, NOT_RUN, OK, RUNNING
from .fmt import (
    GOOD,
    as_text,
    fmt_num,
    fmt_seconds,
    is_missing,
    is_number,
    native,
    ordered_counts,
    status_rank,
)
from .history import TrialHistory, trial_histories
from .series import (
    FlowTiming,
    Histogram,
    ResultSeries,
    StatusByParam,
    column_values,
    duration_histogram,
    flow_timings,
    numeric_column,
    result_series,
    status_bars,
)

__all__ = [
    "FlowInfo",
    "Header",
    "Link",
    "ReportData",
    "Row",
    "RunDetail",
    "Value",
    "cell_value",
    "flow_links",
    "flows_from_columns",
    "relative_href",
    "report_data",
    "traceback_tail",
]
_TRACEBACK_LINES = 15


# -- the data behind the page ----------------------------------------------------------------------
@dataclass(frozen=True)
class FlowInfo:
    """One flow of a run, as far as the report needs it (from ``status.json``)."""

    name: str
    #: File name of the executed notebook in the run directory.
    notebook: str
    status: str = OK
    #: 1-based number of the failing cell among the flow's own cells.
    failed_cell: int | None = None
    #: The notebook holds the ``ductaflow-error`` marker above its failing cell.
    error_anchor: bool = False
    #: Link the rendered ``.html`` (False: the ``.ipynb``, when it could not be rendered).
    html: bool = True
    #: The notebook was written (False for a flow that never ran).
    exists: bool = True


@dataclass(frozen=True)
class RunDetail:
    """What ``status.json`` adds to a run's index row."""

    flows: tuple[FlowInfo, ...] = ()
    traceback: str | None = None


@dataclass(frozen=True)
class Header:
    title: str
    sweeps: tuple[str, ...]
    n_runs: int
    #: ``(status, count)`` in ``STATUS_ORDER``, statuses with no run left out.
    counts: tuple[tuple[str, int], ...]
    total_s: float
    median_s: float | None
    started: datetime | None
    finished: datetime | None
    generated: datetime
    #: Parameters with one value in every run: ``(key, value)``.
    constants: tuple[tuple[str, str], ...] = ()
    #: Results with one value in every run that recorded them: ``(name, value)``.
    constant_results: tuple[tuple[str, str], ...] = ()

    @property
    def n_bad(self) -> int:
        return sum(n for s, n in self.counts if s not in GOOD)

    @property
    def wall_s(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return (self.finished - self.started).total_seconds()


@dataclass(frozen=True)
class Value:
    """A table cell: its text, a number to sort by, and the full value as a tooltip."""

    text: str
    sort: float | None = None
    title: str = ""


@dataclass(frozen=True)
class Link:
    label: str
    #: Relative to the report (or a ``file://`` URI); None when there is nothing to open.
    href: str | None
    status: str = OK
    title: str = ""


@dataclass(frozen=True)
class Row:
    """One run in the table."""

    sweep: str
    run: str
    status: str
    error: str
    traceback: str
    duration: Value
    params: tuple[Value, ...]
    results: tuple[Value, ...]
    notebooks: tuple[Link, ...]
    config: Link
    run_dir: Link
    #: Where the error is: the failing notebook, at its failing cell when it has the marker.
    error_href: str | None = None
    #: The best trial of an optimize sweep.
    best: bool = False
    #: How many attempts the run took (more than one: a worker was lost, or ``--retries``).
    attempts: int = 1


@dataclass(frozen=True)
class ReportData:
    header: Header
    durations: Histogram
    flow_timings: tuple[FlowTiming, ...]
    status_by_param: tuple[StatusByParam, ...]
    results: tuple[ResultSeries, ...]
    #: Parameter keys shown in the table (the varied ones), without the ``param.`` prefix.
    param_columns: tuple[str, ...]
    #: Result names shown in the table, without the ``result.`` prefix.
    result_columns: tuple[str, ...]
    rows: tuple[Row, ...]
    #: Links to files beside the report (``index.csv``).
    index_href: str | None = None
    #: Optimize sweeps' trials: each value and the best so far (``history``).
    histories: tuple[TrialHistory, ...] = ()


def cell_value(value: Any, *, result: bool = False) -> Value:
    """A table cell: results to 4 significant digits, long text cut (in full as its title)."""
    value = native(value)
    if is_missing(value):
        return Value("")
    if is_number(value):
        text = fmt_num(float(value)) if result and isinstance(value, float) else as_text(value)
        return Value(text, float(value), repr(value) if text != as_text(value) else "")
    text = as_text(value)
    if len(text) > 80:
        return Value(text[:79] + "…", None, text)
    return Value(text)


def relative_href(target: Path, base: Path | None, fragment: str = "") -> str:
    """A link to ``target`` from a page in ``base`` (quoted), or its ``file://`` URI."""
    if base is None:
        href = target.absolute().as_uri()
    else:
        href = quote(os.path.relpath(target, base).replace(os.sep, "/"), safe="/")
    return f"{href}#{fragment}" if fragment else href


def flows_from_columns(record: Mapping[str, Any], flow_columns: list[str]) -> RunDetail:
    """A run's flows read from its ``flow.<stem>.duration_s`` columns (no ``status.json``)."""
    names = [
        c[len("flow.") : -len(".duration_s")] for c in flow_columns if not is_missing(record[c])
    ]
    status = record.get("status") or ""
    flows = []
    for i, name in enumerate(names):
        last = i == len(names) - 1
        bad = last and status not in GOOD
        flows.append(
            FlowInfo(name, f"{name}_executed.ipynb", status if bad else OK, error_anchor=bad)
        )
    return RunDetail(tuple(flows))


def _header(
    frame: Any,
    statuses: list[str],
    varied: list[str],
    title: str | None,
    generated: datetime | None,
) -> Header:
    sweeps = tuple(sorted({as_text(s) for s in column_values(frame, "sweep")}))
    params = [c for c in frame.columns if c.startswith("param.") and c not in varied]
    results = [c for c in frame.columns if c.startswith("result.")]
    durations = [float(d) for d in column_values(frame, "duration_s") if is_number(d)]
    started = frame["started"].dropna() if "started" in frame.columns else ()
    finished = frame["finished"].dropna() if "finished" in frame.columns else ()
    return Header(
        title=title or (sweeps[0] if len(sweeps) == 1 else f"{len(sweeps)} sweeps"),
        sweeps=sweeps,
        n_runs=len(frame),
        counts=ordered_counts(Counter(statuses)),
        total_s=sum(durations),
        median_s=statistics.median(durations) if durations else None,
        started=started.min().to_pydatetime() if len(started) else None,
        finished=finished.max().to_pydatetime() if len(finished) else None,
        generated=generated or datetime.now(timezone.utc),
        constants=tuple(
            (c.removeprefix("param."), as_text(frame[c].dropna().iloc[0]))
            for c in params
            if frame[c].notna().any()
        ),
        constant_results=tuple(
            (c.removeprefix("result."), cell_value(frame[c].dropna().iloc[0], result=True).text)
            for c in results
            if frame[c].nunique(dropna=True) == 1
        ),
    )


def flow_links(
    flows: Iterable[FlowInfo], run_href: str, anchor: str = ERROR_ANCHOR
) -> tuple[tuple[Link, ...], str | None]:
    """The links to a run's notebooks, and where its error is (the first failing notebook)."""
    links = []
    error_href = None
    for flow in flows:
        if not flow.exists:
            links.append(Link(flow.name, None, flow.status, "did not run"))
            continue
        name = os.path.splitext(flow.notebook)[0] + ".html" if flow.html else flow.notebook
        href = f"{run_href}/{quote(name)}"
        if flow.html and flow.error_anchor:
            href += f"#{anchor}"
        where = f" at cell {flow.failed_cell}" if flow.failed_cell else ""
        links.append(Link(flow.name, href, flow.status, f"{flow.status}{where}: {name}"))
        if error_href is None and flow.status not in (OK, NOT_RUN, RUNNING):
            error_href = href
    return tuple(links), error_href


def _row(
    record: Mapping[str, Any],
    status: str,
    detail: RunDetail,
    params: list[str],
    results: list[str],
    base: Path | None,
    anchor: str,
) -> Row:
    run_dir = Path(as_text(record.get("run_dir")))
    run_href = relative_href(run_dir, base)  # a file in it: run_href + "/" + its quoted name
    links, error_href = flow_links(detail.flows, run_href, anchor)
    duration = record.get("duration_s")
    return Row(
        sweep=as_text(record.get("sweep")),
        run=as_text(record.get("run")),
        status=status,
        error=as_text(record.get("error")),
        traceback=traceback_tail(detail.traceback),
        duration=Value(fmt_seconds(duration), duration) if is_number(duration) else Value(""),
        params=tuple(cell_value(record[c]) for c in params),
        results=tuple(cell_value(record[c], result=True) for c in results),
        notebooks=links,
        config=Link(CONFIG_FILE, f"{run_href}/{CONFIG_FILE}"),
        run_dir=Link(run_dir.name, f"{run_href}/"),
        error_href=error_href,
        attempts=int(attempts) if is_number(attempts := record.get("attempts")) else 1,
    )


def report_data(
    frame: Any,
    *,
    details: Mapping[str, RunDetail] | None = None,
    base: str | Path | None = None,
    title: str | None = None,
    generated: datetime | None = None,
    rows: bool = True,
) -> ReportData:
    """Everything the page shows, from index rows (a ``load_index`` DataFrame).

    ``details`` maps a ``run_dir`` to what its ``status.json`` says about its flows; without it
    the flows are read from the ``flow.<stem>.duration_s`` columns. Links are relative to
    ``base`` (the report's folder), or ``file://`` URIs without it. With ``rows=False`` the
    table rows are left out (``rows == ()``): a large report's table is data (``table``).
    """

    frame = frame.reset_index(drop=True)
    details = details or {}
    base_dir = Path(base).absolute() if base is not None else None
    param_cols = [c for c in frame.columns if c.startswith("param.")]
    result_cols = [c for c in frame.columns if c.startswith("result.")]
    flow_cols = [c for c in frame.columns if c.startswith("flow.") and c.endswith(".duration_s")]
    records: list[dict[str, Any]] = frame.to_dict("records") if rows else []
    statuses = [as_text(s) for s in column_values(frame, "status")]
    runs = [as_text(r) for r in column_values(frame, "run")]
    varied = [c for c in param_cols if frame[c].nunique(dropna=False) > 1]
    header = _header(frame, statuses, varied, title, generated)

    grouping = (["sweep"] if len(header.sweeps) > 1 else []) + varied
    status_charts = tuple(
        StatusByParam(
            c.removeprefix("param."),
            status_bars(frame[c].tolist(), statuses, numeric_column(frame[c])),
        )
        for c in grouping
    )
    table_params = varied or param_cols
    histories = trial_histories(frame)
    best_runs = {(h.sweep, h.best_run) for h in histories}
    table_rows = []
    for record, status in zip(records, statuses, strict=bool(records)):
        run_dir = str(Path(as_text(record.get("run_dir"))))
        detail = details.get(run_dir) or flows_from_columns(record, flow_cols)
        row = _row(record, status, detail, table_params, result_cols, base_dir, ERROR_ANCHOR)
        if (row.sweep, row.run) in best_runs:
            row = replace(row, best=True)
        table_rows.append(row)
    table_rows.sort(key=lambda r: (status_rank(r.status), r.sweep, r.run))
    durations = [
        (float(d), s)
        for d, s in zip(column_values(frame, "duration_s"), statuses, strict=True)
        if is_number(d)
    ]
    return ReportData(
        header=header,
        durations=duration_histogram(durations),
        flow_timings=flow_timings(frame),
        status_by_param=status_charts,
        results=result_series(frame, runs, statuses, varied),
        param_columns=tuple(c.removeprefix("param.") for c in table_params),
        result_columns=tuple(c.removeprefix("result.") for c in result_cols),
        rows=tuple(table_rows),
        histories=histories,
    )


def traceback_tail(text: str | None) -> str:
    if not text:
        return ""
    lines = strip_ansi(text).rstrip().splitlines()
    if len(lines) > _TRACEBACK_LINES:
        lines = ["…", *lines[-_TRACEBACK_LINES:]]
    return "\n".join(lines)
