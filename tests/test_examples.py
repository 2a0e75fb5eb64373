"""The repository's own examples work as the README says: the demo sweep and conductor.py."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, RunsRoot, run_cli

from ductaflow.index import load_index

pytestmark = pytest.mark.slow  # kernels and processes: not in `-m "not slow"`


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    for name in ("flow", "sweeps"):
        shutil.copytree(REPO / name, tmp_path / name)
    shutil.copy(REPO / "conductor.py", tmp_path / "conductor.py")
    return tmp_path


def test_demo_sweep_and_csv_sweep(repo_copy: Path) -> None:
    proc = run_cli("sweep", "sweeps/demo.json", "-j", "2", cwd=repo_copy)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report, summary = proc.stdout.strip().splitlines()
    assert summary.startswith("demo: ok: 7 ok, 0 failed")
    assert report.startswith("report -> ") and report.endswith("runs/demo/report.html")
    # the sweep itself wrote the index (load_index would rebuild a missing one)
    rows = RunsRoot(repo_copy / "runs", "demo").rows()
    assert len(rows) == 7 and {r["status"] for r in rows} == {"ok"}
    assert {r["run_dir"] for r in rows} == {
        str(d) for d in RunsRoot(repo_copy / "runs", "demo").dirs().values()
    }
    frame = load_index(repo_copy / "runs")
    assert len(frame) == 7 and set(frame["status"]) == {"ok"}
    assert frame["result.rmse"].between(0, 2).all()
    assert frame["result.max_abs_residual"].gt(0).all()  # the fourth flow, a Markdown notebook
    for run_dir in frame["run_dir"]:
        assert (Path(run_dir) / "summary.md").exists()  # the third flow ran in the same dir

    proc = run_cli(
        "sweep", "sweeps/variants.csv", "--flow", "flow/02_analysis.py",
        "--base", "sweeps/base.json", "-j", "2", cwd=repo_copy,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = RunsRoot(repo_copy / "runs").rows()
    assert sorted(r["run"] for r in rows if r["sweep"] == "variants") == [
        "noisy",
        "smooth",
        "wiggly",
    ]
    variants = load_index(repo_copy / "runs").query("sweep == 'variants'")
    assert sorted(variants["run"]) == ["noisy", "smooth", "wiggly"]


def test_conductor_chains_two_sweeps(repo_copy: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "conductor.py"], cwd=repo_copy, capture_output=True, text=True,
        timeout=280,  # under pytest's own 300 s, so that a slow run fails with its output
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    written = [r["sweep"] for r in RunsRoot(repo_copy / "runs").rows()]  # as the sweeps wrote it
    assert sorted(written) == ["confirm"] * 6 + ["explore"] * 6
    frame = load_index(repo_copy / "runs")
    assert frame.groupby("sweep").size().to_dict() == {"confirm": 6, "explore": 6}
    explore = frame.query("sweep == 'explore'")
    best = explore.nsmallest(3, "result.rmse")[["param.alpha", "param.model.depth"]]
    confirm = frame.query("sweep == 'confirm'")
    chosen = set(map(tuple, confirm[["param.alpha", "param.model.depth"]].to_numpy()))
    assert chosen == set(map(tuple, best.to_numpy()))
    assert sorted(confirm["param.seed"].unique()) == [11, 12]
