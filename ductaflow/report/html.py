"""The page: ``ReportData`` through the jinja2 template ``templates/report.html.j2``.

Autoescape is on, so every value from a run (parameters, results, errors, tracebacks) is escaped
by the template; only the charts, drawn and escaped in ``svg``, are inserted as markup. The CSS
and the scripts are package files beside the template, included inline: the page loads nothing
(its Content-Security-Policy forbids it), so a runs folder can be moved or zipped with its report.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from .data import ReportData
from .fmt import GOOD, OTHER_COLOR, STATUS_COLORS, color_var, fmt_seconds, status_rank
from .history import svg_history
from .series import MAX_POINTS, ResultSeries
from .svg import svg_durations, svg_flow_timings, svg_result, svg_status
from .table import RunTable

__all__ = ["TEMPLATE", "compile_template", "render_html"]

#: The template, a package file in ``ductaflow/report/templates``.
TEMPLATE = "report.html.j2"


@functools.lru_cache(maxsize=1)
def compile_template() -> Any:
    """The compiled template, once per process."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("ductaflow.report", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    return env.get_template(TEMPLATE)


def _status_css() -> str:
    rules = [f"svg .st-{s}{{fill:{c}}}" for s, c in STATUS_COLORS.items()]
    return "\n".join([*rules, f"svg .st-other{{fill:{OTHER_COLOR}}}"])


def _when(start: datetime | None, end: datetime | None) -> str:
    if start is None:
        return "not started"
    text = f"{start:%Y-%m-%d %H:%M:%S}"
    if end is not None:
        text += (
            f" → {end:%H:%M:%S}" if end.date() == start.date() else f" → {end:%Y-%m-%d %H:%M:%S}"
        )
    return text + " UTC"


def _charts(data: ReportData) -> dict[str, Any]:
    """Each chart's SVG; empty ones left out."""
    by_result: dict[str, list[ResultSeries]] = {}
    for series in data.results:
        by_result.setdefault(series.result, []).append(series)
    return {
        "durations": svg_durations(data.durations),
        "history": [(h, svg) for h in data.histories if (svg := svg_history(h))],
        "flows": svg_flow_timings(data.flow_timings),
        "status": [(chart.param, svg_status(chart)) for chart in data.status_by_param],
        "results": [
            (result, [svg_result(s) for s in group]) for result, group in by_result.items()
        ],
    }


def _columns(data: ReportData) -> list[tuple[str, str | None]]:
    """The table's columns: ``(name, kind)``; a kind of None is not sortable."""
    heads: list[tuple[str, str | None]] = [("status", ""), ("run", "")]
    if len(data.header.sweeps) > 1:
        heads.append(("sweep", ""))
    heads += [(p, "param") for p in data.param_columns]
    heads += [(r, "result") for r in data.result_columns]
    heads += [("time", ""), ("notebooks", None), ("config", None)]
    if any(row.error for row in data.rows):
        heads.append(("error", ""))
    return heads


def render_html(data: ReportData, table: RunTable | None = None) -> str:
    """The report page: one HTML document with its styles, charts and script inline.

    With a ``table`` (a large report) the runs are data that the page's script pages, sorts
    and filters; without, ``data.rows`` are HTML rows.
    """
    from .. import __version__

    columns = _columns(data)
    return str(
        compile_template().render(
            data=data,
            table=table,
            sampled=any(s.n_runs for s in data.results),
            max_points=MAX_POINTS,
            charts=_charts(data),
            columns=columns,
            multi=len(data.header.sweeps) > 1,
            errors=any(row.error for row in data.rows),
            present=[s for s, _ in data.header.counts],
            good=GOOD,
            status_css=_status_css(),
            version=__version__,
            when=_when,
            fmt_seconds=fmt_seconds,
            color_var=color_var,
            status_rank=status_rank,
        )
    )
