"""An optimize sweep's history: each trial's value and the best so far, from the index rows.

The rows of a trial carry ``trial``, ``trial_state``, ``trial_value`` and ``trial_direction``
(written by ``ductaflow.trials``); ``trial_histories(frame)`` gives one ``TrialHistory`` per
sweep that has them, and ``svg_history`` draws it: a dot per complete trial, a cross at the
bottom for a failed one, the best so far as a step line, the best trial ringed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .fmt import clip, esc, fmt_num, is_number, native, nice_domain, tick_label

__all__ = ["TrialHistory", "svg_history", "trial_histories"]


@dataclass(frozen=True)
class TrialHistory:
    """The trials of one optimize sweep, by trial number."""

    sweep: str
    direction: str
    #: ``(trial number, value or None for a failed trial, run name)``, by number
    trials: tuple[tuple[int, float | None, str], ...]
    #: the best value of the trials up to each one (None before the first complete trial)
    best: tuple[float | None, ...]

    @property
    def best_run(self) -> str | None:
        """The run of the best trial (the first to reach the best value)."""
        final = self.best[-1] if self.best else None
        if final is None:
            return None
        return next(run for _, value, run in self.trials if value == final)


def trial_histories(frame: Any) -> tuple[TrialHistory, ...]:
    """One history per sweep whose index rows are trials (``trial`` and ``trial_state``)."""
    if "trial" not in frame.columns or "trial_state" not in frame.columns:
        return ()
    histories = []
    for sweep, group in frame[frame["trial"].notna()].groupby("sweep", sort=True):
        directions = group["trial_direction"].dropna() if "trial_direction" in group else ()
        direction = str(directions.iloc[0]) if len(directions) else "minimize"
        pick = min if direction == "minimize" else max
        trials = []
        for record in group.to_dict("records"):
            value = native(record.get("trial_value"))
            complete = record.get("trial_state") == "complete" and is_number(value)
            number = int(native(record["trial"]))
            trials.append((number, float(value) if complete else None, str(record.get("run"))))
        trials.sort()
        best: list[float | None] = []
        so_far: float | None = None
        for _, value, _ in trials:
            if value is not None:
                so_far = value if so_far is None else pick(so_far, value)
            best.append(so_far)
        histories.append(TrialHistory(str(sweep), direction, tuple(trials), tuple(best)))
    return tuple(histories)


def svg_history(history: TrialHistory) -> str:
    """The optimization history as inline SVG, or ``""`` without a complete trial."""
    values = [v for _, v, _ in history.trials if v is not None]
    if not values:
        return ""
    width, height = 600, 230
    left, right, top, bottom = 58, 16, 12, 42
    pw, ph = width - left - right, height - top - bottom
    numbers = [n for n, _, _ in history.trials]
    x0, x1, x_ticks, x_step = nice_domain(min(numbers), max(max(numbers), min(numbers) + 1), 6)
    pad = (max(values) - min(values)) * 0.04 or abs(values[0]) * 0.1 or 1.0
    y0, y1, y_ticks, y_step = nice_domain(min(values) - pad, max(values) + pad, 5)

    def X(v: float) -> float:
        return left + (v - x0) / ((x1 - x0) or 1.0) * pw

    def Y(v: float) -> float:
        return top + ph - (v - y0) / ((y1 - y0) or 1.0) * ph

    label = f"Optimization history of {history.sweep} ({history.direction})"
    out = [
        f'<svg class="chart history" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{esc(label)}">'
        f"<title>{esc(label)}</title>"
    ]
    for t in y_ticks:
        out.append(
            f'<line class="gridline" x1="{left}" x2="{left + pw}" y1="{Y(t):.1f}" '
            f'y2="{Y(t):.1f}"/><text class="tick" x="{left - 6}" y="{Y(t) + 4:.1f}" '
            f'text-anchor="end">{tick_label(t, y_step)}</text>'
        )
    for t in x_ticks:
        out.append(
            f'<text class="tick" x="{X(t):.1f}" y="{top + ph + 16}" '
            f'text-anchor="middle">{tick_label(t, x_step)}</text>'
        )
    steps: list[str] = []
    for (number, _, _), best in zip(history.trials, history.best, strict=True):
        if best is None:
            continue
        # a step: along at the old best, then down (or up) to the new one
        steps.append(f"H{X(number):.1f}V{Y(best):.1f}" if steps else
                     f"M{X(number):.1f},{Y(best):.1f}")  # fmt: skip
    if steps:
        out.append(f'<path class="best-line" fill="none" d="{"".join(steps)}"><title>best so '
                   f"far</title></path>")  # fmt: skip
    best_run = history.best_run
    for number, value, run in history.trials:
        if value is None:
            cx, cy = X(number), top + ph - 4
            out.append(
                f'<path class="pt st-failed" d="M{cx - 3:.1f},{cy - 3:.1f}l6,6m0,-6l-6,6">'
                f"<title>{esc(f'trial {number}: failed{chr(10)}{run}')}</title></path>"
            )
            continue
        cls = "pt st-ok best" if run == best_run else "pt st-ok"
        tip = f"trial {number}: {fmt_num(value)}\n{run}" + ("\nbest" if run == best_run else "")
        radius = 6 if run == best_run else 3.5
        out.append(
            f'<circle class="{cls}" cx="{X(number):.1f}" cy="{Y(value):.1f}" r="{radius}">'
            f"<title>{esc(tip)}</title></circle>"
        )
    out.append(f'<line class="axis" x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}"/>')
    out.append(
        f'<text class="axis-title" x="{left + pw / 2}" y="{height - 6}" '
        f'text-anchor="middle">trial</text>'
        f'<text class="axis-title" transform="translate(13 {top + ph / 2}) rotate(-90)" '
        f'text-anchor="middle">{esc(clip("trial value", ph))}</text></svg>'
    )
    return "".join(out)
