"""The same sweep on joblib's pools, on Dask (a real LocalCluster) and on SLURM (local mode).

Real kernels, real worker processes: a run that raises, one that times out, a Dask worker killed
mid-run, the process running a run killed, and Ctrl-C of a sweep on a cluster it does not own.
(Ctrl-C and SIGTERM of a ``dask-local`` sweep, and its resume: ``test_backends.py``.)
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    FLOWS,
    read_json,
    release,
    run_cli,
    started,
    wait_for,
    wait_no_kernels,
    write_spec,
)

from ductaflow.executor import SweepOptions, execute_sweep
from ductaflow.spec import RunOptions
from ductaflow.sweep import Sweep

pytestmark = pytest.mark.slow  # kernels and processes: not in `-m "not slow"`

pytest.importorskip("distributed")
if importlib.util.find_spec("dask_jobqueue") is None:  # importing it takes over Ctrl-C
    pytest.skip("dask-jobqueue is not installed", allow_module_level=True)

#: One run ok, one that raises, one over the cell timeout.
TABLE = ({"x": 1}, {"x": 2, "fail": True}, {"x": 3, "sleep": 30})
OPTIONS = RunOptions(timeout=8)  # a deadline for x=3 (sleeps 30); the others are instant
#: What differs from one execution of the same run to the next, wherever it runs.
VOLATILE = {
    "started",
    "finished",
    "ended",  # of an attempt, in attempt_log
    "job_id",
    "duration_s",
    "host",
    "pid",
    "python",
    "run_dir",
    "kernel_start_s",
}

BACKENDS: dict[str, dict[str, Any]] = {
    "loky": {"backend": "loky"},
    "threading": {"backend": "threading"},
    "dask-local": {"backend": "dask-local"},
    "slurm-local": {"backend": "slurm", "backend_options": {"slurm_local": True}},
    "joblib-dask": {},  # inside joblib.parallel_config(backend="dask"): see run_on
}


def run_on(name: str, root: Path) -> Any:
    sweep = Sweep(name="b", flows=(FLOWS / "work.py",), table=TABLE)
    if name != "joblib-dask":
        options = SweepOptions(root, 2, run=OPTIONS, progress=False, **BACKENDS[name])
        return execute_sweep(sweep, options)
    from distributed import Client, LocalCluster
    from joblib import parallel_config

    # one thread: joblib's own dask backend would run every task in this very process
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False) as cluster:
        with Client(cluster), parallel_config(backend="dask"):
            return execute_sweep(sweep, SweepOptions(root, 2, run=OPTIONS, progress=False))


def stable(data: Any) -> Any:
    """``data`` without times, hosts, pids and absolute paths."""
    if isinstance(data, dict):
        return {k: stable(v) for k, v in data.items() if k not in VOLATILE}
    if isinstance(data, list):
        return [stable(v) for v in data]
    return data


def notebook_content(path: Path) -> list[tuple[str, list[Any]]]:
    nb = json.loads(path.read_text(encoding="utf-8"))
    cells = []
    for cell in nb["cells"]:
        outputs = [
            (o["output_type"], o.get("text"), o.get("ename"), o.get("evalue"))
            for o in cell.get("outputs", [])
        ]
        cells.append((cell["source"], outputs))
    return cells


def snapshot(root: Path) -> dict[str, Any]:
    """Everything a sweep leaves that must not depend on where it ran."""
    with open(root / "index.csv", newline="") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: r["run"])
    index = [
        {k: v for k, v in row.items() if k not in VOLATILE and not k.endswith(".duration_s")}
        for row in rows
    ]
    runs = {}
    for run_dir in sorted((root / "b").iterdir()):
        runs[run_dir.name] = {
            "files": sorted(p.name for p in run_dir.iterdir()),
            "status": stable(read_json(run_dir / "status.json")),
            "notebooks": {p.name: notebook_content(p) for p in run_dir.glob("*.ipynb")},
        }
    return {"index": index, "runs": runs}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("loky") / "runs"
    report = run_on("loky", root)
    assert sorted(o.result.status for o in report.outcomes) == ["failed", "ok", "timeout"]
    return snapshot(root)


@pytest.mark.parametrize("name", [n for n in BACKENDS if n != "loky"])
def test_every_backend_gives_the_same_results(
    tmp_path: Path, reference: dict[str, Any], name: str
) -> None:
    root = tmp_path / "runs"
    report = run_on(name, root)
    assert "1 ok, 1 failed, 1 timeout, 0 died, 0 interrupted, 0 skipped" in report.summary()
    assert snapshot(root) == reference
    pids = {read_json(d / "status.json")["pid"] for d in (root / "b").iterdir()}
    if name == "threading":
        assert pids == {os.getpid()}, "warm runs on threads execute in the conductor"
    else:  # 3 runs on 2 workers, each a reused process: at most 2 pids, none the conductor
        assert os.getpid() not in pids and 1 <= len(pids) <= 2, pids

    if name == "slurm-local":
        script = (root / ".slurm" / "job.sh").read_text()
        assert "#SBATCH -J ductaflow" in script and "--nthreads 1" in script
        assert list((root / ".slurm").glob("ductaflow-*.err")), "no worker log in runs/.slurm"
    assert not wait_no_kernels(tmp_path)


def test_a_run_that_keeps_killing_its_worker_is_recorded_died(tmp_path: Path) -> None:
    import dask

    table = ({"x": 1, "kill": "worker-always"}, {"x": 2})
    sweep = Sweep(name="w", flows=(FLOWS / "killworker.py",), table=table)
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        report = execute_sweep(
            sweep, SweepOptions(tmp_path / "runs", 2, backend="dask-local", progress=False)
        )
    assert "1 ok, 0 failed, 0 timeout, 1 died, 0 interrupted" in report.summary()
    (killer,) = (tmp_path / "runs" / "w").glob("kill=worker*")
    status = read_json(killer / "status.json")
    assert status["status"] == "died"
    assert status["error"] == "DeadWorker: the workers running it died (KilledWorker)"
    assert not wait_no_kernels(tmp_path)


def test_dead_workers_on_dask_local(tmp_path: Path) -> None:
    table = [{"x": 1, "kill": "worker"}, {"x": 2, "kill": "process"}]
    write_spec(tmp_path, "killworker.py", name="k", table=table)
    proc = run_cli(
        "sweep", "spec.json", "--no-report", "--backend", "dask-local", "-j", "2", cwd=tmp_path
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "k: FAILED: 1 ok, 0 failed, 0 timeout, 1 died" in proc.stdout

    from ductaflow.index import load_index

    frame = load_index(tmp_path / "runs").set_index("param.x")
    assert frame["status"].to_dict() == {1: "ok", 2: "died"}
    died = "DeadWorker: the run process running it died, twice: it was killed by SIGKILL"
    assert frame.loc[2, "error"] == died
    # the run whose worker was killed ran again on a new worker and finished
    for name in ("kill=worker", "kill=process"):  # each went again once
        (run_dir,) = (tmp_path / "runs" / "k").glob(f"{name}*")
        assert len((run_dir / "executions.log").read_text().split()) == 2
    assert not wait_no_kernels(tmp_path)


def test_slurm_job_script_and_bad_input(tmp_path: Path) -> None:
    from ductaflow.backends.slurm import slurm_job_script

    script = slurm_job_script(
        partition="cpu", time_minutes=60, mem="8G", log_directory=tmp_path / "logs"
    )
    lines = script.splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    for directive in ("-J ductaflow", "-p cpu", "-t 01:00:00", "--mem=8G", "--cpus-per-task=1"):
        assert f"#SBATCH {directive}" in lines, script
    assert f"#SBATCH -o {tmp_path / 'logs'}/ductaflow-%J.out" in lines
    worker = lines[-1]
    assert worker.startswith(f"{sys.executable} -m distributed.cli.dask_worker tcp://SCHEDULER")
    assert "--nthreads 1" in worker and "--lifetime" not in worker  # it would cut a run
    # the job's end, for the worker to stop taking runs in time (backends/lifetime.py)
    assert "DUCTAFLOW_JOB_END=${DUCTAFLOW_JOB_END:-$(( $(date +%s) + 3600 ))}" in lines
    prologue = "\n".join(lines[lines.index("unset DUCTAFLOW_JOB_END") : -1])
    env = {k: v for k, v in os.environ.items() if k != "SLURM_JOB_ID"}
    shown = subprocess.run(
        ["bash", "-c", prologue + '\necho "$DUCTAFLOW_JOB_END"'],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    assert abs(int(shown.stdout) - (time.time() + 3600)) < 120, shown

    # dask-jobqueue 0.9.0 replaces the SIGINT handler on import; Ctrl-C must still interrupt
    probe = (
        "import signal; from ductaflow.backends.slurm import slurm_job_script; slurm_job_script();"
        "assert signal.getsignal(signal.SIGINT) is signal.default_int_handler"
    )
    assert subprocess.run([sys.executable, "-c", probe]).returncode == 0

    (tmp_path / "work.py").write_text((FLOWS / "work.py").read_text())
    (tmp_path / "spec.json").write_text(json.dumps({"name": "s", "flows": ["work.py"]}))
    proc = run_cli("sweep", "spec.json", "--backend", "dask", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "ductaflow: error: --backend dask needs --scheduler ADDRESS (or client= from Python)"
    )
    if shutil.which("sbatch") is None:  # no SLURM here: one line, before any job is queued
        proc = run_cli("sweep", "spec.json", "--backend", "slurm", cwd=tmp_path)
        assert proc.returncode == 2
        assert proc.stderr.strip().splitlines()[-1] == (
            "ductaflow: error: --backend slurm: sbatch not found; "
            "run the sweep on a SLURM login node"
        )


def test_ctrl_c_stops_runs_on_a_cluster_the_conductor_does_not_own(tmp_path: Path) -> None:
    """Closing no cluster: the runs must be stopped on the workers, which live on."""
    import _thread
    import threading

    from distributed import Client, LocalCluster

    hold = tmp_path / "hold"
    hold.mkdir()
    table = ({"x": 0, "hold": str(hold)}, {"x": 1, "hold": str(hold)}, {"x": 2})
    sweep = Sweep(name="e", flows=(FLOWS / "hold.py",), table=table)
    root = tmp_path / "runs"

    def interrupt_when_both_run() -> None:
        try:
            wait_for(lambda: started(hold) == {0, 1}, what="both held runs")
        except AssertionError:
            release(hold)  # let the sweep end; the assertions below fail
        else:
            _thread.interrupt_main()  # Ctrl-C, in this process

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False) as cluster:
        with Client(cluster) as client:
            threading.Thread(target=interrupt_when_both_run, daemon=True).start()
            report = execute_sweep(
                sweep, SweepOptions(root, backend="dask", client=client, progress=False)
            )
            assert report.interrupted
            assert "0 ok, 0 failed, 0 timeout, 0 died, 2 interrupted" in report.summary()
            errors = {read_json(p)["error"] for p in root.glob("e/*/status.json")}
            assert errors == {"Interrupted: the run was stopped by SIGINT"}  # Ctrl-C
            assert not list(root.glob("e/x=2*")), "a queued run started after Ctrl-C"
            assert not wait_no_kernels(tmp_path), "a kernel outlived Ctrl-C"
            assert len(client.scheduler_info()["workers"]) == 2

            release(hold)
            again = execute_sweep(
                sweep, SweepOptions(root, backend="dask", client=client, progress=False)
            )
            assert "3 ok, 0 failed, 0 timeout, 0 died, 0 interrupted, 0 skipped" in again.summary()
