"""``ductaflow open``'s debug files reproduce the run they were written for."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from ductaflow import run_flow
from ductaflow.debug import debug_flow, is_debug_file
from ductaflow.engine import execute_run
from ductaflow.errors import InputError
from ductaflow.spec import FlowRef, RunOptions, RunSpec

FLOWS = Path(__file__).parent / "flows"


@pytest.fixture
def recorded_run(tmp_path: Path) -> tuple[Path, Path]:
    """A finished run of a copy of work.py (its file is edited by some tests)."""
    flow = tmp_path / "work.py"
    shutil.copy(FLOWS / "work.py", flow)
    run_dir = tmp_path / "runs" / "r1"
    result = run_flow(flow, {"x": 21}, run_dir)
    assert result.ok, result.error
    assert json.loads((run_dir / "results.json").read_text()) == {"double": 42}
    return flow, run_dir


def _displayed(nb: nbformat.NotebookNode) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", "") + out.get("data", {}).get("text/markdown", ""))
    return "".join(parts)


def test_the_debug_notebook_reproduces_the_run(recorded_run: tuple[Path, Path]) -> None:
    _, run_dir = recorded_run
    made = debug_flow(run_dir)
    assert made.path == run_dir / "work_debug.ipynb" and not made.changed
    nb = nbformat.read(made.path, as_version=4)
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    assert ["ductaflow-config"] in tags and ["injected-parameters"] in tags
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code")
    # executed as-is in the run directory, as Jupyter would open it there
    NotebookClient(nb, timeout=120, resources={"metadata": {"path": str(run_dir)}}).execute()
    assert "| double | 42 |" in _displayed(nb)
    # it shows the results, and leaves the run's own record alone
    assert json.loads((run_dir / "results.json").read_text()) == {"double": 42}
    assert is_debug_file(made.path.name) and not is_debug_file("work_executed.ipynb")


def test_the_debug_script_runs_with_python(recorded_run: tuple[Path, Path], tmp_path: Path) -> None:
    _, run_dir = recorded_run
    made = debug_flow(run_dir, "work", script=True)
    assert made.path == run_dir / "work_debug.py"
    proc = subprocess.run(
        [sys.executable, str(made.path)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "result double = 42" in proc.stdout
    # it ran in the run directory, as the run did
    assert (run_dir / "executions.log").read_text().count("\n") == 2


def test_a_changed_flow_is_said(recorded_run: tuple[Path, Path], caplog) -> None:
    flow, run_dir = recorded_run
    flow.write_text(flow.read_text() + "\n# %%\nprint('new cell')\n")
    made = debug_flow(run_dir)
    assert made.changed
    assert "changed since this run" in caplog.text
    assert "new cell" in made.path.read_text()


def test_it_opens_the_failed_flow_by_default(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "r"
    flows = (FlowRef.from_path(FLOWS / "work.py"), FlowRef.from_path(FLOWS / "raises.py"))
    result = execute_run(RunSpec(run_dir, {"x": 1}, flows), RunOptions(warm=False))
    assert result.status == "failed"
    assert debug_flow(run_dir).path.name == "raises_debug.ipynb"
    assert debug_flow(run_dir, "work").path.name == "work_debug.ipynb"
    with pytest.raises(InputError, match="--flow 'nope'"):
        debug_flow(run_dir, "nope")


def test_not_a_run_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no readable status\.json"):
        debug_flow(tmp_path)
