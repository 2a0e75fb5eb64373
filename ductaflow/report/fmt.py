"""What the data, the charts and the page share: status order and colours, values as text.

Pure functions of plain values (index cells: None, NaN, NA, numpy scalars); no pandas, no HTML
beyond ``esc``.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from typing import Any

from ..spec import DIED, FAILED, INTERRUPTED, OK, RUNNING, TIMEOUT

__all__ = [
    "DASH",
    "GOOD",
    "OTHER_COLOR",
    "STATUS_COLORS",
    "STATUS_ORDER",
    "WARNED",
    "as_text",
    "clip",
    "color_var",
    "esc",
    "fmt_num",
    "fmt_seconds",
    "is_missing",
    "is_number",
    "native",
    "nice_domain",
    "nice_step",
    "ordered_counts",
    "status_class",
    "status_rank",
    "tick_label",
]

#: How the report shows a run that ended ``ok`` with warnings (its index row: ``ok``, and a
#: ``warnings`` count above 0): a status of its own, between the failures and ``ok``.
WARNED = "warned"
#: The order of statuses in counts, charts and the table: failures first.
STATUS_ORDER = (FAILED, TIMEOUT, DIED, INTERRUPTED, RUNNING, WARNED, OK)
#: Statuses that are not a failure.
GOOD = (OK, WARNED, RUNNING)
#: One colour per status, from the Okabe-Ito palette (told apart with colour-blindness too);
#: ok with warnings orange, between green and red; timeout Tol's wine.
STATUS_COLORS = {
    OK: "#009E73",
    WARNED: "#E69F00",
    FAILED: "#D55E00",
    TIMEOUT: "#882255",
    DIED: "#CC79A7",
    INTERRUPTED: "#8C8C8C",
    RUNNING: "#0072B2",
}
#: The colour of a status the report does not know.
OTHER_COLOR = "#4D4D4D"
DASH = "\u2013"  # an en dash, for ranges


def status_rank(status: str) -> float:
    """Where a status sorts: failures first, ok last."""
    try:
        return STATUS_ORDER.index(status)
    except ValueError:
        return STATUS_ORDER.index(OK) - 0.5  # an unknown status: after the known failures


def ordered_counts(counter: Mapping[str, int]) -> tuple[tuple[str, int], ...]:
    """``(status, count)`` in ``STATUS_ORDER``, statuses with no run left out."""
    return tuple(
        (s, counter[s]) for s in sorted(counter, key=lambda s: (status_rank(s), s)) if counter[s]
    )


def status_class(status: str) -> str:
    """The CSS class that colours a chart mark of this status."""
    return f"st-{status}" if status in STATUS_COLORS else "st-other"


def color_var(status: str) -> str:
    """An inline style that sets ``--c`` to the status colour (tiles, badges, legend)."""
    return f"--c:{STATUS_COLORS.get(status, OTHER_COLOR)}"


def fmt_num(value: float, digits: int = 4) -> str:
    """A number with ``digits`` significant digits; an exponent only below 1e-4 or from 1e15."""
    if not math.isfinite(value):
        return str(value)
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    text = f"{value:.{digits}g}"
    if "e+" in text and abs(value) < 1e15:
        return f"{value:.0f}"
    return text


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return DASH
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def nice_step(raw: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is at least ``raw``."""
    if not raw > 0 or not math.isfinite(raw):
        return 1.0
    magnitude = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if m * magnitude >= raw * (1 - 1e-9):
            return m * magnitude
    return 10 * magnitude  # pragma: no cover


def nice_domain(lo: float, hi: float, target: int = 5) -> tuple[float, float, list[float], float]:
    """A domain covering ``[lo, hi]`` that starts and ends on ticks, the ticks, and their step."""
    if hi <= lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    step = nice_step((hi - lo) / target)
    start = math.floor(lo / step + 1e-9) * step
    end = math.ceil(hi / step - 1e-9) * step
    ticks = [start + i * step for i in range(round((end - start) / step) + 1)]
    return start, end, ticks, step


def tick_label(value: float, step: float) -> str:
    if abs(value) < step * 1e-6:
        return "0"
    if abs(value) >= 1e6 or abs(value) < 1e-4:
        return f"{value:.3g}"
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    if decimals and abs(step / 10 ** math.floor(math.log10(step)) - 2.5) < 1e-9:
        decimals += 1
    return f"{value:.{decimals}f}"


def esc(text: Any) -> str:
    """Text for HTML and SVG, quotes included."""
    return html.escape(str(text), quote=True)


def clip(text: str, width_px: float, char_px: float = 6.4) -> str:
    """Text cut with an ellipsis to about ``width_px`` pixels."""
    n = max(3, int(width_px / char_px))
    return text if len(text) <= n else text[: n - 1] + "…"


# -- index cells as values ---------------------------------------------------------------------
_PLAIN = (str, int, float, bool, type(None))


def native(value: Any) -> Any:
    """A numpy scalar as the Python value it holds; anything else as it is."""
    if type(value) in _PLAIN:
        return value
    item = getattr(value, "item", None)
    return item() if callable(item) and not isinstance(value, str | bytes) else value


def is_missing(value: Any) -> bool:
    """None, NaN, NA or NaT: an empty cell of the index."""
    kind = type(value)
    if kind is float:
        return value != value  # NaN
    if kind is str or kind is int or kind is bool:
        return False
    value = native(value)
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return type(value).__name__ in ("NAType", "NaTType")


def is_number(value: Any) -> bool:
    """A number that is not NaN (nor a bool)."""
    kind = type(value)
    if kind is float:
        return value == value
    if kind is int:
        return True
    if kind is str or kind is bool or value is None:
        return False
    value = native(value)
    return isinstance(value, int | float) and not isinstance(value, bool) and not is_missing(value)


def as_text(value: Any) -> str:
    """A cell as text: ``""`` when missing, a float as its ``repr``."""
    if type(value) is str:
        return value
    value = native(value)
    if is_missing(value):
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)
