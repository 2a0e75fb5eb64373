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

The steps, one module each, can be used alone:

- ``data``: ``report_data(frame)`` turns an index DataFrame into plain dataclasses (header,
  chart series from ``series``, table rows); ``fmt``: status order and colours, values as text;
- ``svg``: the charts; ``html``: ``render_html(data)``, the page, from a jinja2 template;
- ``table``: past ``TABLE_ROWS_MAX`` runs, the run table as columnar JSON for the page's script;
- ``notebooks``: ``refresh_notebooks``, executed notebooks to HTML with nbconvert;
- here: ``load_details`` (what ``status.json`` adds) and ``write_report``, which reads the files,
  runs the steps and writes the page.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..rundir import STATUS_FILE, atomic_write_text
from ..spec import NOT_RUN, OK
from .data import (
    FlowInfo,
    Header,
    Link,
    ReportData,
    Row,
    RunDetail,
    Value,
    relative_href,
    report_data,
)
from .fmt import STATUS_COLORS, STATUS_ORDER, WARNED
from .html import render_html
from .notebooks import html_is_fresh, refresh_notebooks
from .series import (
    MAX_CATEGORIES,
    MAX_POINTS,
    MAX_STATUS_BARS,
    FlowTiming,
    Histogram,
    Point,
    ResultSeries,
    StatusBar,
    StatusByParam,
)
from .table import TABLE_ROWS_MAX, RunTable, run_table

__all__ = [
    "MAX_CATEGORIES",
    "MAX_POINTS",
    "MAX_STATUS_BARS",
    "REPORT_FILE",
    "STATUS_COLORS",
    "STATUS_ORDER",
    "TABLE_ROWS_MAX",
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
    "RunTable",
    "StatusBar",
    "StatusByParam",
    "Value",
    "load_details",
    "prepare",
    "refresh_notebooks",
    "render_html",
    "report_data",
    "run_table",
    "write_report",
]

log = logging.getLogger("ductaflow")

REPORT_FILE = "report.html"


def _read_status(run_dir: str) -> dict[str, Any] | None:
    """``rundir.read_status`` on a path string (a ``Path`` per run costs 30 µs at 100,000 runs)."""
    try:
        with open(os.path.join(run_dir, STATUS_FILE), encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def load_details(run_dirs: Iterable[str | Path]) -> dict[str, RunDetail]:
    """Each run's flows and traceback from its ``status.json`` (runs without one left out)."""
    details = {}
    for run_dir in map(os.path.normpath, map(str, run_dirs)):
        status = _read_status(run_dir)
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
                    name=str(flow.get("name") or os.path.splitext(notebook)[0]),
                    notebook=notebook,
                    status=state,
                    failed_cell=cell if isinstance(cell, int) else None,
                    error_anchor=isinstance(cell, int),
                    exists=state != NOT_RUN and os.path.isfile(os.path.join(run_dir, notebook)),
                )
            )
        traceback = status.get("traceback")
        details[run_dir] = RunDetail(
            tuple(flows), traceback if isinstance(traceback, str) else None
        )
    return details


def _large_details(frame: Any) -> tuple[dict[str, RunDetail], set[str]]:
    """``load_details`` of a large report's runs, reading ``status.json`` only where the index
    cannot stand for it: the runs that are not ok (their tracebacks, failing cells and flows that
    did not run). An ok run's flows are its sweep's, in the order one ok run of that sweep
    recorded them, when the index lists the same flows for it (else its ``status.json`` is
    read); an ok flow's notebook was saved. At 100,000 runs this reads 5,000 files, not 100,000.

    ``frame``'s ``run_dir`` are normalized (``os.path.normpath``). Also returns the run
    directories whose ``status.json`` was read.
    """
    flow_cols = [c for c in frame.columns if c.startswith("flow.") and c.endswith(".duration_s")]
    names = [c[len("flow.") : -len(".duration_s")] for c in flow_cols]
    has = frame[flow_cols].notna().to_numpy() if flow_cols else None
    patterns = [row.tobytes() for row in has] if has is not None else [b""] * len(frame)
    run_dirs = frame["run_dir"].tolist()
    ok = (frame["status"] == OK).fillna(False).tolist()
    details = load_details([d for d, good in zip(run_dirs, ok, strict=True) if not good])
    looked = set(details)
    # the ok runs by (sweep, flows the index lists): one status.json read for each group
    groups: dict[tuple[Any, bytes], list[str]] = {}
    listed: dict[tuple[Any, bytes], set[str]] = {}
    sweeps = frame["sweep"].tolist()
    for i, (good, sweep, pattern) in enumerate(zip(ok, sweeps, patterns, strict=True)):
        if not good:
            continue
        members = groups.get((sweep, pattern))
        if members is None:
            members = groups[sweep, pattern] = []
            flags = has[i] if has is not None else ()
            listed[sweep, pattern] = {n for n, h in zip(names, flags, strict=False) if h}
        members.append(run_dirs[i])
    for key, members in groups.items():
        template = load_details(members[:1]).get(members[0])
        if template is not None and (
            {f.name for f in template.flows} != listed[key]
            or any(f.status != OK for f in template.flows)
        ):
            template = None  # the index and status.json disagree: read each
        if template is None:
            details.update(load_details(members))
            looked.update(members)
        else:
            details.update(dict.fromkeys(members, template))
    return details, looked


def _with_html(run_dir: str, detail: RunDetail, rendered: set[str]) -> RunDetail:
    """The detail with each flow linking its HTML when that is rendered, else its notebook."""
    html = [os.path.join(run_dir, f.notebook) in rendered for f in detail.flows]
    if all(h == f.html for h, f in zip(html, detail.flows, strict=True)):
        return detail
    flows = tuple(replace(f, html=h) for h, f in zip(html, detail.flows, strict=True))
    return replace(detail, flows=flows)


def _shown_warned(frame: Any) -> Any:
    """``frame`` with the status of each ``ok`` run that has warnings shown as ``warned``."""
    if "warnings" not in frame.columns:
        return frame
    warned = ((frame["status"] == OK) & (frame["warnings"].fillna(0) > 0)).fillna(False)
    if not warned.any():
        return frame
    status = frame["status"].astype("object").where(~warned, WARNED)
    return frame.assign(status=status.astype(frame["status"].dtype))


def prepare() -> None:
    """Import and compile what ``write_report`` needs (pandas, the page's template): a sweep
    does it while its runs execute, so that its report at the end costs milliseconds."""
    import pandas  # noqa: F401  (load_index's)

    from .html import compile_template

    compile_template()


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
    from ..index import load_index

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
    frame = _shown_warned(frame)
    if output is None:
        output = root / sweep / REPORT_FILE if sweep is not None else root / REPORT_FILE
    output = Path(output).absolute()
    frame = frame.assign(run_dir=[os.path.normpath(d) for d in frame["run_dir"]])
    large = len(frame) > TABLE_ROWS_MAX
    if large:
        details, looked = _large_details(frame)
    else:
        details = load_details(frame["run_dir"])
        looked = set(details)
    if render_notebooks is True:
        looked = set(details)
    # HTML beside a notebook is looked for in the runs whose status.json was read (all of a
    # small report's; a large one's that are not ok), or that are to be rendered: an ok run of a
    # large report links its notebooks as saved (.ipynb), at no look per run
    only_bad = render_notebooks == "failed"
    bad = {d for d, state in zip(frame["run_dir"], frame["status"], strict=True)
           if state not in (OK, WARNED)} if only_bad else set()  # fmt: skip
    rendered: set[str] = set()  # notebooks with an up-to-date HTML beside them
    stale: list[Path] = []
    for run_dir, detail in details.items():
        for f in detail.flows if run_dir in looked else ():
            if not f.exists:
                continue
            notebook = os.path.join(run_dir, f.notebook)
            if html_is_fresh(notebook, os.path.splitext(notebook)[0] + ".html"):
                rendered.add(notebook)
            elif render_notebooks and (not only_bad or run_dir in bad):
                stale.append(Path(notebook))
    rendered.update(str(p) for p, target in refresh_notebooks(stale).items() if target)
    unlooked: dict[int, RunDetail] = {}  # a shared detail (an ok run's flows): one copy
    for run_dir, detail in details.items():
        if run_dir in looked:
            details[run_dir] = _with_html(run_dir, detail, rendered)
        else:
            shown = unlooked.get(id(detail))
            if shown is None:
                shown = unlooked[id(detail)] = _with_html(run_dir, detail, set())
            details[run_dir] = shown
    data = report_data(frame, details=details, base=output.parent, title=sweep, rows=not large)
    data = replace(data, index_href=relative_href(root / "index.csv", output.parent))
    table = run_table(frame, data, details, output.parent) if large else None
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output, render_html(data, table))
    log.info("report of %d runs -> %s (%.2f s)", len(frame), output, time.perf_counter() - t0)
    return output
