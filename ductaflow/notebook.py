"""Flows as notebooks: read a flow in any Jupytext format, inject its config, mark failures, save.

This module only shapes notebooks (jupytext and nbformat); executing them is ``engine``'s job.

Papermill's conventions hold: the injected cell goes after the cell tagged ``parameters`` (or
first), an ``injected-parameters`` cell already in the flow is replaced where it stands, the
error markers of an earlier papermill run are dropped, and the injected parameters are also kept in
``metadata.papermill.parameters``.

Injection is data, never code: the injected cell parses the config from a JSON string literal
(``repr`` of the JSON text is always a valid Python string literal), and each variable is then read
out of that dict by key. No config value is ever pasted into source code.
"""

from __future__ import annotations

import hashlib
import html
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode

from .checks import (
    CONFIG_TAG,
    ERROR_TAG,
    INJECTED_TAG,
    PARAMETERS_TAG,
    STOPPED_TAG,
    flow_cells,
    overwrite_warnings,
    read_flow_bytes,
    read_notebook,
)
from .config import is_variable_name
from .rundir import atomic_write_text
from .spec import ERROR_ANCHOR, FlowRef

__all__ = [
    "CONFIG_TAG",
    "ERROR_ANCHOR",
    "ERROR_TAG",
    "INJECTED_TAG",
    "NOT_RUN_TAG",
    "PARAMETERS_TAG",
    "STOPPED_TAG",
    "add_error_output",
    "build_notebook",
    "config_markdown",
    "flow_cell_number",
    "injected_source",
    "mark_failure",
    "mark_stopped",
    "read_flow",
    "save_notebook",
]

#: The cells after a clean stop, which were not executed.
NOT_RUN_TAG = "ductaflow-not-run"
_DEFAULT_KERNELSPEC = {
    "name": "python3",
    "display_name": "Python 3 (ipykernel)",
    "language": "python",
}


def read_flow(path: Path) -> tuple[NotebookNode, str]:
    """Read a flow in any Jupytext format (detected, not assumed); also the sha256 of its bytes."""
    data = read_flow_bytes(path)
    nb, _ = read_notebook(path, data)
    return nb, hashlib.sha256(data).hexdigest()


def injected_source(config: Mapping[str, Any]) -> tuple[str, list[str]]:
    """Source of the injected cell, and the keys that could not become variables."""
    text = json.dumps(config, ensure_ascii=False)
    lines = [
        "# Parameters injected by ductaflow. The config is parsed from JSON: values are data.",
        "import json as _ductaflow_json",
        f"config = _ductaflow_json.loads({text!r})",
        "del _ductaflow_json",
    ]
    skipped = []
    for key, value in config.items():
        if isinstance(value, dict):
            continue
        if is_variable_name(key):
            lines.append(f"{key} = config[{key!r}]")
        else:
            skipped.append(key)
    return "\n".join(lines) + "\n", skipped


def _md_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = html.escape(text, quote=False).replace("|", "\\|").replace("`", "&#96;")
    return text.replace("\r\n", "\n").replace("\n", "<br>") or "&nbsp;"


def config_markdown(config: Mapping[str, Any], title: str = "Config") -> str:
    """The config as markdown tables: top-level values first, each nested dict as a section."""
    out: list[str] = []

    def section(cfg: Mapping[str, Any], heading: str, level: int) -> None:
        out.append(f"{'#' * min(level, 6)} {html.escape(heading, quote=False)}\n")
        scalars = [(k, v) for k, v in cfg.items() if not isinstance(v, dict)]
        if scalars:
            out.append("| key | value |\n|---|---|")
            out.extend(f"| {_md_value(k)} | {_md_value(v)} |" for k, v in scalars)
            out.append("")
        elif not any(isinstance(v, dict) for v in cfg.values()):
            out.append("*(empty)*\n")
        for key, value in cfg.items():
            if isinstance(value, dict):
                name = f"{heading}.{key}" if level > 2 else key
                section(value, name, level + 1)

    section(config, title, 2)
    return "\n".join(out).rstrip() + "\n"


def build_notebook(
    flow: NotebookNode,
    config: Mapping[str, Any],
    *,
    config_hash: str,
    ref: FlowRef | None = None,
) -> tuple[NotebookNode, list[str]]:
    """The notebook to execute: config table first, then the flow with its injected cell.

    The injected cell replaces a stale ``injected-parameters`` cell where it stands, else
    follows the ``parameters`` cell, else goes first (papermill's rule). Markers of an earlier
    run (papermill's or ductaflow's) are dropped and old outputs cleared. The flow's kernelspec
    is kept (a default one is set when it has none). Returns the notebook and warnings: config
    keys that stay in ``config`` only, and (from ``ref.facts``) keys the flow overwrites.
    """
    nb = nbformat.from_dict(flow)  # a deep copy
    nb.cells = flow_cells(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        if NOT_RUN_TAG in cell.metadata.get("tags", []):
            cell.metadata.tags = [t for t in cell.metadata.tags if t != NOT_RUN_TAG]
    source, skipped = injected_source(config)
    injected = nbformat.v4.new_code_cell(source, metadata={"tags": [INJECTED_TAG]})
    stale = _first_tagged(nb, INJECTED_TAG)
    if stale is not None:
        nb.cells[stale] = injected
    else:
        params = _first_tagged(nb, PARAMETERS_TAG)
        nb.cells.insert(0 if params is None else params + 1, injected)
    table = nbformat.v4.new_markdown_cell(config_markdown(config), metadata={"tags": [CONFIG_TAG]})
    nb.cells.insert(0, table)
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i}"
    kernelspec = nb.metadata.get("kernelspec")
    if not isinstance(kernelspec, Mapping) or not kernelspec.get("name"):
        nb.metadata["kernelspec"] = dict(_DEFAULT_KERNELSPEC)
    nb.metadata.pop("jupytext", None)
    nb.metadata["ductaflow"] = {"config": config, "config_hash": config_hash}
    papermill: dict[str, Any] = {"parameters": dict(config)}
    if ref is not None:
        papermill["input_path"] = str(ref.path)
    nb.metadata["papermill"] = papermill
    warnings = [
        f"config key {k!r} is not a Python name a flow can take (invalid or reserved); "
        f"it is in config[{k!r}] only"
        for k in skipped
    ]
    if ref is not None and ref.facts is not None:
        warnings.extend(overwrite_warnings(ref.facts, config))
    return nb, warnings


def _first_tagged(nb: NotebookNode, tag: str) -> int | None:
    return next((i for i, c in enumerate(nb.cells) if tag in c.metadata.get("tags", [])), None)


def flow_cell_number(nb: NotebookNode, index: int) -> int:
    """1-based number of cell ``index`` among the flow's own cells (injected ones not counted)."""
    ours = {INJECTED_TAG, CONFIG_TAG, ERROR_TAG, STOPPED_TAG}
    return sum(1 for c in nb.cells[: index + 1] if not ours & set(c.metadata.get("tags", [])))


def add_error_output(cell: NotebookNode, ename: str, evalue: str) -> None:
    """Show an error in a cell that ended without one (timeout, dead kernel, Ctrl-C)."""
    cell.setdefault("outputs", []).append(
        nbformat.v4.new_output(
            "error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"]
        )
    )


def mark_failure(nb: NotebookNode, index: int, status: str, error: str) -> None:
    """Put a visible marker at the top (after the config table) and one above cell ``index``."""
    number = flow_cell_number(nb, index)
    first_line = next((ln for ln in nb.cells[index].source.splitlines() if ln.strip()), "")
    err = html.escape(error, quote=False)
    top = nbformat.v4.new_markdown_cell(
        f'<div style="border:2px solid #c0392b;padding:0.5em;">\n\n'
        f"**ductaflow: this run ended `{status}` at cell {number}** "
        f"([jump to it](#{ERROR_ANCHOR})):\n\n<code>{err}</code>\n\n</div>\n",
        metadata={"tags": [ERROR_TAG]},
    )
    here = nbformat.v4.new_markdown_cell(
        f'<span id="{ERROR_ANCHOR}"></span>\n\n'
        f"**ductaflow: the run ended `{status}` in the cell below** (cell {number}: "
        f"<code>{html.escape(first_line[:80], quote=False)}</code>)\n",
        metadata={"tags": [ERROR_TAG]},
    )
    top["id"] = "ductaflow-error-summary"
    here["id"] = "ductaflow-error-here"
    nb.cells.insert(index, here)
    at = 1 if nb.cells and CONFIG_TAG in nb.cells[0].metadata.get("tags", []) else 0
    nb.cells.insert(at, top)


def mark_stopped(nb: NotebookNode, index: int, evalue: str) -> int:
    """Mark a clean stop (``sys.exit(0)``) at cell ``index``; returns its flow cell number.

    The ``SystemExit`` error and IPython's "To exit: use 'exit'" warning leave the cell; a marker
    follows it, and each later cell is tagged ``ductaflow-not-run``.
    """
    cell = nb.cells[index]
    cell.outputs = [
        out
        for out in cell.get("outputs", [])
        if not (out.get("output_type") == "error" and out.get("ename") == "SystemExit")
        and "To exit: use 'exit'" not in str(out.get("text", ""))
    ]
    number = flow_cell_number(nb, index)
    later = [c for c in nb.cells[index + 1 :] if c.cell_type == "code"]
    for later_cell in later:
        later_cell.metadata.setdefault("tags", []).append(NOT_RUN_TAG)
    call = f"sys.exit({evalue})" if evalue else "sys.exit()"
    marker = nbformat.v4.new_markdown_cell(
        f"**ductaflow: the flow stopped here, cleanly** (cell {number} called `{call}`); "
        f"the {len(later)} code cell(s) below were not executed.\n",
        metadata={"tags": [STOPPED_TAG]},
    )
    marker["id"] = "ductaflow-stopped"
    nb.cells.insert(index + 1, marker)
    return number


def save_notebook(nb: NotebookNode, path: Path, *, validate: bool = True) -> None:
    """Write a notebook atomically; ``validate=False`` skips nbformat's schema check (a third
    of the cost), for the saves made while a flow runs."""
    atomic_write_text(path, nbformat.writes(nb) if validate else nbformat.v4.writes(nb))
