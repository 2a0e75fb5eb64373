"""``ductaflow open``'s debug files reproduce the run they were written for."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import run_cli
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


def test_a_gone_flow_is_a_clear_error(recorded_run: tuple[Path, Path]) -> None:
    flow, run_dir = recorded_run
    flow.unlink()
    with pytest.raises(InputError, match=r"r1: cannot open the flow it ran: .*work\.py"):
        debug_flow(run_dir)


def test_not_a_run_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no readable status\.json"):
        debug_flow(tmp_path)


# -- the command: ductaflow open -------------------------------------------------------------------


def sweep_in(project: Path) -> Path:
    """A sweep of one run of work.py (x=21) in ``project``; returns its run directory."""
    shutil.copy(FLOWS / "work.py", project / "work.py")
    spec = {"name": "s", "flows": ["work.py"], "grid": {"x": [21]}}
    (project / "spec.json").write_text(json.dumps(spec))
    proc = run_cli("sweep", "spec.json", "--no-progress", cwd=project)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (project / "runs" / "s").glob("x=21-*")
    return run_dir


@pytest.fixture(scope="module")
def swept_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project directory with that sweep, swept once for the module's tests."""
    project = tmp_path_factory.mktemp("swept")
    sweep_in(project)
    return project


@pytest.fixture
def swept(swept_project: Path, tmp_path: Path) -> Path:
    """The run directory in a copy of that project, the test's own (tests write debug files
    into it): a sweep costs a conductor and a kernel, a copy nothing. (Its flows moved with the
    copy, so a sweep there would find the run stale: sweeping again needs ``sweep_in``.)"""
    project = tmp_path / "project"
    shutil.copytree(swept_project, project)
    (run_dir,) = (project / "runs" / "s").glob("x=21-*")
    return run_dir


def _results_shown(run_dir: Path, shown: str) -> None:
    """Every recorded result of the run, shown again with the same value."""
    results = json.loads((run_dir / "results.json").read_text())
    assert results
    for key, value in results.items():
        assert f"| {key} | {value!r} |" in shown or f"result {key} = {value!r}" in shown, key


def test_open_writes_a_notebook_that_reproduces_the_run(swept: Path) -> None:
    proc = run_cli("open", swept, cwd=swept.parent.parent.parent)
    assert proc.returncode == 0, proc.stderr
    path = Path(proc.stdout.strip())
    assert path == swept / "work_debug.ipynb" and path.is_file()
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=120, resources={"metadata": {"path": str(swept)}}).execute()
    _results_shown(swept, _displayed(nb))


def test_open_script_runs_with_python_and_reproduces_the_run(swept: Path, tmp_path: Path) -> None:
    proc = run_cli("open", swept, "--script", "--flow", "work", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    path = Path(proc.stdout.strip())
    assert path == swept / "work_debug.py"
    ran = subprocess.run(
        [sys.executable, str(path)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert ran.returncode == 0, ran.stderr
    _results_shown(swept, ran.stdout)


def test_debug_files_are_not_artifacts_of_the_run(tmp_path: Path) -> None:
    swept = sweep_in(tmp_path)  # its own: it sweeps again, which must skip the run
    project = swept.parent.parent.parent
    for flag in ((), ("--script",)):
        assert run_cli("open", swept, *flag, cwd=project).returncode == 0
    row = (project / "runs" / "index.csv").read_text()
    # not stale: the sweep skips the run
    proc = run_cli("sweep", "spec.json", "--no-progress", cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert "0 ok, 0 failed, 0 timeout, 0 died, 0 interrupted, 1 skipped" in proc.stdout
    # the report and the index do not show them
    proc = run_cli("report", cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert "_debug" not in (project / "runs" / "report.html").read_text()
    assert run_cli("index", cwd=project).returncode == 0
    assert (project / "runs" / "index.csv").read_text() == row


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--flow", "nope"], "--flow 'nope': the run has the flows work"),
        (["--parent"], "no readable status.json"),
    ],
)
def test_open_bad_input_is_exit_2_in_one_line(swept: Path, args: list[str], said: str) -> None:
    target = swept.parent if "--parent" in args else swept
    proc = run_cli("open", target, *[a for a in args if a != "--parent"], cwd=swept)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and said in proc.stderr, proc.stderr
    assert not list(swept.glob("*_debug*"))


def _open_jupyter(run_dir: Path, path: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("jupyter-lab", path=str(Path(sys.executable).parent)):
        pytest.skip("JupyterLab is installed beside this Python: it would really start")
    env = {**os.environ, "PATH": path}
    return subprocess.run(
        [sys.executable, "-m", "ductaflow", "open", str(run_dir), "--jupyter"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip


def test_open_jupyter_without_jupyter_names_the_extra(swept: Path) -> None:
    path = "/usr/bin:/bin"
    if shutil.which("jupyter-lab", path=path) or shutil.which("jupyter-notebook", path=path):
        pytest.skip("Jupyter is installed system-wide")
    proc = _open_jupyter(swept, path)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "ductaflow[jupyter]" in proc.stderr
    assert not list(swept.glob("*_debug*"))  # said before anything is written


def test_open_jupyter_starts_it_on_the_notebook_in_the_run_directory(
    swept: Path, tmp_path: Path
) -> None:
    # a stand-in jupyter-lab on PATH that records how it was started
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "jupyter-lab"
    fake.write_text(f'#!/bin/sh\necho "$(pwd) $*" > {tmp_path / "started"}\n')
    fake.chmod(0o755)
    proc = _open_jupyter(swept, f"{bin_dir}:/usr/bin:/bin")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(swept / "work_debug.ipynb")
    assert (tmp_path / "started").read_text().split() == [str(swept), "work_debug.ipynb"]
