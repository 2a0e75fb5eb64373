"""The charts' data: each chart's series from index columns, aggregated where runs are many.

Durations are binned, status is counted per parameter value (or range), flows are summarised;
a result against a parameter is one point per run up to ``MAX_POINTS``, then every failed run
(up to half of them) and an even sample of the others, with each category's median over all.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .fmt import DASH, GOOD, as_text, fmt_num, is_missing, is_number, nice_step, ordered_counts

__all__ = [
    "MAX_CATEGORIES",
    "MAX_CHART_CATEGORIES",
    "MAX_POINTS",
    "MAX_STATUS_BARS",
    "UNSET",
    "FlowTiming",
    "Histogram",
    "Point",
    "ResultSeries",
    "StatusBar",
    "StatusByParam",
    "categories",
    "column_values",
    "duration_histogram",
    "flow_timings",
    "numeric_column",
    "result_series",
    "status_bars",
]

#: A parameter with at most this many distinct values is charted as categories, else on an axis.
MAX_CATEGORIES = 12
#: At most this many bars per status-by-parameter chart (the rarest values are pooled).
MAX_STATUS_BARS = 16
#: At most this many dots per result chart: past it, every failed run (up to half of them) and
#: an even sample of the others, with each category's median over all runs.
MAX_POINTS = 2_000
#: A result is not charted against a parameter with more categories (a label per run).
MAX_CHART_CATEGORIES = 50
UNSET = "(unset)"


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
    #: The runs that recorded this result, when ``points`` holds only a sample of them.
    n_runs: int = 0
    #: With categories and a sample: the median of each category over all its runs.
    medians: tuple[float | None, ...] = ()


def numeric_column(column: Any) -> bool:
    from pandas.api import types

    return bool(types.is_numeric_dtype(column) and not types.is_bool_dtype(column))


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, float(value)) if is_number(value) else (1, as_text(value))


def distinct_values(values: list[Any]) -> tuple[set[Any], bool]:
    """The values that are set, each once, and whether any value is unset (missing): each
    distinct value is asked once, not each of 100,000 runs."""
    every = set(values)
    present = {v for v in every if not is_missing(v)}
    return present, len(present) < len(every)


def categories(values: list[Any]) -> tuple[list[str], list[int]]:
    """Category labels in value order (unset last), and each value's category index."""
    present, unset = distinct_values(values)
    distinct = sorted(present, key=_sort_key)
    position = {v: i for i, v in enumerate(distinct)}
    labels = [as_text(v) for v in distinct]
    if not unset:
        return labels, [position[v] for v in values]
    labels.append(UNSET)
    return labels, [len(distinct) if is_missing(v) else position[v] for v in values]


def _bins(lo: float, hi: float, target: int) -> tuple[float, float, int]:
    """Bins of a nice width covering ``[lo, hi]``: first edge, width and count."""
    step = nice_step((hi - lo) / target) if hi > lo else nice_step(max(abs(hi), 1.0) / 10)
    start = math.floor(lo / step) * step
    n_bins = max(1, math.ceil((hi - start) / step + 1e-9))
    if start + n_bins * step <= hi:
        n_bins += 1
    return start, step, n_bins


def duration_histogram(durations: list[tuple[float, str]]) -> Histogram:
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


def status_bars(values: list[Any], statuses: list[str], numeric: bool) -> tuple[StatusBar, ...]:
    present, unset = distinct_values(values)
    if numeric and len(present) > MAX_CATEGORIES:
        log = _wide(present)
        scale: Callable[[float], float] = math.log10 if log else float
        start, step, n_bins = _bins(scale(min(present)), scale(max(present)), 8)

        def edge(i: int) -> str:
            at = start + i * step
            return fmt_num(10**at if log else at, 3)

        labels = [f"{edge(i)} {DASH} {edge(i + 1)}" for i in range(n_bins)]
        last = n_bins - 1
        keys: list[int] = [
            n_bins if unset and is_missing(v) else min(last, int((scale(v) - start) / step))
            for v in values
        ]
        if unset:
            labels.append(UNSET)
    else:
        labels, keys = categories(values)
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


def column_values(frame: Any, column: str) -> list[Any]:
    """A column as a list (of Nones when the index has no such column)."""
    return frame[column].tolist() if column in frame.columns else [None] * len(frame)


def flow_timings(frame: Any) -> tuple[FlowTiming, ...]:
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


def _param_axis(column: Any) -> tuple[tuple[str, ...], list[float | None], bool] | None:
    """How a parameter is charted: category labels (or none: an axis), x per run, log scale.

    None when it is no axis: not numeric, and more than ``MAX_CHART_CATEGORIES`` values.
    """
    values = column.tolist()
    distinct, unset = distinct_values(values)
    if numeric_column(column) and len(distinct) > MAX_CATEGORIES:
        xs: list[float | None] = [None if unset and is_missing(v) else float(v) for v in values]
        return (), xs, _wide(distinct)
    if len(distinct) > MAX_CHART_CATEGORIES:
        return None  # a label per run: no axis
    labels, keys = categories(values)
    return tuple(labels), [float(k) for k in keys], False


def result_series(
    frame: Any, runs: list[str], statuses: list[str], varied: list[str]
) -> tuple[ResultSeries, ...]:
    """Each numeric result that varies, against each varied parameter."""
    charted = [
        c
        for c in frame.columns
        if c.startswith("result.")
        and numeric_column(frame[c])
        and frame[c].nunique(dropna=True) > 1
    ]
    axes = {c: _param_axis(frame[c]) for c in varied} if charted else {}
    axes = {c: axis for c, axis in axes.items() if axis is not None}
    series = []
    for rc in charted:
        ys = frame[rc].tolist()
        finite = [i for i, y in enumerate(ys) if is_number(y) and math.isfinite(y)]
        for pc, (axis_labels, xs, log_x) in axes.items():
            if len(axis_labels) > MAX_CHART_CATEGORIES:
                continue  # a label per run is no axis
            shown = [i for i in finite if xs[i] is not None]
            kept = _sample(shown, statuses)
            labels = column_values(frame, pc)
            points = tuple(
                Point(xs[i], float(ys[i]), statuses[i], runs[i], as_text(labels[i]) or UNSET)
                for i in kept
            )
            medians: tuple[float | None, ...] = ()
            if len(kept) < len(shown) and axis_labels:
                groups: dict[float, list[float]] = {}
                for i in shown:
                    groups.setdefault(xs[i], []).append(ys[i])  # type: ignore[index]
                medians = tuple(
                    statistics.median(g) if len(g := groups.get(float(k), [])) >= 3 else None
                    for k in range(len(axis_labels))
                )
            name, param = rc.removeprefix("result."), pc.removeprefix("param.")
            n_runs = len(shown) if len(kept) < len(shown) else 0
            series.append(ResultSeries(name, param, axis_labels, points, log_x, n_runs, medians))
    return tuple(series)


def _sample(rows: list[int], statuses: list[str], cap: int = MAX_POINTS) -> list[int]:
    """At most ``cap`` of ``rows``: failures first (up to half of them), then an even sample."""
    if len(rows) <= cap:
        return rows
    bad = [i for i in rows if statuses[i] not in GOOD][: cap // 2]
    good = [i for i in rows if statuses[i] in GOOD]
    step = len(good) / (cap - len(bad))
    return sorted(bad + [good[int(k * step)] for k in range(cap - len(bad))])
