"""The data behind the page: an index DataFrame (and each run's ``status.json``) as dataclasses.

``report_data(frame)`` gives a ``ReportData``: the header, the chart series and the table rows,
plain frozen values that the charts (``svg``) and the page (``html``) only format.
``relative_href`` is how every link is made: relative to the page, or a ``file://`` URI.
"""

from __future__ import annotations

import math
import os
import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..process import strip_ansi
from ..rundir import CONFIG_FILE
from ..spec import ERROR_ANCHOR, NOT_RUN, OK, RUNNING
from .fmt import DASH, fmt_num, fmt_seconds, nice_step, ordered_counts, status_rank

__all__ = [
    "MAX_CATEGORIES",
    "MAX_STATUS_BARS",
    "FlowInfo",
    "FlowTiming",
    "Header",
    "Histogram",
    "Link",
    "Point",
    "ReportData",
    "ResultSeries",
    "Row",
    "RunDetail",
    "StatusBar",
    "StatusByParam",
    "Value",
    "relative_href",
    "report_data",
]

MAX_CATEGORIES = 12
#: At most this many bars per status-by-parameter chart (the rarest values are pooled).
MAX_STATUS_BARS = 16
_TRACEBACK_LINES = 15
_UNSET = "(unset)"


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
        return sum(n for s, n in self.counts if s not in (OK, RUNNING))

    @property
    def wall_s(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return (self.finished - self.started).total_seconds()


@dataclass(frozen=True)
class Histogram:
    """Run durations in bins of equal width, stacked by status."""

    #: ``len(counts of a status) + 1`` bin edges, in seconds.
    edges: tuple[float, ...]
    #: ``(status, count per bin)`` in ``STATUS_ORDER``.
    counts: tuple[tuple[str, tuple[int, ...]], ...]

    @property
    def n(self) -> int:
        return sum(sum(c) for _, c in self.counts)


@dataclass(frozen=True)
class FlowTiming:
    """Seconds one flow took, over the runs where it ran."""

    name: str
    n: int
    median_s: float
    min_s: float
    max_s: float


@dataclass(frozen=True)
class StatusBar:
    """The runs with one value (or range) of a parameter, counted by status."""

    label: str
    counts: tuple[tuple[str, int], ...]

    @property
    def total(self) -> int:
        return sum(n for _, n in self.counts)


@dataclass(frozen=True)
class StatusByParam:
    param: str
    bars: tuple[StatusBar, ...]


@dataclass(frozen=True)
class Point:
    """One run in a result chart: ``x`` is the parameter value, or its category's index."""

    x: float
    y: float
    status: str
    run: str
    label: str


@dataclass(frozen=True)
class ResultSeries:
    """A recorded result against a varied parameter."""

    result: str
    param: str
    #: Category labels when the parameter is charted as categories; empty for a numeric axis.
    categories: tuple[str, ...]
    points: tuple[Point, ...]
    log_x: bool = False


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


_PLAIN = (str, int, float, bool, type(None))


def _native(value: Any) -> Any:
    """A numpy scalar as the Python value it holds; anything else as it is."""
    if type(value) in _PLAIN:
        return value
    item = getattr(value, "item", None)
    return item() if callable(item) and not isinstance(value, str | bytes) else value


def _missing(value: Any) -> bool:
    kind = type(value)
    if kind is float:
        return value != value  # NaN
    if kind is str or kind is int or kind is bool:
        return False
    value = _native(value)
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return type(value).__name__ in ("NAType", "NaTType")


def _is_number(value: Any) -> bool:
    value = _native(value)
    return isinstance(value, int | float) and not isinstance(value, bool) and not _missing(value)


def _text(value: Any) -> str:
    value = _native(value)
    if _missing(value):
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _value(value: Any, *, result: bool = False) -> Value:
    value = _native(value)
    if _missing(value):
        return Value("")
    if _is_number(value):
        text = fmt_num(float(value)) if result and isinstance(value, float) else _text(value)
        return Value(text, float(value), repr(value) if text != _text(value) else "")
    text = _text(value)
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


def _numeric_column(column: Any) -> bool:
    from pandas.api import types

    return bool(types.is_numeric_dtype(column) and not types.is_bool_dtype(column))


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, float(value)) if _is_number(value) else (1, _text(value))


def _categories(values: list[Any]) -> tuple[list[str], list[int]]:
    """Category labels in value order (unset last), and each value's category index."""
    distinct = sorted({v for v in values if not _missing(v)}, key=_sort_key)
    position = {v: i for i, v in enumerate(distinct)}
    labels = [_text(v) for v in distinct]
    if any(_missing(v) for v in values):
        labels.append(_UNSET)
    return labels, [len(distinct) if _missing(v) else position[v] for v in values]


def _flows_from_columns(record: Mapping[str, Any], flow_columns: list[str]) -> RunDetail:
    """A run's flows read from its ``flow.<stem>.duration_s`` columns (no ``status.json``)."""
    names = [c[len("flow.") : -len(".duration_s")] for c in flow_columns if not _missing(record[c])]
    status = record.get("status") or ""
    flows = []
    for i, name in enumerate(names):
        last = i == len(names) - 1
        bad = last and status not in (OK, RUNNING)
        flows.append(
            FlowInfo(name, f"{name}_executed.ipynb", status if bad else OK, error_anchor=bad)
        )
    return RunDetail(tuple(flows))


def _bins(lo: float, hi: float, target: int) -> tuple[float, float, int]:
    """Bins of a nice width covering ``[lo, hi]``: first edge, width and count."""
    step = nice_step((hi - lo) / target) if hi > lo else nice_step(max(abs(hi), 1.0) / 10)
    start = math.floor(lo / step) * step
    n_bins = max(1, math.ceil((hi - start) / step + 1e-9))
    if start + n_bins * step <= hi:
        n_bins += 1
    return start, step, n_bins


def _duration_histogram(durations: list[tuple[float, str]]) -> Histogram:
    if not durations:
        return Histogram((), ())
    lo, hi = min(d for d, _ in durations), max(d for d, _ in durations)
    start, step, n_bins = _bins(lo, hi, min(30, max(6, math.ceil(math.sqrt(len(durations)) * 1.5))))
    edges = tuple(start + i * step for i in range(n_bins + 1))
    bins: dict[str, list[int]] = {}
    for duration, status in durations:
        i = min(n_bins - 1, int((duration - start) / step))
        bins.setdefault(status, [0] * n_bins)[i] += 1
    counts = tuple((s, tuple(bins[s])) for s, _ in ordered_counts({s: 1 for s in bins}))
    return Histogram(edges, counts)


def _wide(values: Iterable[float]) -> bool:
    """Whether positive values span two decades or more: charted on a log scale."""
    values = list(values)
    return min(values) > 0 and max(values) / min(values) >= 100


def _status_bars(values: list[Any], statuses: list[str], numeric: bool) -> tuple[StatusBar, ...]:
    present = [v for v in values if not _missing(v)]
    if numeric and len(set(present)) > MAX_CATEGORIES:
        log = _wide(present)
        scale: Callable[[float], float] = math.log10 if log else float
        start, step, n_bins = _bins(scale(min(present)), scale(max(present)), 8)

        def edge(i: int) -> str:
            at = start + i * step
            return fmt_num(10**at if log else at, 3)

        labels = [f"{edge(i)} {DASH} {edge(i + 1)}" for i in range(n_bins)]
        keys: list[int] = [
            n_bins if _missing(v) else min(n_bins - 1, int((scale(v) - start) / step))
            for v in values
        ]
        if len(present) < len(values):
            labels.append(_UNSET)
    else:
        labels, keys = _categories(values)
        if len(labels) > MAX_STATUS_BARS:
            popular = Counter(keys).most_common(MAX_STATUS_BARS - 1)
            kept = sorted(k for k, _ in popular)
            others = len(labels) - len(kept)
            new_index = {k: i for i, k in enumerate(kept)}
            keys = [new_index.get(k, len(kept)) for k in keys]
            labels = [labels[k] for k in kept] + [f"({others} other values)"]
    counters: list[Counter[str]] = [Counter() for _ in labels]
    for key, status in zip(keys, statuses, strict=True):
        counters[key][status] += 1
    return tuple(
        StatusBar(label, ordered_counts(c)) for label, c in zip(labels, counters, strict=True) if c
    )


def _header(
    frame: Any,
    records: list[dict[str, Any]],
    statuses: list[str],
    varied: list[str],
    title: str | None,
    generated: datetime | None,
) -> Header:
    sweeps = tuple(sorted({_text(r.get("sweep")) for r in records}))
    params = [c for c in frame.columns if c.startswith("param.") and c not in varied]
    results = [c for c in frame.columns if c.startswith("result.")]
    durations = [float(r["duration_s"]) for r in records if _is_number(r.get("duration_s"))]
    started = [r["started"] for r in records if not _missing(r.get("started"))]
    finished = [r["finished"] for r in records if not _missing(r.get("finished"))]
    return Header(
        title=title or (sweeps[0] if len(sweeps) == 1 else f"{len(sweeps)} sweeps"),
        sweeps=sweeps,
        n_runs=len(records),
        counts=ordered_counts(Counter(statuses)),
        total_s=sum(durations),
        median_s=statistics.median(durations) if durations else None,
        started=min(started).to_pydatetime() if started else None,
        finished=max(finished).to_pydatetime() if finished else None,
        generated=generated or datetime.now(timezone.utc),
        constants=tuple(
            (c.removeprefix("param."), _text(frame[c].dropna().iloc[0]))
            for c in params
            if frame[c].notna().any()
        ),
        constant_results=tuple(
            (c.removeprefix("result."), _value(frame[c].dropna().iloc[0], result=True).text)
            for c in results
            if frame[c].nunique(dropna=True) == 1
        ),
    )


def _flow_timings(frame: Any) -> tuple[FlowTiming, ...]:
    timings = []
    for c in frame.columns:
        if not (c.startswith("flow.") and c.endswith(".duration_s")):
            continue
        values = [float(v) for v in frame[c].dropna()]
        if values:
            name = c[len("flow.") : -len(".duration_s")]
            median = statistics.median(values)
            timings.append(FlowTiming(name, len(values), median, min(values), max(values)))
    return tuple(timings)


def _param_axis(column: Any) -> tuple[tuple[str, ...], list[float | None], bool]:
    """How a parameter is charted: category labels (or none: an axis), x per run, log scale."""
    values = column.tolist()
    distinct = {v for v in values if not _missing(v)}
    if _numeric_column(column) and len(distinct) > MAX_CATEGORIES:
        xs: list[float | None] = [None if _missing(v) else float(v) for v in values]
        return (), xs, _wide(distinct)
    labels, keys = _categories(values)
    return tuple(labels), [float(k) for k in keys], False


def _result_series(
    frame: Any, records: list[dict[str, Any]], statuses: list[str], varied: list[str]
) -> tuple[ResultSeries, ...]:
    """Each numeric result that varies, against each varied parameter."""
    charted = [
        c
        for c in frame.columns
        if c.startswith("result.")
        and _numeric_column(frame[c])
        and frame[c].nunique(dropna=True) > 1
    ]
    axes = {c: _param_axis(frame[c]) for c in varied} if charted else {}
    series = []
    for rc in charted:
        ys = frame[rc].tolist()
        for pc in varied:
            categories, xs, log_x = axes[pc]
            points = tuple(
                Point(x, float(y), status, _text(r.get("run")), _text(r.get(pc)) or _UNSET)
                for r, x, y, status in zip(records, xs, ys, statuses, strict=True)
                if x is not None and _is_number(y) and math.isfinite(y)
            )
            name, param = rc.removeprefix("result."), pc.removeprefix("param.")
            series.append(ResultSeries(name, param, categories, points, log_x))
    return tuple(series)


def _row(
    record: Mapping[str, Any],
    status: str,
    detail: RunDetail,
    params: list[str],
    results: list[str],
    base: Path | None,
    anchor: str,
) -> Row:
    run_dir = Path(_text(record.get("run_dir")))
    run_href = relative_href(run_dir, base)  # a file in it: run_href + "/" + its quoted name
    links = []
    error_href = None
    for flow in detail.flows:
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
    duration = record.get("duration_s")
    return Row(
        sweep=_text(record.get("sweep")),
        run=_text(record.get("run")),
        status=status,
        error=_text(record.get("error")),
        traceback=_traceback_tail(detail.traceback),
        duration=Value(fmt_seconds(duration), duration) if _is_number(duration) else Value(""),
        params=tuple(_value(record[c]) for c in params),
        results=tuple(_value(record[c], result=True) for c in results),
        notebooks=tuple(links),
        config=Link(CONFIG_FILE, f"{run_href}/{CONFIG_FILE}"),
        run_dir=Link(run_dir.name, f"{run_href}/"),
        error_href=error_href,
    )


def report_data(
    frame: Any,
    *,
    details: Mapping[str, RunDetail] | None = None,
    base: str | Path | None = None,
    title: str | None = None,
    generated: datetime | None = None,
) -> ReportData:
    """Everything the page shows, from index rows (a ``load_index`` DataFrame).

    ``details`` maps a ``run_dir`` to what its ``status.json`` says about its flows; without it
    the flows are read from the ``flow.<stem>.duration_s`` columns. Links are relative to
    ``base`` (the report's folder), or ``file://`` URIs without it.
    """

    frame = frame.reset_index(drop=True)
    details = details or {}
    base_dir = Path(base).absolute() if base is not None else None
    param_cols = [c for c in frame.columns if c.startswith("param.")]
    result_cols = [c for c in frame.columns if c.startswith("result.")]
    flow_cols = [c for c in frame.columns if c.startswith("flow.") and c.endswith(".duration_s")]
    records: list[dict[str, Any]] = frame.to_dict("records")
    statuses = [_text(r.get("status")) for r in records]
    varied = [c for c in param_cols if frame[c].nunique(dropna=False) > 1]
    header = _header(frame, records, statuses, varied, title, generated)

    grouping = (["sweep"] if len(header.sweeps) > 1 else []) + varied
    status_charts = tuple(
        StatusByParam(
            c.removeprefix("param."),
            _status_bars(frame[c].tolist(), statuses, _numeric_column(frame[c])),
        )
        for c in grouping
    )
    table_params = varied or param_cols
    rows = []
    for record, status in zip(records, statuses, strict=True):
        run_dir = str(Path(_text(record.get("run_dir"))))
        detail = details.get(run_dir) or _flows_from_columns(record, flow_cols)
        rows.append(_row(record, status, detail, table_params, result_cols, base_dir, ERROR_ANCHOR))
    rows.sort(key=lambda r: (status_rank(r.status), r.sweep, r.run))
    durations = [
        (float(r["duration_s"]), s)
        for r, s in zip(records, statuses, strict=True)
        if _is_number(r.get("duration_s"))
    ]
    return ReportData(
        header=header,
        durations=_duration_histogram(durations),
        flow_timings=_flow_timings(frame),
        status_by_param=status_charts,
        results=_result_series(frame, records, statuses, varied),
        param_columns=tuple(c.removeprefix("param.") for c in table_params),
        result_columns=tuple(c.removeprefix("result.") for c in result_cols),
        rows=tuple(rows),
    )


def _traceback_tail(text: str | None) -> str:
    if not text:
        return ""
    lines = strip_ansi(text).rstrip().splitlines()
    if len(lines) > _TRACEBACK_LINES:
        lines = ["…", *lines[-_TRACEBACK_LINES:]]
    return "\n".join(lines)
