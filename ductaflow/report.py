"""The sweep report: one self-contained HTML page for a runs root or one sweep.

``write_report`` reads ``runs/index.csv`` and each run's ``status.json`` (for its flows), renders
each executed notebook to ``<stem>_executed.html`` next to it (only when that file is missing or
older than the ``.ipynb``), and writes ``report.html``:

- a header: the sweep, counts by status, total and median run time, when it ran, and what was the
  same in every run;
- charts as inline SVG drawn here: run durations, status by parameter value, and each recorded
  result against each varied parameter;
- the run table, failures first and sortable, with parameters, results, status, the error line,
  and links to each run's notebooks and ``CONFIG.json``. The link of a failed run opens its
  notebook at the failing cell (``..._executed.html#ductaflow-error``).

The page loads nothing from anywhere (no CDN, no web fonts; a Content-Security-Policy forbids it)
and every link is relative to the page, so a runs folder can be moved or zipped with its report.

The steps can be used alone: ``report_data(frame)`` turns an index DataFrame into plain
dataclasses (header, chart series, table rows) and ``render_html(data)`` turns those into the page.
"""

from __future__ import annotations

import argparse
import functools
import html
import logging
import math
import os
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .errors import InputError
from .process import strip_ansi
from .rundir import CONFIG_FILE, atomic_write_text, read_status
from .spec import DIED, ERROR_ANCHOR, FAILED, INTERRUPTED, NOT_RUN, OK, RUNNING, TIMEOUT

__all__ = [
    "REPORT_FILE",
    "STATUS_COLORS",
    "STATUS_ORDER",
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
    "add_report_parser",
    "cmd_report",
    "load_details",
    "refresh_notebooks",
    "render_html",
    "render_notebook",
    "report_data",
    "write_report",
]

log = logging.getLogger("ductaflow")

REPORT_FILE = "report.html"
#: The order of statuses in counts, charts and the table: failures first.
STATUS_ORDER = (FAILED, TIMEOUT, DIED, INTERRUPTED, RUNNING, OK)
#: One colour per status, from the Okabe-Ito palette (told apart with colour-blindness too).
STATUS_COLORS = {
    OK: "#009E73",
    FAILED: "#D55E00",
    TIMEOUT: "#E69F00",
    DIED: "#CC79A7",
    INTERRUPTED: "#8C8C8C",
    RUNNING: "#0072B2",
}
_OTHER_COLOR = "#4D4D4D"
#: A parameter with at most this many distinct values is charted as categories, else on an axis.
MAX_CATEGORIES = 12
#: At most this many bars per status-by-parameter chart (the rarest values are pooled).
MAX_STATUS_BARS = 16
_TRACEBACK_LINES = 15
_UNSET = "(unset)"
_DASH = "\u2013"  # an en dash, for ranges


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


def _fmt_num(value: float, digits: int = 4) -> str:
    """A number with ``digits`` significant digits; an exponent only below 1e-4 or from 1e15."""
    if not math.isfinite(value):
        return str(value)
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    text = f"{value:.{digits}g}"
    if "e+" in text and abs(value) < 1e15:
        return f"{value:.0f}"
    return text


def _fmt_seconds(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return _DASH
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _status_rank(status: str) -> float:
    try:
        return STATUS_ORDER.index(status)
    except ValueError:
        return STATUS_ORDER.index(OK) - 0.5  # an unknown status: after the known failures


def _ordered_counts(counter: Mapping[str, int]) -> tuple[tuple[str, int], ...]:
    return tuple(
        (s, counter[s]) for s in sorted(counter, key=lambda s: (_status_rank(s), s)) if counter[s]
    )


def _value(value: Any, *, result: bool = False) -> Value:
    value = _native(value)
    if _missing(value):
        return Value("")
    if _is_number(value):
        text = _fmt_num(float(value)) if result and isinstance(value, float) else _text(value)
        return Value(text, float(value), repr(value) if text != _text(value) else "")
    text = _text(value)
    if len(text) > 80:
        return Value(text[:79] + "…", None, text)
    return Value(text)


def _href(target: Path, base: Path | None, fragment: str = "") -> str:
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
    step = _nice_step((hi - lo) / target) if hi > lo else _nice_step(max(abs(hi), 1.0) / 10)
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
    counts = tuple((s, tuple(bins[s])) for s, _ in _ordered_counts({s: 1 for s in bins}))
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
            return _fmt_num(10**at if log else at, 3)

        labels = [f"{edge(i)} {_DASH} {edge(i + 1)}" for i in range(n_bins)]
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
        StatusBar(label, _ordered_counts(c)) for label, c in zip(labels, counters, strict=True) if c
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
        counts=_ordered_counts(Counter(statuses)),
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
    run_href = _href(run_dir, base)  # a file in it: run_href + "/" + its quoted name
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
        duration=Value(_fmt_seconds(duration), duration) if _is_number(duration) else Value(""),
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
    rows.sort(key=lambda r: (_status_rank(r.status), r.sweep, r.run))
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


# -- SVG charts ---------------------------------------------------------------------------------
def _nice_step(raw: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is at least ``raw``."""
    if not raw > 0 or not math.isfinite(raw):
        return 1.0
    magnitude = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if m * magnitude >= raw * (1 - 1e-9):
            return m * magnitude
    return 10 * magnitude  # pragma: no cover


def _nice_domain(lo: float, hi: float, target: int = 5) -> tuple[float, float, list[float], float]:
    """A domain covering ``[lo, hi]`` that starts and ends on ticks, the ticks, and their step."""
    if hi <= lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    step = _nice_step((hi - lo) / target)
    start = math.floor(lo / step + 1e-9) * step
    end = math.ceil(hi / step - 1e-9) * step
    ticks = [start + i * step for i in range(round((end - start) / step) + 1)]
    return start, end, ticks, step


def _tick_label(value: float, step: float) -> str:
    if abs(value) < step * 1e-6:
        return "0"
    if abs(value) >= 1e6 or abs(value) < 1e-4:
        return f"{value:.3g}"
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    if decimals and abs(step / 10 ** math.floor(math.log10(step)) - 2.5) < 1e-9:
        decimals += 1
    return f"{value:.{decimals}f}"


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _clip(text: str, width_px: float, char_px: float = 6.4) -> str:
    n = max(3, int(width_px / char_px))
    return text if len(text) <= n else text[: n - 1] + "…"


def _status_class(status: str) -> str:
    return f"st-{status}" if status in STATUS_COLORS else "st-other"


def _svg_open(width: int, height: int, kind: str, label: str) -> str:
    return (
        f'<svg class="chart {kind}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{_esc(label)}">'
        f"<title>{_esc(label)}</title>"
    )


def _svg_durations(hist: Histogram) -> str:
    width, height = 600, 230
    left, right, top, bottom = 48, 16, 12, 42
    pw, ph = width - left - right, height - top - bottom
    if not hist.counts:
        return ""
    n_bins = len(hist.edges) - 1
    totals = [sum(c[i] for _, c in hist.counts) for i in range(n_bins)]
    y_end = max(totals)
    y_step = max(1, math.ceil(_nice_step(y_end / 4)))
    y_end = math.ceil(y_end / y_step) * y_step
    x0, x1 = hist.edges[0], hist.edges[-1]

    def X(v: float) -> float:
        return left + (v - x0) / (x1 - x0) * pw

    def Y(v: float) -> float:
        return top + ph - v / y_end * ph

    out = [_svg_open(width, height, "durations", "Run durations by status")]
    for t in range(0, y_end + 1, y_step):
        out.append(
            f'<line class="gridline" x1="{left}" x2="{left + pw}" y1="{Y(t):.1f}" '
            f'y2="{Y(t):.1f}"/><text class="tick" x="{left - 6}" y="{Y(t) + 4:.1f}" '
            f'text-anchor="end">{t}</text>'
        )
    bar_w = pw / n_bins
    gap = min(2.0, bar_w * 0.15)
    for i in range(n_bins):
        level = 0
        for status, counts in hist.counts:
            n = counts[i]
            if not n:
                continue
            y_top, y_bottom = Y(level + n), Y(level)
            tip = f"{n} {status}, {_fmt_num(hist.edges[i])}{_DASH}{_fmt_num(hist.edges[i + 1])} s"
            out.append(
                f'<rect class="bar {_status_class(status)}" x="{X(hist.edges[i]) + gap / 2:.1f}" '
                f'y="{y_top:.1f}" width="{bar_w - gap:.1f}" height="{y_bottom - y_top:.1f}">'
                f"<title>{_esc(tip)}</title></rect>"
            )
            level += n
    _, _, ticks, step = _nice_domain(x0, x1, 6)
    for t in ticks:
        if x0 - 1e-9 <= t <= x1 + 1e-9:
            out.append(
                f'<text class="tick" x="{X(t):.1f}" y="{top + ph + 16}" '
                f'text-anchor="middle">{_tick_label(t, step)}</text>'
            )
    out.append(f'<line class="axis" x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}"/>')
    out.append(
        f'<text class="axis-title" x="{left + pw / 2}" y="{height - 6}" '
        f'text-anchor="middle">run duration (s)</text>'
    )
    out.append(
        f'<text class="axis-title" transform="translate(13 {top + ph / 2}) rotate(-90)" '
        f'text-anchor="middle">runs</text></svg>'
    )
    return "".join(out)


def _svg_flow_timings(timings: tuple[FlowTiming, ...]) -> str:
    if not timings:
        return ""
    row_h = 30
    width, left, right, top = 600, 150, 150, 8
    height = top + row_h * len(timings) + 30
    pw = width - left - right
    _, x_end, ticks, step = _nice_domain(0.0, max(t.max_s for t in timings), 4)
    x_end = x_end or 1.0

    def X(v: float) -> float:
        return left + v / x_end * pw

    out = [
        _svg_open(width, height, "flows", "Seconds per flow: median bar, whisker from min to max")
    ]
    bottom = top + row_h * len(timings)
    for t in ticks:
        out.append(
            f'<line class="gridline" x1="{X(t):.1f}" x2="{X(t):.1f}" y1="{top}" '
            f'y2="{bottom}"/><text class="tick" x="{X(t):.1f}" y="{bottom + 16}" '
            f'text-anchor="middle">{_tick_label(t, step)}</text>'
        )
    for i, timing in enumerate(timings):
        y = top + i * row_h
        mid = y + row_h / 2
        tip = (
            f"{timing.name}: median {timing.median_s:.2f} s, {timing.min_s:.2f}{_DASH}"
            f"{timing.max_s:.2f} s over {timing.n} runs"
        )
        spread = f"{_fmt_seconds(timing.min_s)}{_DASH}{_fmt_seconds(timing.max_s)}"
        out.append(
            f'<text class="label" x="{left - 8}" y="{mid + 4:.1f}" text-anchor="end">'
            f"{_esc(_clip(timing.name, left - 12))}</text>"
            f'<rect class="bar flow" x="{left}" y="{y + 7}" width="{X(timing.median_s) - left:.1f}"'
            f' height="{row_h - 14}"><title>{_esc(tip)}</title></rect>'
            f'<line class="whisker" x1="{X(timing.min_s):.1f}" x2="{X(timing.max_s):.1f}" '
            f'y1="{mid:.1f}" y2="{mid:.1f}"/>'
            f'<text class="value" x="{left + pw + 8}" y="{mid + 4:.1f}">'
            f'{_fmt_seconds(timing.median_s)} <tspan class="muted">({spread})</tspan></text>'
        )
    out.append("</svg>")
    return "".join(out)


def _svg_status(chart: StatusByParam) -> str:
    row_h, left, bar_w = 24, 120, 180
    width = left + bar_w + 110
    height = row_h * len(chart.bars) + 6
    out = [_svg_open(width, height, "status", f"Status by {chart.param}")]
    for i, bar in enumerate(chart.bars):
        y = 3 + i * row_h
        label = _esc(_clip(bar.label, left - 12))
        out.append(
            f'<text class="label" x="{left - 8}" y="{y + 16}" text-anchor="end">'
            f"<title>{_esc(bar.label)}</title>{label}</text>"
        )
        x = float(left)
        for status, n in bar.counts:
            w = n / bar.total * bar_w
            out.append(
                f'<rect class="seg {_status_class(status)}" x="{x:.1f}" y="{y + 4}" '
                f'width="{w:.1f}" height="{row_h - 8}">'
                f"<title>{_esc(f'{chart.param} = {bar.label}: {n} {status}')}</title></rect>"
            )
            x += w
        ok = dict(bar.counts).get(OK, 0)
        cls = "value" if ok == bar.total else "value bad"
        out.append(
            f'<text class="{cls}" x="{left + bar_w + 8}" y="{y + 16}">{ok}/{bar.total} ok</text>'
        )
    out.append("</svg>")
    return "".join(out)


def _svg_result(series: ResultSeries) -> str:
    width, height = 300, 230
    left, right, top, bottom = 54, 10, 10, 42
    pw, ph = width - left - right, height - top - bottom
    ys = [p.y for p in series.points]
    if not ys:
        return ""
    pad = (max(ys) - min(ys)) * 0.04  # no dot sits on the axis, none goes below 0 for nothing
    low = min(ys) - pad if min(ys) < 0 or min(ys) - pad >= 0 else 0.0
    y0, y1, y_ticks, y_step = _nice_domain(low, max(ys) + pad, 5)

    def Y(v: float) -> float:
        return top + ph - (v - y0) / (y1 - y0) * ph

    label = f"{series.result} against {series.param}"
    out = [_svg_open(width, height, "result", label)]
    for t in y_ticks:
        out.append(
            f'<line class="gridline" x1="{left}" x2="{left + pw}" y1="{Y(t):.1f}" '
            f'y2="{Y(t):.1f}"/><text class="tick" x="{left - 6}" y="{Y(t) + 4:.1f}" '
            f'text-anchor="end">{_tick_label(t, y_step)}</text>'
        )
    n = len(series.points)
    radius = 4.5 if n <= 60 else 3.5 if n <= 400 else 2.5
    marks: list[tuple[float, float, Point]] = []
    if series.categories:
        band = pw / len(series.categories)
        spread = min(band * 0.55, 44.0)
        by_category: dict[int, list[Point]] = {}
        for p in series.points:
            by_category.setdefault(int(p.x), []).append(p)
        for i, name in enumerate(series.categories):
            cx = left + band * (i + 0.5)
            label = _esc(_clip(name, band - 4))
            out.append(
                f'<text class="tick" x="{cx:.1f}" y="{top + ph + 16}" '
                f'text-anchor="middle"><title>{_esc(name)}</title>{label}</text>'
            )
            group = sorted(by_category.get(i, []), key=lambda p: p.y)
            for k, p in enumerate(group):
                offset = ((k * 0.6180339887) % 1 - 0.5) * spread if len(group) > 1 else 0.0
                marks.append((cx + offset, Y(p.y), p))
            if len(group) >= 3:
                med = statistics.median(p.y for p in group)
                out.append(
                    f'<line class="median" x1="{cx - spread / 2 - 4:.1f}" '
                    f'x2="{cx + spread / 2 + 4:.1f}" y1="{Y(med):.1f}" y2="{Y(med):.1f}">'
                    f"<title>median {_esc(_fmt_num(med))}</title></line>"
                )
    else:
        xs = [math.log10(p.x) if series.log_x else p.x for p in series.points]
        if series.log_x:
            x0, x1 = math.floor(min(xs)), math.ceil(max(xs))
            x_ticks = [float(t) for t in range(int(x0), int(x1) + 1)]
            x_labels = [f"{10**t:g}" for t in x_ticks]
        else:
            x0, x1, x_ticks, x_step = _nice_domain(min(xs), max(xs), 5)
            x_labels = [_tick_label(t, x_step) for t in x_ticks]
        span = (x1 - x0) or 1.0

        def X(v: float) -> float:
            return left + (v - x0) / span * pw

        for t, text in zip(x_ticks, x_labels, strict=True):
            out.append(
                f'<text class="tick" x="{X(t):.1f}" y="{top + ph + 16}" '
                f'text-anchor="middle">{_esc(text)}</text>'
            )
        marks = [(X(x), Y(p.y), p) for x, p in zip(xs, series.points, strict=True)]
    # failures drawn last, on top
    marks.sort(key=lambda m: -_status_rank(m[2].status))
    for x, y, p in marks:
        tip = f"{p.run}\n{series.param} = {p.label}\n{series.result} = {p.y!r}\n{p.status}"
        out.append(
            f'<circle class="pt {_status_class(p.status)}" cx="{x:.1f}" cy="{y:.1f}" '
            f'r="{radius}"><title>{_esc(tip)}</title></circle>'
        )
    out.append(f'<line class="axis" x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}"/>')
    x_title = f"{series.param} (log scale)" if series.log_x else series.param
    out.append(
        f'<text class="axis-title" x="{left + pw / 2}" y="{height - 6}" '
        f'text-anchor="middle">{_esc(_clip(x_title, pw))}</text>'
    )
    out.append(
        f'<text class="axis-title" transform="translate(13 {top + ph / 2}) rotate(-90)" '
        f'text-anchor="middle">{_esc(_clip(series.result, ph))}</text></svg>'
    )
    return "".join(out)


# -- the page -------------------------------------------------------------------------------------
_CSS = """
:root{--ink:#1c2430;--muted:#5d6877;--line:#e2e6ec;--bg:#f4f6f8;--card:#fff;--link:#0b5cad}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);
 font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1400px;margin:0 auto;padding:28px 32px 56px}
a{color:var(--link);text-decoration:none}a:hover{text-decoration:underline}
h1{font-size:28px;margin:0;letter-spacing:-.01em}
h2{font-size:18px;margin:0 0 4px}
h3{font-size:14px;margin:14px 0 6px;color:var(--muted);font-weight:600}
.sub{color:var(--muted);margin:4px 0 0}
.tiles{display:flex;flex-wrap:wrap;gap:12px;margin:20px 0 8px}
.tile{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:10px 18px;
 min-width:130px}
.tile b{display:block;font-size:24px;line-height:1.25;font-variant-numeric:tabular-nums}
.tile span{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.05em}
.tile.status{border-left:6px solid var(--c)}.tile.status b{color:var(--c)}
.fixed{color:var(--muted);margin:10px 0 0;font-size:13px}
.fixed code{color:var(--ink);background:#eaedf1;border-radius:4px;padding:0 5px;margin-right:2px}
section{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:18px 22px;
 margin:18px 0}
.note{color:var(--muted);font-size:13px;margin:0 0 10px}
.charts{display:flex;flex-wrap:wrap;gap:10px 26px;align-items:flex-start}
figure{margin:0}figcaption{font-weight:600;font-size:13px;margin:0 0 2px}
svg.chart{display:block;max-width:100%;height:auto;overflow:visible}
svg text{font-family:inherit;font-size:11.5px;fill:#3b4653}
svg .axis-title{font-size:12px;fill:var(--muted)}
svg .label{font-size:12px;fill:var(--ink)}svg .value{font-size:12px;fill:var(--muted)}
svg .value.bad{fill:#b23c00;font-weight:600}svg .muted{fill:#8a94a1}
svg .gridline{stroke:#edf0f3;stroke-width:1}svg .axis{stroke:#9aa3ae;stroke-width:1}
svg .median{stroke:#1c2430;stroke-width:2;opacity:.55}
svg .whisker{stroke:#1c2430;stroke-width:1.5;opacity:.6}
svg .bar.flow{fill:#7fa7cf}svg .pt{fill-opacity:.8;stroke:#fff;stroke-width:.8}
.legend{display:flex;gap:14px;flex-wrap:wrap;font-size:12px;color:var(--muted);margin:0 0 10px}
.legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px;
 background:var(--c)}
.table-wrap{overflow-x:auto}
table.runs{border-collapse:collapse;width:100%;font-size:13px}
table.runs th,table.runs td{padding:6px 9px;border-bottom:1px solid var(--line);text-align:left;
 vertical-align:top}
table.runs thead th{position:sticky;top:0;background:#f9fafb;white-space:nowrap;font-size:12px;
 border-bottom:2px solid var(--line)}
table.runs th small{display:block;font-weight:400;color:var(--muted);font-size:10px;
 text-transform:uppercase;letter-spacing:.05em}
table.runs.sortable th[data-col]{cursor:pointer}
table.runs.sortable th[data-col]:hover{background:#eef1f4}
th[aria-sort=ascending]::after{content:" ▲";font-size:9px}
th[aria-sort=descending]::after{content:" ▼";font-size:9px}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.run a{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px;
 word-break:break-all;color:var(--ink)}
tr.bad td{background:#fff6f1}
.badge{display:inline-block;padding:1px 9px;border-radius:10px;color:#fff;font-weight:600;
 font-size:12px;background:var(--c)}
td.links a,td.links span{display:block;white-space:nowrap}
td.links .bad{color:#b23c00;font-weight:600}td.links span{color:#9aa3ae}
td.err{max-width:460px;color:#8a2f00}td.err a{color:#b23c00;font-weight:600}
td.err pre{white-space:pre-wrap;font-size:11px;background:#f7f3f0;padding:8px;border-radius:6px;
 color:var(--ink);max-height:320px;overflow:auto}
td.err summary{cursor:pointer;color:var(--muted);font-size:12px}
footer{color:var(--muted);font-size:12px;margin-top:20px}
"""

_SCRIPT = """
(function () {
  var table = document.querySelector("table.runs");
  if (!table) return;
  table.classList.add("sortable");
  function key(row, i) {
    var cell = row.cells[i];
    var s = cell.getAttribute("data-sort");
    if (s === null) s = cell.textContent.trim();
    if (s === "") return null;
    var n = Number(s);
    return isNaN(n) ? s.toLowerCase() : n;
  }
  table.querySelectorAll("th[data-col]").forEach(function (th) {
    th.addEventListener("click", function () {
      var i = Number(th.getAttribute("data-col"));
      var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
      table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = key(a, i), y = key(b, i);
        if (x === null || y === null) return x === y ? 0 : x === null ? 1 : -1;
        if (typeof x !== typeof y) return (typeof x === "number" ? -1 : 1) * dir;
        return (x < y ? -1 : x > y ? 1 : 0) * dir;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
})();
"""

_CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"


def _status_css() -> str:
    rules = [f"svg .st-{s}{{fill:{c}}}" for s, c in STATUS_COLORS.items()]
    return "\n".join([*rules, f"svg .st-other{{fill:{_OTHER_COLOR}}}"])


def _color_var(status: str) -> str:
    return f"--c:{STATUS_COLORS.get(status, _OTHER_COLOR)}"


def _when(start: datetime | None, end: datetime | None) -> str:
    if start is None:
        return "not started"
    text = f"{start:%Y-%m-%d %H:%M:%S}"
    if end is not None:
        text += (
            f" → {end:%H:%M:%S}" if end.date() == start.date() else f" → {end:%Y-%m-%d %H:%M:%S}"
        )
    return text + " UTC"


def _header_html(data: ReportData) -> str:
    h = data.header
    tiles = [f'<div class="tile"><b>{h.n_runs}</b><span>runs</span></div>']
    tiles += [
        f'<div class="tile status" style="{_color_var(s)}"><b>{n}</b><span>{_esc(s)}</span></div>'
        for s, n in h.counts
    ]
    if not h.n_bad:
        tiles.append('<div class="tile"><b>0</b><span>failed</span></div>')
    tiles += [
        f'<div class="tile"><b>{_fmt_seconds(h.median_s)}</b><span>median run</span></div>',
        f'<div class="tile"><b>{_fmt_seconds(h.total_s)}</b><span>total run time</span></div>',
        f'<div class="tile"><b>{_fmt_seconds(h.wall_s)}</b><span>wall clock</span></div>',
    ]
    sweeps = "" if len(h.sweeps) <= 1 else f" · sweeps: {_esc(', '.join(h.sweeps))}"
    parts = [
        f"<header><h1>{_esc(h.title)}</h1>",
        f'<p class="sub">ductaflow sweep report · ran {_esc(_when(h.started, h.finished))}'
        f"{sweeps}</p>",
        f'<div class="tiles">{"".join(tiles)}</div>',
    ]
    if h.constants:
        items = " ".join(f"<code>{_esc(k)} = {_esc(v)}</code>" for k, v in h.constants)
        parts.append(f'<p class="fixed">Same in every run: {items}</p>')
    if h.constant_results:
        items = " ".join(f"<code>{_esc(k)} = {_esc(v)}</code>" for k, v in h.constant_results)
        parts.append(f'<p class="fixed">Same result in every run that recorded it: {items}</p>')
    parts.append("</header>")
    return "".join(parts)


def _legend(statuses: Iterable[str]) -> str:
    items = "".join(f'<span style="{_color_var(s)}"><i></i>{_esc(s)}</span>' for s in statuses)
    return f'<div class="legend">{items}</div>'


def _charts_html(data: ReportData) -> str:
    present = [s for s, _ in data.header.counts]
    out = []
    durations = _svg_durations(data.durations)
    flows = _svg_flow_timings(data.flow_timings)
    if durations or flows:
        out.append('<section id="durations"><h2>Run time</h2>')
        out.append(_legend(present))
        out.append('<div class="charts">')
        if durations:
            out.append(f"<figure><figcaption>Run durations</figcaption>{durations}</figure>")
        if flows:
            caption = f"Seconds per flow (median bar, min{_DASH}max whisker)"
            out.append(f"<figure><figcaption>{caption}</figcaption>{flows}</figure>")
        out.append("</div></section>")
    if data.status_by_param:
        out.append('<section id="status"><h2>Status by parameter</h2>')
        out.append(
            '<p class="note">Share of runs per status for each value of each varied '
            "parameter: a parameter that makes runs fail stands out.</p>"
        )
        out.append(_legend(present))
        out.append('<div class="charts">')
        for chart in data.status_by_param:
            out.append(
                f"<figure><figcaption>{_esc(chart.param)}</figcaption>{_svg_status(chart)}</figure>"
            )
        out.append("</div></section>")
    if data.results:
        out.append('<section id="results"><h2>Results against parameters</h2>')
        out.append(
            '<p class="note">Each recorded result against each varied parameter: one '
            "dot per run (hover for the run), a bar at the median of each value.</p>"
        )
        out.append(_legend(present))
        by_result: dict[str, list[ResultSeries]] = {}
        for series in data.results:
            by_result.setdefault(series.result, []).append(series)
        for result, group in by_result.items():
            out.append(f'<h3>{_esc(result)}</h3><div class="charts">')
            out.extend(f"<figure>{_svg_result(s)}</figure>" for s in group)
            out.append("</div>")
        out.append("</section>")
    return "".join(out)


def _link_html(link: Link) -> str:
    cls = "" if link.status in (OK, RUNNING) else ' class="bad"'
    title = f' title="{_esc(link.title)}"' if link.title else ""
    if link.href is None:
        return f"<span{title}>{_esc(link.label)}</span>"
    mark = "⚠ " if cls else ""
    return f'<a{cls} href="{_esc(link.href)}"{title}>{mark}{_esc(link.label)}</a>'


def _value_td(value: Value) -> str:
    sort = f' data-sort="{value.sort!r}"' if value.sort is not None else ""
    title = f' title="{_esc(value.title)}"' if value.title else ""
    cls = ' class="num"' if value.sort is not None else ""
    return f"<td{cls}{sort}{title}>{_esc(value.text)}</td>"


def _table_html(data: ReportData) -> str:
    multi = len(data.header.sweeps) > 1
    heads = [("status", ""), ("run", "")]
    if multi:
        heads.append(("sweep", ""))
    heads += [(p, "param") for p in data.param_columns]
    heads += [(r, "result") for r in data.result_columns]
    heads += [("time", ""), ("notebooks", None), ("config", None)]
    errors = any(row.error for row in data.rows)
    if errors:
        heads.append(("error", ""))
    th = []
    for i, (name, kind) in enumerate(heads):
        small = f"<small>{kind}</small>" if kind else ""
        col = f' data-col="{i}"' if kind is not None else ""
        th.append(f"<th{col}>{small}{_esc(name)}</th>")
    body = []
    for row in data.rows:
        bad = row.status not in (OK, RUNNING)
        cells = [
            f'<td data-sort="{_status_rank(row.status)}"><span class="badge" '
            f'style="{_color_var(row.status)}">{_esc(row.status)}</span></td>',
            f'<td class="run"><a href="{_esc(row.run_dir.href or "")}" title="run directory">'
            f"{_esc(row.run)}</a></td>",
        ]
        if multi:
            cells.append(f"<td>{_esc(row.sweep)}</td>")
        cells += [_value_td(v) for v in row.params]
        cells += [_value_td(v) for v in row.results]
        cells.append(_value_td(row.duration))
        cells.append(f'<td class="links">{"".join(_link_html(n) for n in row.notebooks)}</td>')
        cells.append(f'<td class="links">{_link_html(row.config)}</td>')
        tr = '<tr class="bad">' if bad else "<tr>"
        if not errors:
            body.append(f"{tr}{''.join(cells)}</tr>")
            continue
        error = _esc(row.error)
        if row.error and row.error_href:
            error = f'<a href="{_esc(row.error_href)}" title="open at the error">{error}</a>'
        if row.traceback:
            tb = _esc(row.traceback)
            error += f"<details><summary>traceback</summary><pre>{tb}</pre></details>"
        cells.append(f'<td class="err">{error}</td>')
        body.append(f"{tr}{''.join(cells)}</tr>")
    n_bad = data.header.n_bad
    note = f"{n_bad} not ok, listed first. " if n_bad else ""
    return (
        '<section id="runs"><h2>Runs</h2>'
        f'<p class="note">{note}Click a column to sort. A failed run\'s notebook and error '
        "open at the failing cell.</p>"
        f'<div class="table-wrap"><table class="runs"><thead><tr>{"".join(th)}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div></section>"
    )


def render_html(data: ReportData) -> str:
    """The report page: one HTML document with its styles, charts and script inline."""
    from . import __version__

    h = data.header
    index = f' · <a href="{_esc(data.index_href)}">index.csv</a>' if data.index_href else ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(h.title)} · ductaflow report</title>"
        f"<style>{_CSS}{_status_css()}</style></head><body><main>"
        f"{_header_html(data)}{_charts_html(data)}{_table_html(data)}"
        f"<footer>Made by ductaflow {_esc(__version__)} on "
        f"{h.generated:%Y-%m-%d %H:%M:%S} UTC{index}</footer>"
        f"</main><script>{_SCRIPT}</script></body></html>\n"
    )


# -- notebooks as HTML --------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _exporter() -> Any:
    """One nbconvert exporter per process: its first render compiles the templates (~1 s)."""
    from nbconvert import HTMLExporter

    return HTMLExporter(template_name="lab")


class _Renderer:
    """Renders notebooks with the process's exporter."""

    def __call__(self, notebook: Path, target: Path) -> None:
        import nbformat

        nb = nbformat.read(notebook, as_version=4)
        name = f"{notebook.parent.name} · {notebook.stem}"
        body, _ = _exporter().from_notebook_node(nb, resources={"metadata": {"name": name}})
        atomic_write_text(target, body)


def render_notebook(notebook: str | Path, target: str | Path | None = None) -> Path:
    """Render an executed notebook to HTML (default: the same name with ``.html``), always."""
    notebook = Path(notebook)
    target = Path(target) if target is not None else notebook.with_suffix(".html")
    _Renderer()(notebook, target)
    return target


def _fresh(notebook: Path, target: Path) -> bool:
    try:
        return target.stat().st_mtime_ns >= notebook.stat().st_mtime_ns
    except FileNotFoundError:
        return False


def refresh_notebooks(notebooks: Iterable[str | Path]) -> dict[Path, Path | None]:
    """Render each notebook to ``.html`` beside it when that is missing or older than it.

    Returns each notebook's HTML file, or None when it could not be rendered (logged).
    """
    t0 = time.perf_counter()
    render = _Renderer()
    done: dict[Path, Path | None] = {}
    rendered = 0
    for path in map(Path, notebooks):
        target = path.with_suffix(".html")
        if _fresh(path, target):
            done[path] = target
            continue
        try:
            render(path, target)
        except Exception as exc:  # one bad notebook never stops the report
            log.warning("%s: cannot render to HTML (%s: %s)", path, type(exc).__name__, exc)
            done[path] = None
            continue
        rendered += 1
        done[path] = target
    if rendered:
        log.info("rendered %d notebooks to HTML in %.1f s", rendered, time.perf_counter() - t0)
    return done


# -- writing the report -------------------------------------------------------------------------
def _locate(root: Path, recorded: str) -> Path:
    """A run directory as recorded in the index, or under ``root`` when the root was moved."""
    path = Path(recorded)
    if path.is_dir():
        return path
    moved = root / path.parent.name / path.name
    return moved if moved.is_dir() else path


def load_details(run_dirs: Iterable[str | Path]) -> dict[str, RunDetail]:
    """Each run's flows and traceback from its ``status.json`` (runs without one left out)."""
    details = {}
    for run_dir in map(Path, run_dirs):
        status = read_status(run_dir)
        if status is None:
            continue
        flows = []
        for flow in status.get("flows") or ():
            if not isinstance(flow, dict) or not flow.get("notebook"):
                continue
            notebook = str(flow["notebook"])
            cell = flow.get("failed_cell")
            state = str(flow.get("status") or "")
            flows.append(
                FlowInfo(
                    name=str(flow.get("name") or Path(notebook).stem),
                    notebook=notebook,
                    status=state,
                    failed_cell=cell if isinstance(cell, int) else None,
                    error_anchor=isinstance(cell, int),
                    exists=state != NOT_RUN and (run_dir / notebook).is_file(),
                )
            )
        traceback = status.get("traceback")
        details[str(run_dir)] = RunDetail(
            tuple(flows), traceback if isinstance(traceback, str) else None
        )
    return details


def write_report(
    runs_root: str | Path = "runs",
    sweep: str | None = None,
    output: str | Path | None = None,
    render_notebooks: bool | str = True,
) -> Path:
    """Write the HTML report of a runs root (or of one sweep in it); return its path.

    The default output is ``<runs_root>/report.html``, or ``<runs_root>/<sweep>/report.html``
    with a sweep. With ``render_notebooks`` each executed notebook is rendered to HTML beside it
    when that is missing or stale (``"failed"``: only the notebooks of runs that are not ok, as
    a sweep does); without, the report links what HTML there is, else the ``.ipynb``.
    """
    from .index import load_index

    t0 = time.perf_counter()
    root = Path(runs_root).absolute()
    if not root.is_dir():
        raise InputError(f"{root}: no such runs root; give the folder that holds index.csv")
    frame = load_index(root)
    if sweep is not None:
        names = sorted({str(s) for s in frame["sweep"].dropna()})
        frame = frame[(frame["sweep"] == sweep).fillna(False).astype(bool)]
        if frame.empty:
            raise InputError(
                f"{root / 'index.csv'}: no runs of sweep {sweep!r}; "
                f"sweeps there: {', '.join(names) or 'none'}"
            )
    if frame.empty:
        raise InputError(f"{root}: no runs yet; run a sweep first")
    if output is None:
        output = root / sweep / REPORT_FILE if sweep is not None else root / REPORT_FILE
    output = Path(output).absolute()
    frame = frame.assign(run_dir=[str(_locate(root, d)) for d in frame["run_dir"]])
    details = load_details(frame["run_dir"])
    notebooks = [
        Path(run_dir) / f.notebook
        for run_dir, detail in details.items()
        for f in detail.flows
        if f.exists
    ]
    if render_notebooks == "failed":
        bad = {str(d) for d, state in zip(frame["run_dir"], frame["status"], strict=True)
               if state != OK}  # fmt: skip
        to_render = [p for p in notebooks if str(p.parent) in bad]
    else:
        to_render = notebooks if render_notebooks else []
    html_of = {p: p.with_suffix(".html") for p in notebooks if _fresh(p, p.with_suffix(".html"))}
    html_of.update(refresh_notebooks(to_render))
    rendered = {str(p) for p, target in html_of.items() if target is not None}
    details = {
        run_dir: replace(
            detail,
            flows=tuple(
                replace(f, html=os.path.join(run_dir, f.notebook) in rendered) for f in detail.flows
            ),
        )
        for run_dir, detail in details.items()
    }
    data = report_data(frame, details=details, base=output.parent, title=sweep)
    data = replace(data, index_href=_href(root / "index.csv", output.parent))
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output, render_html(data))
    log.info("report of %d runs -> %s (%.2f s)", len(frame), output, time.perf_counter() - t0)
    return output


# -- command line -------------------------------------------------------------------------------
def add_report_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``report`` subcommand to a ``ductaflow`` argument parser's subparsers."""
    parser = subparsers.add_parser(
        "report", help="write an HTML report of the runs: charts, run table, notebook links"
    )
    parser.add_argument("runs_root", nargs="?", type=Path, default=Path("runs"))
    parser.add_argument("--sweep", metavar="NAME", help="report this sweep only")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="FILE",
        help="default: <runs root>/report.html, or <runs root>/<sweep>/report.html",
    )
    parser.add_argument(
        "--no-notebooks",
        action="store_true",
        help="do not render notebooks to HTML (link what HTML there is, else the .ipynb)",
    )
    return parser


def cmd_report(args: argparse.Namespace) -> int:
    """Run ``ductaflow report``; InputError (no runs, unknown sweep) is the caller's to report."""
    path = write_report(
        args.runs_root,
        sweep=args.sweep,
        output=args.output,
        render_notebooks=not args.no_notebooks,
    )
    print(f"report -> {path}")
    return 0
