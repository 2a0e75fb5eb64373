"""The ``optimize`` sweep: an Optuna study asks for each run and is told its result.

Real kernels, real conductors (``python -m ductaflow sweep``), real study files.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FLOWS, REPO, read_json, run_cli, wait_for, wait_no_kernels

import ductaflow
from ductaflow.errors import SweepSpecError
from ductaflow.report import report_data, run_table
from ductaflow.sweep import Sweep

SPACE = {"x": {"uniform": [-3, 5]}, "y": {"uniform": [-5, 3]}}


def write_spec(tmp_path: Path, name: str = "q", base: dict | None = None, **optimize) -> Path:
    block = {"result": "loss", "trials": 8, "seed": 2, "space": SPACE, **optimize}
    spec = {"name": name, "flows": [str(FLOWS / "quadratic.py")], "base": base or {},
            "optimize": block}  # fmt: skip
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def index_rows(root: Path, sweep: str) -> list[dict[str, str]]:
    with open(root / "index.csv", newline="", encoding="utf-8") as fh:
        return [r for r in csv.DictReader(fh) if r["sweep"] == sweep]


def max_in_flight(study) -> int:
    """The most trials running at once, from the study's own start and end times."""
    events = []
    for t in study.get_trials(deepcopy=False):
        events += [(t.datetime_start, 1), (t.datetime_complete, -1)]
    events.sort(key=lambda e: (e[0], e[1]))  # an end before a start at the same instant
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def test_tpe_finds_the_minimum_with_two_trials_in_flight(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, trials=40, sampler="tpe")
    proc = run_cli("sweep", spec, "-j", "2", "--no-progress", cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    root = tmp_path / "runs"
    study = ductaflow.load_study(root, "q")
    trials = study.get_trials()
    assert len(trials) == 40 and all(t.state.name == "COMPLETE" for t in trials)
    assert study.best_value <= 0.1, study.best_value
    assert max_in_flight(study) <= 2
    best = study.best_trial
    line = proc.stdout.strip().splitlines()[-1]
    assert "q: ok: 40 ok" in line and f"best trial {best.number}: loss = " in line, line
    rows = index_rows(root, "q")
    assert sorted(int(r["trial"]) for r in rows) == list(range(40))
    for row in rows:  # each trial is its own run: directory, params, result, value
        assert row["run"].startswith(f"trial={int(row['trial']):04d}-")
        assert float(row["trial_value"]) == pytest.approx(
            (float(row["param.x"]) - 2) ** 2 + (float(row["param.y"]) + 1) ** 2
        )
    # the report shows the history and marks the best run
    page = (root / "q" / "report.html").read_text(encoding="utf-8")
    assert '<section id="history">' in page and page.count("★ best") == 1
    best_run = best.user_attrs["ductaflow_run"]
    assert f'{best_run}</a> <span class="best"' in page
    assert f"best {best_run}</figcaption>" in page
    # a large report's paged table marks the same run, by row (its data, drawn by table.js)
    frame = ductaflow.load_index(root)
    table = run_table(frame, report_data(frame))
    (row,) = table.columns["best"]
    assert table.columns["run"][row] == best_run
    # a second sweep has nothing left to run; status names the best trial
    again = run_cli("sweep", spec, "-j", "2", "--no-progress", "--no-report", cwd=tmp_path)
    assert again.returncode == 0 and "0 ok" in again.stdout and "40 skipped" in again.stdout
    assert len(ductaflow.load_study(root, "q").get_trials()) == 40
    status = run_cli("status", "runs", cwd=tmp_path)
    assert f"q: 40 trials (40 complete); best trial {best.number}: loss" in status.stdout
    dry = run_cli("sweep", spec, "--dry-run", cwd=tmp_path)
    assert "q: optimize sweep of 40 trials (tpe, minimize 'loss' over x, y); 40 finished" in (
        dry.stdout
    )


def test_ctrl_c_then_a_second_sweep_ends_at_exactly_trials(tmp_path: Path) -> None:
    hold = tmp_path / "hold"
    spec = write_spec(tmp_path, base={"hold": str(hold)}, trials=8, sampler="random")
    root = tmp_path / "runs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ductaflow", "sweep", str(spec), "-j", "2", "--no-progress",
         "--no-report"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )  # fmt: skip

    def statuses() -> list[str]:
        found = []
        for path in root.glob("q/*/status.json"):
            try:
                found.append(read_json(path)["status"])
            except (OSError, ValueError, KeyError):
                pass
        return found

    wait_for(lambda: statuses().count("ok") >= 2, seconds=120, what="two trials done")
    hold.touch()  # the next trials wait in their flow
    wait_for(lambda: statuses().count("running") == 2, seconds=120, what="two trials held")
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, out + err
    assert "q: interrupted:" in out and "2 interrupted" in out, out
    study = ductaflow.load_study(root, "q")
    states = [t.state.name for t in study.get_trials()]
    assert "RUNNING" not in states and states.count("FAIL") == 2, states
    first = len(states)
    assert not wait_no_kernels(tmp_path, seconds=15), "a kernel outlived Ctrl-C"

    hold.unlink()
    again = run_cli("sweep", spec, "-j", "2", "--no-progress", "--no-report", cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{8 - first} ok" in again.stdout, again.stdout
    trials = ductaflow.load_study(root, "q").get_trials()
    assert len(trials) == 8 and sorted(t.number for t in trials) == list(range(8))
    assert [t.state.name for t in trials].count("COMPLETE") == 6
    rows = index_rows(root, "q")
    assert len(rows) == 8 and sorted(int(r["trial"]) for r in rows) == list(range(8))
    assert sorted(r["status"] for r in rows) == ["interrupted"] * 2 + ["ok"] * 6


def test_a_killed_conductor_leaves_no_trial_running(tmp_path: Path) -> None:
    hold = tmp_path / "hold"
    hold.touch()
    spec = write_spec(tmp_path, base={"hold": str(hold)}, trials=3, sampler="random")
    root = tmp_path / "runs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ductaflow", "sweep", str(spec), "-j", "2", "--no-progress",
         "--no-report"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )  # fmt: skip

    def running() -> int:
        return sum(1 for p in root.glob("q/*/status.json") if '"running"' in p.read_text())

    wait_for(lambda: running() == 2, seconds=120, what="two trials held")
    proc.kill()  # SIGKILL: the study keeps two RUNNING trials
    proc.communicate(timeout=30)
    hold.unlink()  # the orphaned kernels end their flows
    wait_no_kernels(tmp_path, seconds=30)
    study = ductaflow.load_study(root, "q")
    assert [t.state.name for t in study.get_trials()] == ["RUNNING", "RUNNING"]

    again = run_cli("sweep", spec, "-j", "2", "--no-progress", "--no-report", cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    trials = ductaflow.load_study(root, "q").get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "FAIL", "COMPLETE"]
    rows = {int(r["trial"]): r for r in index_rows(root, "q")}
    assert sorted(rows) == [0, 1, 2]
    assert [rows[n]["status"] for n in (0, 1)] == ["interrupted", "interrupted"]
    assert rows[0]["trial_state"] == "fail" and "interrupted" in rows[0]["trial_error"]


FAIL_FLOW = """\
# %% tags=["parameters"]
x = 0.0
mode = "ok"
import ductaflow

ductaflow.parameters(globals())

# %%
import math

if mode == "raise":
    raise ValueError("asked to fail")
if mode != "none":
    ductaflow.record("loss", math.nan if mode == "nan" else x * x)
"""


def test_failing_trials_are_recorded_with_their_errors(tmp_path: Path) -> None:
    (tmp_path / "modes.py").write_text(FAIL_FLOW)
    spec = {"name": "f", "flows": ["modes.py"], "optimize": {
        "result": "loss", "trials": 10, "sampler": "random", "seed": 5,
        "space": {"x": {"uniform": [0, 1]}, "mode": {"choice": ["ok", "raise", "nan", "none"]}},
    }}  # fmt: skip
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    proc = run_cli("sweep", "spec.json", "-j", "2", "--no-progress", "--no-report", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # a run failed
    root = tmp_path / "runs"
    study = ductaflow.load_study(root, "f")
    by_number = {t.number: t for t in study.get_trials()}
    expected = {
        "ok": ("COMPLETE", "ok", ""),
        "raise": ("FAIL", "failed", "the run ended failed"),
        "nan": ("FAIL", "ok", "the run recorded 'loss' = nan"),
        "none": ("FAIL", "ok", "the run recorded no 'loss'"),
    }
    rows = index_rows(root, "f")
    assert len(rows) == 10 and len(by_number) == 10
    seen = set()
    for row in rows:
        mode = row["param.mode"]
        seen.add(mode)
        trial = by_number[int(row["trial"])]
        state, status, why = expected[mode]
        assert (trial.state.name, row["status"]) == (state, status), row
        assert why in row["trial_error"] and why in trial.user_attrs.get("ductaflow_error", "")
        if mode == "raise":
            assert "ValueError: asked to fail" in row["error"]
    assert seen == set(expected)  # the seed reaches every mode


@pytest.mark.parametrize(
    ("backend", "storage"),
    [("dask-local", "journal"), ("loky", "sqlite"), ("threading", "url"), ("slurm", "journal")],
)
def test_a_study_keeps_j_trials_in_flight_on(
    backend: str, storage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend in ("dask-local", "slurm"):
        pytest.importorskip("distributed")
    if backend == "slurm":
        from test_slurm import STATE_DIR, jobs_of, slurm_down

        if "SLURM_CONF" not in os.environ and (STATE_DIR / "slurm.conf").exists():
            monkeypatch.setenv("SLURM_CONF", str(STATE_DIR / "slurm.conf"))
        if why := slurm_down():
            pytest.skip(why)
    url = f"sqlite:///{tmp_path / 'server.db'}"  # what a database server's URL stands for
    spec = write_spec(
        tmp_path, trials=5, sampler="tpe", storage=url if storage == "url" else storage
    )
    cmd = [sys.executable, "-m", "ductaflow", "sweep", str(spec), "-j", "2", "--backend",
           backend, "--no-progress", "--no-report"]  # fmt: skip
    if backend == "slurm":
        cmd += ["--slurm-time", "10"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    root = tmp_path / "runs"
    kept = {"journal": ["study.log"], "sqlite": ["study.db"], "url": []}
    assert [p.name for p in (root / "q").glob("study.*")] == kept[storage]
    study = ductaflow.load_study(root, "q", url if storage == "url" else None)
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE"] * 5
    assert max_in_flight(study) <= 2  # asked when a slot frees, told before the next ask
    rows = index_rows(root, "q")
    assert sorted(int(r["trial"]) for r in rows) == list(range(5))
    assert all(r["result.loss"] == r["trial_value"] for r in rows)
    if backend == "slurm":
        wait_for(lambda: not jobs_of(tmp_path), seconds=60, what="the sweep's jobs to end")


def test_trial_in_run_name(tmp_path: Path) -> None:
    optimize = {"result": "loss", "trials": 2, "space": SPACE}
    sweep = Sweep.from_dict({"name": "n", "flows": [str(FLOWS / "quadratic.py")],
                             "run_name": "t{trial}-x{x}-{hash}", "optimize": optimize})  # fmt: skip
    spec = sweep.trial_spec(7, {"x": 1, "y": 2}, sweep.flow_refs(), tmp_path)
    assert spec.name.startswith("t0007-x1-") and spec.labels == {"trial": 7}
    assert spec.config == {"x": 1, "y": 2}


BAD = [
    ({"trials": 0}, "'optimize'.trials: give the number of trials"),
    ({"sampler": "annealing"}, "'optimize'.sampler: unknown sampler 'annealing'"),
    ({"direction": "up"}, "'optimize'.direction: 'up'; use minimize or maximize"),
    ({"result": "my loss"}, "'optimize'.result: give the name the flow records"),
    ({"result": 3}, "'optimize'.result: give the name"),
    ({"space": {"x": {"uniform": [5, -3]}}}, "'x': the bounds [5, -3] must be increasing"),
    ({"space": {"x": {"uniform": [1, 1]}}}, "'x': the bounds [1, 1] must be increasing"),
    ({"space": {"x": {"loguniform": [0, 1]}}}, "'x': \"loguniform\" bounds must be > 0"),
    ({"space": {"x": {"int": [0.5, 3]}}}, "'x': \"int\" bounds must be whole numbers"),
    ({"space": {"x": {"choice": []}}}, "'x': \"choice\" needs a non-empty list"),
    ({"space": {}}, "'optimize'.space: give a non-empty object"),
    ({"tirals": 3}, "'optimize': unknown key 'tirals'"),
]


@pytest.mark.parametrize(("change", "message"), BAD)
def test_bad_optimize_blocks_name_the_key(change: dict, message: str) -> None:
    block = {"result": "loss", "trials": 4, "space": SPACE, **change}
    spec = {"name": "b", "flows": [str(FLOWS / "quadratic.py")], "optimize": block}
    with pytest.raises(SweepSpecError, match=None) as info:
        Sweep.from_dict(spec)
    assert message in str(info.value), str(info.value)


@pytest.mark.parametrize(
    "block",
    [{"grid": {"z": [1, 2]}}, {"zip": {"z": [1, 2]}}, {"table": [{"z": 1}]},
     {"sample": {"n": 4, "space": {"z": {"uniform": [0, 1]}}}}],
)  # fmt: skip
def test_optimize_goes_with_no_other_block(block: dict, tmp_path: Path) -> None:
    spec = {"name": "b", "flows": [str(FLOWS / "quadratic.py")],
            "optimize": {"result": "loss", "trials": 4, "space": SPACE}, **block}  # fmt: skip
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    proc = run_cli("sweep", "spec.json", cwd=tmp_path)
    (name,) = block
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert f"'optimize': cannot be combined with {name!r}" in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_a_bad_input_is_one_line_exit_2_before_any_run(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, space={"x": {"loguniform": [-1, 1]}})
    proc = run_cli("sweep", spec, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "'optimize'.space: 'x'" in proc.stderr
    assert not (tmp_path / "runs").exists()
    spec = write_spec(tmp_path)
    for option in ("--force", "--only=failed"):
        proc = run_cli("sweep", spec, option, cwd=tmp_path)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert "--force and --only do not apply to an optimize sweep" in proc.stderr
    bad = json.loads(spec.read_text()) | {"run_name": "x{x}-{hash}"}
    spec.write_text(json.dumps(bad))
    proc = run_cli("sweep", spec, cwd=tmp_path)
    assert proc.returncode == 2 and "'run_name': an optimize sweep's run names need {trial}" in (
        proc.stderr
    )
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["cmaes", "nsga2", "qmc"])
def test_every_installed_sampler_runs_a_whole_study(sampler: str, tmp_path: Path) -> None:
    # 10 trials: past CMA-ES's one random start-up trial, so its own package (cmaes) is used
    spec = write_spec(tmp_path, trials=10, sampler=sampler)
    proc = run_cli("sweep", spec, "-j", "2", "--no-progress", "--no-report", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "q: ok: 10 ok" in proc.stdout, proc.stdout
    study = ductaflow.load_study(tmp_path / "runs", "q")
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE"] * 10
    assert len({(t.params["x"], t.params["y"]) for t in study.get_trials()}) == 10


@pytest.mark.skipif(
    all(importlib.util.find_spec(m) for m in ("torch", "scipy")), reason="torch is installed"
)
def test_a_sampler_whose_package_is_missing_is_exit_2_before_any_run(tmp_path: Path) -> None:
    # GPSampler imports torch only after its 10 random start-up trials: without this check a
    # 13-trial sweep ran 11, called the import error a dead worker, and ended "ok" (exit 0)
    spec = write_spec(tmp_path, trials=13, sampler="gp")
    proc = run_cli("sweep", spec, "-j", "2", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "optimize.sampler: 'gp' needs torch" in proc.stderr and "pip install torch" in (
        proc.stderr
    )
    assert not (tmp_path / "runs").exists()  # no run directory, no study file


@pytest.mark.slow
def test_a_study_that_fails_mid_sweep_stops_it_with_exit_1(tmp_path: Path) -> None:
    # a real fault: a run writes a line that is not JSON into the study's journal; the next
    # ask or tell fails: no more trials are asked, the runs in flight finish and are recorded,
    # the sweep ends "stopped", exit 1, one error line naming the study -- never "ok"
    journal = tmp_path / "runs" / "d" / "study.log"
    spec = {"name": "d", "flows": [str(FLOWS / "quadratic_damages_study.py")],
            "base": {"journal": str(journal), "damage_above": 1.0},
            "optimize": {"result": "loss", "trials": 30, "sampler": "random", "seed": 3,
                         "storage": "journal", "space": SPACE}}  # fmt: skip
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    proc = run_cli("sweep", "spec.json", "-j", "2", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "d: stopped: " in proc.stdout, proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ductaflow: error:")]
    assert len(errors) == 1 and "d: the study could not " in errors[0], proc.stderr
    assert "JSONDecodeError" in errors[0] and "Traceback" not in proc.stderr
    rows = index_rows(tmp_path / "runs", "d")
    dirs = list((tmp_path / "runs" / "d").glob("trial=*"))
    assert 0 < len(rows) == len(dirs) < 30  # every run recorded, and the sweep did stop
    assert all(r["status"] == "ok" for r in rows)


def test_without_optuna_it_says_which_extra(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    code = (
        "import sys; sys.modules['optuna'] = None\n"  # import optuna then raises ImportError
        "from ductaflow.cli import main; raise SystemExit(main(sys.argv[1:]))"
    )
    proc = subprocess.run([sys.executable, "-c", code, "sweep", str(spec)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env={**os.environ,
                          "PYTHONPATH": str(REPO)})  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and 'pip install "ductaflow[optimize]"' in proc.stderr
    assert not list((tmp_path / "runs").glob("q/trial=*"))


def test_trial_history_in_the_report_data() -> None:
    import pandas as pd

    from ductaflow.report.history import svg_history, trial_histories

    frame = pd.DataFrame({
        "sweep": ["m"] * 4 + ["plain"], "run": ["a", "b", "c", "d", "p"],
        "trial": [2, 0, 1, 3, None],
        "trial_state": ["complete", "complete", "fail", "complete", None],
        "trial_value": [1.0, 3.0, None, 2.0, None], "trial_direction": ["minimize"] * 4 + [None],
    })  # fmt: skip
    (history,) = trial_histories(frame)
    assert history.trials == ((0, 3.0, "b"), (1, None, "c"), (2, 1.0, "a"), (3, 2.0, "d"))
    assert history.best == (3.0, 3.0, 1.0, 1.0) and history.best_run == "a"
    svg = svg_history(history)
    assert svg.count("<circle") == 3 and svg.count("st-failed") == 1 and svg.count(" best") == 1
    maximize = frame.assign(trial_direction="maximize")
    assert trial_histories(maximize)[0].best_run == "b"


def test_a_sample_sweep_index_has_its_point_numbers(tmp_path: Path) -> None:
    spec = {"name": "s", "flows": [str(FLOWS / "quadratic.py")],
            "sample": {"n": 3, "method": "random", "space": SPACE}}  # fmt: skip
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    proc = run_cli("sweep", "spec.json", "-j", "2", "--no-progress", "--no-report", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = index_rows(tmp_path / "runs", "s")
    assert sorted(int(r["sample"]) for r in rows) == [0, 1, 2]
    assert all(r["run"].startswith(f"sample={int(r['sample']):04d}") for r in rows)
    rebuilt = run_cli("index", "runs", cwd=tmp_path)  # from the run directories alone
    assert rebuilt.returncode == 0
    assert sorted(int(r["sample"]) for r in index_rows(tmp_path / "runs", "s")) == [0, 1, 2]


KILL_FLOW = """\
# %% tags=["parameters"]
x = 0.0
kill = False
import ductaflow

ductaflow.parameters(globals())

# %%
import os
import signal
import time

if kill:
    os.kill(os.getppid(), signal.SIGKILL)  # the kernel's parent: the worker running this run
    time.sleep(30)
ductaflow.record("loss", x)
"""


def test_a_trial_that_kills_its_worker_is_a_failed_trial(tmp_path: Path) -> None:
    (tmp_path / "kill.py").write_text(KILL_FLOW)
    spec = {"name": "k", "flows": ["kill.py"], "optimize": {
        "result": "loss", "trials": 5, "sampler": "random", "seed": 1,
        "space": {"x": {"uniform": [0, 1]}, "kill": {"choice": [False, True]}},
    }}  # fmt: skip
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    proc = run_cli("sweep", "spec.json", "-j", "2", "--backend", "loky", "--no-warm",
                   "--no-progress", "--no-report", cwd=tmp_path, timeout=300)  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    study = ductaflow.load_study(tmp_path / "runs", "k")
    trials = {t.number: t for t in study.get_trials()}
    assert len(trials) == 5 and all(t.state.is_finished() for t in trials.values())
    rows = index_rows(tmp_path / "runs", "k")
    assert sorted(int(r["trial"]) for r in rows) == list(range(5))
    for row in rows:
        killed = row["param.kill"] == "True"
        assert row["status"] == ("died" if killed else "ok"), row
        assert trials[int(row["trial"])].state.name == ("FAIL" if killed else "COMPLETE")
    assert {r["param.kill"] for r in rows} == {"True", "False"}  # the seed draws both


def test_the_example_sweeps_plan_as_the_readme_says() -> None:
    sample = run_cli("sweep", "sweeps/sample.json", "--dry-run", cwd=REPO)
    assert sample.returncode == 0 and "scan: 16 runs" in sample.stdout, sample.stderr
    optimize = run_cli("sweep", "sweeps/optimize.json", "--dry-run", "--runs-root",
                       "/nonexistent/runs", cwd=REPO)  # fmt: skip
    assert optimize.returncode == 0, optimize.stderr
    assert optimize.stdout.startswith(
        "tune: optimize sweep of 24 trials (tpe, minimize 'rmse' over alpha, model.depth)"
    )
