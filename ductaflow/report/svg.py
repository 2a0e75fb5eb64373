"""The charts, as inline SVG drawn here from ``ReportData`` series (no library, no script).

Each function returns one ``<svg>`` element as markup (its text escaped here), or ``""`` when
there is nothing to draw. Marks carry a ``st-<status>`` class that the page's CSS colours.
"""

from __future__ import annotations

import math
import statistics

from ..spec import OK
from .fmt import (
    DASH,
    clip,
    esc,
    fmt_num,
    fmt_seconds,
    nice_domain,
    nice_step,
    status_class,
    status_rank,
    tick_label,
)
from .series import FlowTiming, Histogram, Point, ResultSeries, StatusByParam

__all__ = ["svg_durations", "svg_flow_timings", "svg_result", "svg_status"]


def _svg_open(width: int, height: int, kind: str, label: str) -> str:
    return (
        f'<svg class="chart {kind}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{esc(label)}">'
        f"<title>{esc(label)}</title>"
    )


def svg_durations(hist: Histogram) -> str:
    width, height = 600, 230
    left, right, top, bottom = 48, 16, 12, 42
    pw, ph = width - left - right, height - top - bottom
    if not hist.counts:
        return ""
    n_bins = len(hist.edges) - 1
    totals = [sum(c[i] for _, c in hist.counts) for i in range(n_bins)]
    y_end = max(totals)
    y_step = max(1, math.ceil(nice_step(y_end / 4)))
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
            tip = f"{n} {status}, {fmt_num(hist.edges[i])}{DASH}{fmt_num(hist.edges[i + 1])} s"
            out.append(
                f'<rect class="bar {status_class(status)}" x="{X(hist.edges[i]) + gap / 2:.1f}" '
                f'y="{y_top:.1f}" width="{bar_w - gap:.1f}" height="{y_bottom - y_top:.1f}">'
                f"<title>{esc(tip)}</title></rect>"
            )
            level += n
    _, _, ticks, step = nice_domain(x0, x1, 6)
    for t in ticks:
        if x0 - 1e-9 <= t <= x1 + 1e-9:
            out.append(
                f'<text class="tick" x="{X(t):.1f}" y="{top + ph + 16}" '
                f'text-anchor="middle">{tick_label(t, step)}</text>'
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


def svg_flow_timings(timings: tuple[FlowTiming, ...]) -> str:
    if not timings:
        return ""
    row_h = 30
    width, left, right, top = 600, 150, 150, 8
    height = top + row_h * len(timings) + 30
    pw = width - left - right
    _, x_end, ticks, step = nice_domain(0.0, max(t.max_s for t in timings), 4)
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
            f'text-anchor="middle">{tick_label(t, step)}</text>'
        )
    for i, timing in enumerate(timings):
        y = top + i * row_h
        mid = y + row_h / 2
        tip = (
            f"{timing.name}: median {timing.median_s:.2f} s, {timing.min_s:.2f}{DASH}"
            f"{timing.max_s:.2f} s over {timing.n} runs"
        )
        spread = f"{fmt_seconds(timing.min_s)}{DASH}{fmt_seconds(timing.max_s)}"
        out.append(
            f'<text class="label" x="{left - 8}" y="{mid + 4:.1f}" text-anchor="end">'
            f"{esc(clip(timing.name, left - 12))}</text>"
            f'<rect class="bar flow" x="{left}" y="{y + 7}" width="{X(timing.median_s) - left:.1f}"'
            f' height="{row_h - 14}"><title>{esc(tip)}</title></rect>'
            f'<line class="whisker" x1="{X(timing.min_s):.1f}" x2="{X(timing.max_s):.1f}" '
            f'y1="{mid:.1f}" y2="{mid:.1f}"/>'
            f'<text class="value" x="{left + pw + 8}" y="{mid + 4:.1f}">'
            f'{fmt_seconds(timing.median_s)} <tspan class="muted">({spread})</tspan></text>'
        )
    out.append("</svg>")
    return "".join(out)


def svg_status(chart: StatusByParam) -> str:
    row_h, left, bar_w = 24, 120, 180
    width = left + bar_w + 110
    height = row_h * len(chart.bars) + 6
    out = [_svg_open(width, height, "status", f"Status by {chart.param}")]
    for i, bar in enumerate(chart.bars):
        y = 3 + i * row_h
        label = esc(clip(bar.label, left - 12))
        out.append(
            f'<text class="label" x="{left - 8}" y="{y + 16}" text-anchor="end">'
            f"<title>{esc(bar.label)}</title>{label}</text>"
        )
        x = float(left)
        for status, n in bar.counts:
            w = n / bar.total * bar_w
            out.append(
                f'<rect class="seg {status_class(status)}" x="{x:.1f}" y="{y + 4}" '
                f'width="{w:.1f}" height="{row_h - 8}">'
                f"<title>{esc(f'{chart.param} = {bar.label}: {n} {status}')}</title></rect>"
            )
            x += w
        ok = dict(bar.counts).get(OK, 0)
        cls = "value" if ok == bar.total else "value bad"
        out.append(
            f'<text class="{cls}" x="{left + bar_w + 8}" y="{y + 16}">{ok}/{bar.total} ok</text>'
        )
    out.append("</svg>")
    return "".join(out)


def svg_result(series: ResultSeries) -> str:
    width, height = 300, 230
    left, right, top, bottom = 54, 10, 10, 42
    pw, ph = width - left - right, height - top - bottom
    ys = [p.y for p in series.points]
    if not ys:
        return ""
    pad = (max(ys) - min(ys)) * 0.04  # no dot sits on the axis, none goes below 0 for nothing
    low = min(ys) - pad if min(ys) < 0 or min(ys) - pad >= 0 else 0.0
    y0, y1, y_ticks, y_step = nice_domain(low, max(ys) + pad, 5)

    def Y(v: float) -> float:
        return top + ph - (v - y0) / (y1 - y0) * ph

    label = f"{series.result} against {series.param}"
    if series.n_runs:
        label += f" ({len(series.points):,} of {series.n_runs:,} runs shown)"
    out = [_svg_open(width, height, "result", label)]
    for t in y_ticks:
        out.append(
            f'<line class="gridline" x1="{left}" x2="{left + pw}" y1="{Y(t):.1f}" '
            f'y2="{Y(t):.1f}"/><text class="tick" x="{left - 6}" y="{Y(t) + 4:.1f}" '
            f'text-anchor="end">{tick_label(t, y_step)}</text>'
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
            label = esc(clip(name, band - 4))
            out.append(
                f'<text class="tick" x="{cx:.1f}" y="{top + ph + 16}" '
                f'text-anchor="middle"><title>{esc(name)}</title>{label}</text>'
            )
            group = sorted(by_category.get(i, []), key=lambda p: p.y)
            for k, p in enumerate(group):
                offset = ((k * 0.6180339887) % 1 - 0.5) * spread if len(group) > 1 else 0.0
                marks.append((cx + offset, Y(p.y), p))
            med = series.medians[i] if series.medians else None
            if med is None and not series.medians and len(group) >= 3:
                med = statistics.median(p.y for p in group)
            if med is not None:
                out.append(
                    f'<line class="median" x1="{cx - spread / 2 - 4:.1f}" '
                    f'x2="{cx + spread / 2 + 4:.1f}" y1="{Y(med):.1f}" y2="{Y(med):.1f}">'
                    f"<title>median {esc(fmt_num(med))}</title></line>"
                )
    else:
        xs = [math.log10(p.x) if series.log_x else p.x for p in series.points]
        if series.log_x:
            x0, x1 = math.floor(min(xs)), math.ceil(max(xs))
            x_ticks = [float(t) for t in range(int(x0), int(x1) + 1)]
            x_labels = [f"{10**t:g}" for t in x_ticks]
        else:
            x0, x1, x_ticks, x_step = nice_domain(min(xs), max(xs), 5)
            x_labels = [tick_label(t, x_step) for t in x_ticks]
        span = (x1 - x0) or 1.0

        def X(v: float) -> float:
            return left + (v - x0) / span * pw

        for t, text in zip(x_ticks, x_labels, strict=True):
            out.append(
                f'<text class="tick" x="{X(t):.1f}" y="{top + ph + 16}" '
                f'text-anchor="middle">{esc(text)}</text>'
            )
        marks = [(X(x), Y(p.y), p) for x, p in zip(xs, series.points, strict=True)]
    # failures drawn last, on top
    marks.sort(key=lambda m: -status_rank(m[2].status))
    for x, y, p in marks:
        tip = f"{p.run}\n{series.param} = {p.label}\n{series.result} = {p.y!r}\n{p.status}"
        out.append(
            f'<circle class="pt {status_class(p.status)}" cx="{x:.1f}" cy="{y:.1f}" '
            f'r="{radius}"><title>{esc(tip)}</title></circle>'
        )
    out.append(f'<line class="axis" x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}"/>')
    x_title = f"{series.param} (log scale)" if series.log_x else series.param
    out.append(
        f'<text class="axis-title" x="{left + pw / 2}" y="{height - 6}" '
        f'text-anchor="middle">{esc(clip(x_title, pw))}</text>'
    )
    out.append(
        f'<text class="axis-title" transform="translate(13 {top + ph / 2}) rotate(-90)" '
        f'text-anchor="middle">{esc(clip(series.result, ph))}</text></svg>'
    )
    return "".join(out)
