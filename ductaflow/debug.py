"""Open a recorded run again: its flow as a live notebook (or a plain script) with its config set.

``ductaflow open RUN_DIR`` writes ``<flow>_debug.ipynb`` into the run directory: the flow as it is
now, with the run's config table and ``injected-parameters`` cell, no outputs. Opened in Jupyter
its kernel starts in the run directory, as the run's did, so relative paths find the run's files.
``--script`` writes ``<flow>_debug.py`` instead, a plain script for an IDE's debugger that sets
the same ``config`` and variables and changes into the run directory first.

Results a debug session records are shown, never written over the run's ``results.json`` (that
happens only inside a run, where ``DUCTAFLOW_RUN_DIR`` is set).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InputError
from .rundir import CONFIG_FILE, atomic_write_text, read_status
from .spec import FlowRef

__all__ = [
    "DEBUG_SUFFIX",
    "DebugFlow",
    "debug_flow",
    "is_debug_file",
    "load_run",
    "recorded_flows",
]

log = logging.getLogger("ductaflow")

DEBUG_SUFFIX = "_debug"

_SCRIPT_HEADER = """\
# %% [markdown]
# Debug script written by `ductaflow open --script` for the run in this directory.
# It sets the run's `config` and variables, then runs the flow's cells as plain Python.

# %%
import os as _ductaflow_os

_ductaflow_os.chdir(_ductaflow_os.path.dirname(_ductaflow_os.path.abspath(__file__)))
del _ductaflow_os

"""


@dataclass(frozen=True)
class DebugFlow:
    """A debug file written for one flow of a run."""

    path: Path
    flow: Path
    #: True when the flow file changed since the run executed it (its sha256 differs)
    changed: bool


def is_debug_file(name: str) -> bool:
    """True for the files ``ductaflow open`` writes: never artifacts of the run itself."""
    stem, _, suffix = name.rpartition(".")
    return suffix in ("ipynb", "py") and stem.endswith(DEBUG_SUFFIX)


def load_run(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """A run directory's ``status.json`` and ``CONFIG.json``; ``InputError`` when it is not a
    run directory (either is missing, unreadable, or not a JSON object)."""
    status = read_status(run_dir)
    if status is None:
        raise InputError(f"{run_dir}: no readable status.json; is this a ductaflow run directory?")
    try:
        config = json.loads((run_dir / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{run_dir / CONFIG_FILE}: cannot read the run's config ({exc})") from None
    if not isinstance(config, dict):
        raise InputError(f"{run_dir / CONFIG_FILE}: the config is not a JSON object")
    return status, config


def recorded_flows(status: dict[str, Any]) -> list[dict[str, Any]]:
    """The flow records of a ``status.json``, in the order they ran."""
    return [f for f in status.get("flows") or () if isinstance(f, dict) and f.get("path")]


def _choose(flows: list[dict[str, Any]], name: str | None, run_dir: Path) -> dict[str, Any]:
    if not flows:
        raise InputError(f"{run_dir}/status.json: the run records no flows")
    if name is None:  # the flow that failed, else the first
        return next((f for f in flows if f.get("status") not in (None, "ok", "not-run")), flows[0])
    for flow in flows:
        if name in (flow.get("name"), Path(flow["path"]).name, Path(flow["path"]).stem):
            return flow
    names = ", ".join(str(f.get("name")) for f in flows)
    raise InputError(f"{run_dir}: --flow {name!r}: the run has the flows {names}")


def debug_flow(run_dir: str | Path, flow: str | None = None, *, script: bool = False) -> DebugFlow:
    """Write ``<flow>_debug.ipynb`` (or ``.py`` with ``script``) into ``run_dir``; return it.

    ``flow``: a flow's name (file stem) or file name; default, the flow that failed, else the
    first. Raises ``InputError`` for a directory that is not a run or a flow file that is gone.
    """
    import jupytext
    import nbformat

    from .notebook import build_notebook, read_flow

    run_dir = Path(run_dir).absolute()
    status, config = load_run(run_dir)
    record = _choose(recorded_flows(status), flow, run_dir)
    path = Path(record["path"])
    try:
        ref = FlowRef.from_path(path)
    except InputError as exc:  # the flow file is gone, or no longer a flow
        raise InputError(f"{run_dir}: cannot open the flow it ran: {exc}") from None
    changed = bool(record.get("sha256")) and record.get("sha256") != ref.sha256
    if changed:
        log.warning("%s: the flow changed since this run executed it", path)
    source, _ = read_flow(path)
    nb, _ = build_notebook(source, config, config_hash=str(status.get("config_hash", "")))
    nb.metadata["ductaflow"]["debug_of"] = str(run_dir)
    stem = f"{path.stem}{DEBUG_SUFFIX}"
    if script:
        # no YAML header in the script
        plain = nbformat.from_dict(
            {**nb, "metadata": {"jupytext": {"notebook_metadata_filter": "-all"}}}
        )
        target = run_dir / f"{stem}.py"
        atomic_write_text(target, _SCRIPT_HEADER + jupytext.writes(plain, fmt="py:percent"))
    else:
        target = run_dir / f"{stem}.ipynb"
        atomic_write_text(target, nbformat.writes(nb) + "\n")
    return DebugFlow(target, path, changed)
