"""Flows as notebooks: read a percent-format flow, inject its config, mark failures, save.

This module only shapes notebooks (jupytext and nbformat); executing them is ``engine``'s job.

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

import jupytext
import nbformat
from nbformat import NotebookNode

from .config import is_variable_name
from .errors import FlowError
from .rundir import atomic_write_text
from .spec import ERROR_ANCHOR

__all__ = [
    "CONFIG_TAG",
    "ERROR_ANCHOR",
    "ERROR_TAG",
    "INJECTED_TAG",
    "PARAMETERS_TAG",
    "add_error_output",
    "build_notebook",
    "config_markdown",
    "flow_cell_number",
    "injected_source",
    "mark_failure",
    "read_flow",
    "save_notebook",
]

PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"
CONFIG_TAG = "ductaflow-config"
ERROR_TAG = "ductaflow-error"


def read_flow(path: Path) -> tuple[NotebookNode, str]:
    """Read a Jupytext percent-format ``.py`` flow as a notebook; also the sha256 of its bytes."""
    try:
        data = path.read_bytes()
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise FlowError(f"{path}: flow file not found; check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FlowError(f"{path}: cannot read flow file ({exc})") from None
    try:
        return jupytext.reads(text, fmt="py:percent"), hashlib.sha256(data).hexdigest()
    except Exception as exc:  # jupytext raises many kinds
        raise FlowError(f"{path}: not a Jupytext percent-format flow ({exc})") from None


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
    flow: NotebookNode, config: Mapping[str, Any], *, config_hash: str
) -> tuple[NotebookNode, list[str]]:
    """The notebook to execute: config table first, injected cell after the parameters cell.

    Returns the notebook and warnings (config keys that stay in ``config`` only).
    """
    nb = nbformat.from_dict(flow)  # a deep copy
    source, skipped = injected_source(config)
    injected = nbformat.v4.new_code_cell(source, metadata={"tags": [INJECTED_TAG]})
    at = next(
        (i + 1 for i, c in enumerate(nb.cells) if PARAMETERS_TAG in c.metadata.get("tags", [])),
        0,
    )
    nb.cells.insert(at, injected)
    table = nbformat.v4.new_markdown_cell(config_markdown(config), metadata={"tags": [CONFIG_TAG]})
    nb.cells.insert(0, table)
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i}"
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    nb.metadata.pop("jupytext", None)
    nb.metadata["ductaflow"] = {"config": config, "config_hash": config_hash}
    warnings = [
        f"config key {k!r} is not a Python name a flow can take (invalid or reserved); "
        f"it is in config[{k!r}] only"
        for k in skipped
    ]
    return nb, warnings


def flow_cell_number(nb: NotebookNode, index: int) -> int:
    """1-based number of cell ``index`` among the flow's own cells (injected ones not counted)."""
    ours = {INJECTED_TAG, CONFIG_TAG, ERROR_TAG}
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


def save_notebook(nb: NotebookNode, path: Path, *, validate: bool = True) -> None:
    """Write a notebook atomically; ``validate=False`` skips nbformat's schema check (a third
    of the cost), for the saves made while a flow runs."""
    atomic_write_text(path, nbformat.writes(nb) if validate else nbformat.v4.writes(nb))
