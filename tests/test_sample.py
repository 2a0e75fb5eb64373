"""The ``sample`` block: seeded points of a space, stable run directories, one-line bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import FLOWS, REPO, run_cli

from ductaflow.errors import SweepSpecError
from ductaflow.sweep import Sweep

SPACE = {
    "alpha": {"uniform": [0, 1]},
    "lr": {"loguniform": [1e-4, 0.1]},
    "depth": {"int": [1, 8]},
    "model.kind": {"choice": ["a", "b"]},
}


def sweep(n: int, method: str = "sobol", **extra) -> Sweep:
    spec = {"name": "s", "flows": [str(FLOWS / "work.py")], "base": {"model": {"kind": "a"}}}
    return Sweep.from_dict({**spec, "sample": {"n": n, "method": method, "seed": 1,
                                               "space": SPACE}, **extra})  # fmt: skip


@pytest.mark.parametrize("method", ["random", "sobol", "halton", "lhs"])
def test_points_have_the_bounds_and_types_asked_for(method: str, tmp_path: Path) -> None:
    specs = sweep(16, method).expand(tmp_path)
    assert len(specs) == 16
    for spec in specs:
        cfg = spec.config
        assert type(cfg["alpha"]) is float and 0 <= cfg["alpha"] < 1
        assert type(cfg["lr"]) is float and 1e-4 <= cfg["lr"] <= 0.1
        assert type(cfg["depth"]) is int and 1 <= cfg["depth"] <= 8
        assert cfg["model"]["kind"] in ("a", "b")
    assert {s.config["depth"] for s in specs} >= {1, 8} or method == "random"
    assert [s.name[:11] for s in specs] == [f"sample={i:04d}" for i in range(16)]
    # the same spec, the same points and run directories
    assert [s.run_dir for s in sweep(16, method).expand(tmp_path)] == [s.run_dir for s in specs]


@pytest.mark.parametrize("method", ["random", "sobol", "halton"])
def test_raising_n_keeps_the_first_points(method: str, tmp_path: Path) -> None:
    first = sweep(16, method).expand(tmp_path)
    more = sweep(32, method).expand(tmp_path)
    assert [s.run_dir for s in more[:16]] == [s.run_dir for s in first]
    assert len({s.run_dir for s in more}) == 32


def test_samples_multiply_the_grid(tmp_path: Path) -> None:
    specs = sweep(4, grid={"x": [1, 2, 3]}).expand(tmp_path)
    assert len(specs) == 12
    assert {s.config["x"] for s in specs} == {1, 2, 3}
    assert specs[0].name.startswith("sample=0000_x=1-")


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"n": 0, "space": SPACE}, "'sample'.n: give the number of points"),
        ({"n": 4, "method": "grid", "space": SPACE}, "unknown method 'grid'"),
        (
            {"n": 4, "space": {"a": {"uniform": [1, 1]}}},
            "'a': the bounds [1, 1] must be increasing",
        ),
        ({"n": 4, "space": {"a": {"uniform": [2, 1]}}}, "must be increasing"),
        ({"n": 4, "space": {"a": {"loguniform": [0, 1]}}}, '"loguniform" bounds must be > 0'),
        ({"n": 4, "space": {"a": {"int": [1, 2.5]}}}, '"int" bounds must be whole numbers'),
        ({"n": 4, "space": {"a": {"choice": []}}}, '"choice" needs a non-empty list'),
        ({"n": 4, "space": {"a": {"normal": [0, 1]}}}, "unknown kind 'normal'"),
        ({"n": 4, "space": {}}, "give a non-empty object"),
        ({"n": 4, "space": SPACE, "steps": 3}, "unknown key 'steps'"),
    ],
)
def test_bad_sample_blocks_name_the_key(block: dict, message: str) -> None:
    spec = {"name": "s", "flows": [str(FLOWS / "work.py")], "sample": block}
    with pytest.raises(SweepSpecError) as info:
        Sweep.from_dict(spec)
    assert message in str(info.value)


def test_a_key_sampled_and_in_the_grid_is_refused() -> None:
    with pytest.raises(SweepSpecError, match="varied in both grid and sample"):
        sweep(4, grid={"alpha": [0.5]})


@pytest.mark.slow
def test_a_sampled_sweep_runs_and_resumes(tmp_path: Path) -> None:
    # the issue's own case: 16 Sobol points, swept again (all skipped), then n = 32: 16 new
    spec = {
        "name": "sob",
        "flows": [str(FLOWS / "work.py")],
        "sample": {"n": 16, "method": "sobol", "seed": 3, "space": {"x": {"int": [0, 100]}}},
    }
    path = tmp_path / "sob.json"
    path.write_text(json.dumps(spec))
    first = run_cli("sweep", path, "-j", "2", "--no-report", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "16 ok" in first.stdout
    again = run_cli("sweep", path, "-j", "2", "--no-report", cwd=tmp_path)
    assert again.returncode == 0 and "0 ok" in again.stdout and "16 skipped" in again.stdout
    spec["sample"]["n"] = 32
    path.write_text(json.dumps(spec))
    second = run_cli("sweep", path, "-j", "2", "--no-report", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "16 ok" in second.stdout and "16 skipped" in second.stdout
    assert "lays out" not in second.stderr  # sobol keeps its points: nothing to say
    run_dirs = [p.parent for p in (tmp_path / "runs" / "sob").glob("*/status.json")]
    assert len(run_dirs) == 32
    for run_dir in run_dirs:  # each point ran once, as the int it was asked as
        config = json.loads((run_dir / "CONFIG.json").read_text())
        results = json.loads((run_dir / "results.json").read_text())
        assert type(config["x"]) is int and 0 <= config["x"] <= 100
        assert results == {"double": 2 * config["x"]}
        assert (run_dir / "executions.log").read_text().count("\n") == 1


@pytest.mark.slow
def test_lhs_says_that_it_lays_out_its_points_anew(tmp_path: Path) -> None:
    spec = {
        "name": "l",
        "flows": [str(FLOWS / "work.py")],
        "sample": {"n": 3, "method": "lhs", "seed": 1, "space": {"x": {"int": [0, 100]}}},
    }
    path = tmp_path / "l.json"
    path.write_text(json.dumps(spec))
    first = run_cli("sweep", path, "-j", "2", "--no-report", cwd=tmp_path)
    assert first.returncode == 0 and "lays out" not in first.stderr, first.stderr
    spec["sample"]["n"] = 4
    path.write_text(json.dumps(spec))
    dry = run_cli("sweep", path, "--dry-run", cwd=tmp_path)
    second = run_cli("sweep", path, "-j", "2", "--no-report", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    for proc in (dry, second):
        assert "l: 'lhs' lays out all 4 points anew when n changes: " in proc.stderr, proc.stderr
    moved = len({*first_names(tmp_path, 3)} - {*first_names(tmp_path, 4)})
    assert f"{moved} run(s) in " in second.stderr and moved > 0


def first_names(tmp_path: Path, n: int) -> list[str]:
    block = {"n": n, "method": "lhs", "seed": 1, "space": {"x": {"int": [0, 100]}}}
    sweep = Sweep.from_dict({"name": "l", "flows": [str(FLOWS / "work.py")], "sample": block})
    return [s.run_dir.name for s in sweep.expand(tmp_path / "runs")]


def test_the_cli_says_a_bad_block_in_one_line(tmp_path: Path) -> None:
    spec = {"name": "b", "flows": [str(FLOWS / "work.py")],
            "sample": {"n": 2, "space": {"x": {"loguniform": [-1, 1]}}}}  # fmt: skip
    (tmp_path / "b.json").write_text(json.dumps(spec))
    proc = run_cli("sweep", tmp_path / "b.json", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "'sample'.space: 'x'" in proc.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("method", ["sobol", "halton", "lhs"])
def test_without_scipy_it_says_which_extra(method: str, tmp_path: Path) -> None:
    spec = {"name": "s", "flows": [str(FLOWS / "work.py")],
            "sample": {"n": 4, "method": method, "space": {"x": {"int": [0, 9]}}}}  # fmt: skip
    (tmp_path / "s.json").write_text(json.dumps(spec))
    code = (
        "import sys; sys.modules['scipy'] = None\n"  # import scipy then raises ImportError
        "from ductaflow.cli import main; raise SystemExit(main(sys.argv[1:]))"
    )
    proc = subprocess.run([sys.executable, "-c", code, "sweep", "s.json"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert f'sample method {method!r} needs scipy: pip install "ductaflow[sample]"' in (proc.stderr)
    assert not (tmp_path / "runs").exists()
