"""Flows in every Python notebook format Jupytext reads, with real kernels; papermill's cell
conventions; sys.exit as papermill treats it; bad flow files refused before anything runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from helpers import read_json, run_cli

import ductaflow
from ductaflow.engine import execute_run
from ductaflow.errors import FlowError
from ductaflow.notebook import INJECTED_TAG, NOT_RUN_TAG, STOPPED_TAG
from ductaflow.spec import FlowRef, RunSpec

pytestmark = pytest.mark.slow  # kernels and processes: not in `-m "not slow"`

FORMATS = ["percent.py", "light.py", "markdown.md", "myst.md", "papermill.ipynb"]


@pytest.mark.parametrize("flow", FORMATS)
def test_each_format_runs_with_the_injected_value(flows: Path, tmp_path: Path, flow: str) -> None:
    result = ductaflow.run_flow(flows / flow, {"alpha": 0.9}, tmp_path / "r")
    assert result.ok, result.error
    assert (tmp_path / "r" / "alpha.txt").read_text() == "0.9"
    assert result.warnings == ()
    nb = nbformat.read(tmp_path / "r" / f"{Path(flow).stem}_executed.ipynb", as_version=4)
    assert nb.metadata["papermill"]["parameters"] == {"alpha": 0.9}
    assert [c for c in nb.cells if INJECTED_TAG in c.metadata.get("tags", [])]


def tags_of(nb: nbformat.NotebookNode) -> list[bool]:
    return [INJECTED_TAG in c.metadata.get("tags", []) for c in nb.cells]


def test_a_stale_papermill_notebook_is_cleaned(flows: Path, tmp_path: Path) -> None:
    """Its injected cell is replaced where it stands, its error markers dropped, its outputs
    cleared, its kernelspec kept; with an empty config the parameters cell's default wins."""
    for config, expected in (({"alpha": 0.9}, "0.9"), ({}, "0.1")):
        run_dir = tmp_path / str(expected)
        result = ductaflow.run_flow(flows / "papermill_stale.ipynb", config, run_dir)
        assert result.ok, result.error
        assert (run_dir / "alpha.txt").read_text() == expected
        nb = nbformat.read(run_dir / "papermill_stale_executed.ipynb", as_version=4)
        tags = [t for c in nb.cells for t in c.metadata.get("tags", [])]
        assert "papermill-error-cell-tag" not in tags
        assert tags.count(INJECTED_TAG) == 1
        sources = [c.source for c in nb.cells]
        injected = tags_of(nb).index(True)
        assert "alpha = 0.1" in sources[injected - 1]  # right after the parameters cell
        assert not any("alpha = 0.5" in s for s in sources)
        assert "OLD OUTPUT" not in json.dumps(nb)
        assert nb.metadata["papermill"]["parameters"] == config
        assert nb.metadata["kernelspec"]["name"] == "python3"


def test_a_spec_may_mix_formats_and_stale_detection_covers_them(
    flows: Path, tmp_path: Path
) -> None:
    for name in ("light.py", "markdown.md", "papermill.ipynb"):
        (tmp_path / name).write_bytes((flows / name).read_bytes())
    spec = {
        "name": "mixed",
        "flows": ["light.py", "markdown.md", "papermill.ipynb"],
        "grid": {"alpha": [0.2, 0.7]},
    }
    (tmp_path / "mixed.json").write_text(json.dumps(spec))
    proc = run_cli("sweep", "mixed.json", "-j", "2", "--no-progress", "--no-report", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for run in sorted((tmp_path / "runs" / "mixed").iterdir()):
        status = read_json(run / "status.json")
        assert [f["status"] for f in status["flows"]] == ["ok"] * 3
        assert {f["notebook"] for f in status["flows"]} == {
            "light_executed.ipynb", "markdown_executed.ipynb", "papermill_executed.ipynb",
        }  # fmt: skip
    # editing the .ipynb makes every run stale; nothing else changed
    nb = nbformat.read(tmp_path / "papermill.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("pass"))
    nbformat.write(nb, tmp_path / "papermill.ipynb")
    proc = run_cli("sweep", "mixed.json", "--dry-run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "stale" in proc.stdout and "2" in proc.stdout


def test_a_kernelspec_in_an_ipynb_is_respected_unless_kernel_says_otherwise(
    tmp_path: Path,
) -> None:
    spec_dir = tmp_path / "jupyter" / "kernels" / "other-python"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Other", "language": "python", "env": {"FROM_KERNELSPEC": "yes"},
    }))  # fmt: skip
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(
            "import os\nopen('env.txt', 'w').write(os.environ.get('FROM_KERNELSPEC', 'no'))"
        )],
        metadata={"kernelspec": {"name": "other-python", "display_name": "O",
                                 "language": "python"}},
    )  # fmt: skip
    nbformat.write(nb, tmp_path / "probe.ipynb")
    env = {**os.environ, "JUPYTER_PATH": str(tmp_path / "jupyter")}

    def run(*extra: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "ductaflow", "run", "probe.ipynb", "--run-dir", "k", *extra],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return (tmp_path / "k" / "env.txt").read_text()

    assert run() == "yes"
    assert run("--kernel", "python3") == "no"
    # not installed: exit 2, nothing created
    proc = run_cli("run", "probe.ipynb", "--run-dir", "m", cwd=tmp_path)
    assert proc.returncode == 2 and "'other-python' is not installed" in proc.stderr
    assert not (tmp_path / "m").exists()


# -- bad flow files: exit 2, no run directory, no kernel ----------------------------------------
JULIA = {
    "cells": [], "nbformat": 4, "nbformat_minor": 5,
    "metadata": {"kernelspec": {"name": "julia-1.9", "language": "julia", "display_name": "J"}},
}  # fmt: skip
BAD = {
    "bin.py": bytes(range(256)),
    "nul.py": b"# %%\nx = 1\x00\n",
    "syntax.py": b"# %%\nx = 1\n\n# %%\ny = (\n",
    "syntax.md": b"```python\ndef f(:\n```\n",
    "flow.txt": b"x = 1\n",
    "broken.ipynb": b'{"cells": [',
    "julia.ipynb": json.dumps(JULIA).encode(),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_flow_file_is_exit_2_before_anything_runs(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(BAD[name])
    with pytest.raises(FlowError, match=name.replace(".", r"\.")):
        ductaflow.run_flow(tmp_path / name, {}, tmp_path / "api")
    proc = run_cli("run", name, "--run-dir", "r", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""  # no notebook path printed
    assert name in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    (tmp_path / "s.json").write_text(json.dumps({"flows": [name], "grid": {"a": [1, 2]}}))
    proc = run_cli("sweep", "s.json", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "r").exists()
    assert not (tmp_path / "api").exists()


def test_magics_and_shell_lines_are_not_syntax_errors(tmp_path: Path) -> None:
    flow = tmp_path / "magics.py"
    flow.write_text(
        "# %%\n%matplotlib inline\n!echo hi\nfiles = !ls\nx = 1\nx?\n\n"
        "# %%\n%%bash\necho this is ( not python\n\n# %%\nprint(x)\n"
    )
    ref = FlowRef.from_path(flow)
    assert ref.facts is not None and "x" in ref.facts.names


# -- sys.exit: a clean stop, papermill's semantic ----------------------------------------------
def _exit_flow(path: Path, at: str, call: str) -> None:
    cells = ['open("c1", "w").close()', 'open("c2", "w").close()', 'open("c3", "w").close()']
    index = {"first": 0, "middle": 1, "last": 2}[at]
    cells[index] = f"import sys\n{cells[index]}\n{call}"
    path.write_text("".join(f"# %%\n{c}\n\n" for c in cells))


EXITS = [
    *((at, call) for call in ("sys.exit(0)", "sys.exit(1)") for at in ("first", "middle", "last")),
    ("middle", "sys.exit()"),
    ("middle", "raise SystemExit"),
]


@pytest.mark.parametrize(("at", "call"), EXITS)
def test_sys_exit(tmp_path: Path, at: str, call: str) -> None:
    flow, after = tmp_path / "stop.py", tmp_path / "after.py"
    _exit_flow(flow, at, call)
    after.write_text('# %%\nopen("after", "w").close()\n')
    spec = RunSpec(tmp_path / "r", {}, (FlowRef.from_path(flow), FlowRef.from_path(after)))
    result = execute_run(spec)
    status = read_json(tmp_path / "r" / "status.json")
    number = {"first": 1, "middle": 2, "last": 3}[at]
    ran = {f"c{i}" for i in range(1, number + 1)}
    created = {p.name for p in (tmp_path / "r").iterdir() if "." not in p.name}
    if call == "sys.exit(1)":
        assert result.status == status["status"] == "failed"
        assert status["error"] == "SystemExit: 1"
        assert status["flows"][0]["failed_cell"] == number
        assert created == ran  # the next flow did not run
        return
    assert result.ok and status["status"] == "ok", status
    assert status["flows"][0]["stopped_at_cell"] == number
    assert status["flows"][1]["status"] == "ok" and status["flows"][1]["stopped_at_cell"] is None
    assert created == ran | {"after"}
    nb = nbformat.read(tmp_path / "r" / "stop_executed.ipynb", as_version=4)
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    assert sum(STOPPED_TAG in t for t in tags) == 1
    assert sum(NOT_RUN_TAG in t for t in tags) == 3 - number
    outputs = [o for c in nb.cells for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error" or "exit" in str(o.get("text"))]


def test_script_mode_works_for_a_light_py_flow(tmp_path: Path) -> None:
    flow = tmp_path / "light.py"
    flow.write_text(
        '# + tags=["parameters"]\nalpha = 0.1\nimport ductaflow\n\n'
        "ductaflow.parameters(globals())\n# -\n\n"
        'open("alpha.txt", "w").write(repr(alpha))\n'
    )
    assert FlowRef.from_path(flow).facts.format == "py:light"  # type: ignore[union-attr]
    proc = subprocess.run(
        [sys.executable, str(flow), "--set", "alpha=0.7"], cwd=tmp_path,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "alpha.txt").read_text() == "0.7"
