"""`ductaflow sweep --backend slurm` on a real Slurm: the single node of tests/slurm/start.sh.

Each test drives the CLI as a user would, from a fresh directory (``tmp_path``, which slurmd sees:
it is the same machine), and cancels whatever jobs it left in the queue. Skipped, with the reason,
only when Slurm is not up (``sinfo`` fails); ``.ci/run`` starts it.
"""

from __future__ import annotations

import csv
import functools
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import read_json, release, run_cli, started, wait_for, wait_no_kernels, write_spec

pytestmark = pytest.mark.slurm

START = Path(__file__).parent / "slurm" / "start.sh"
#: Where tests/slurm/start.sh keeps its slurm.conf unless told otherwise.
STATE_DIR = Path(os.environ.get("DUCTAFLOW_SLURM_DIR", "/tmp/ductaflow-slurm"))
SWEEP = [sys.executable, "-m", "ductaflow", "sweep", "spec.json", "--backend", "slurm"]


@functools.cache
def slurm_down() -> str | None:
    """Why Slurm cannot take jobs here, or None when ``sinfo`` shows a usable node (asked once)."""
    try:
        proc = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"Slurm is not up (sinfo: {exc}); start it with {START}"
    states = proc.stdout.split()
    if proc.returncode != 0 or not any(s.rstrip("*~#") in USABLE for s in states):
        why = proc.stderr.strip() or f"node state {states}"
        return f"Slurm is not up (sinfo: {why}); start it with {START}"
    return None


@pytest.fixture(scope="module", autouse=True)
def slurm() -> Iterator[None]:
    """Point Slurm's commands at start.sh's cluster (unless SLURM_CONF says); skip if it is down."""
    with pytest.MonkeyPatch.context() as mp:
        if "SLURM_CONF" not in os.environ and (STATE_DIR / "slurm.conf").exists():
            mp.setenv("SLURM_CONF", str(STATE_DIR / "slurm.conf"))
        if why := slurm_down():
            pytest.skip(why)
        yield


USABLE = {"idle", "mixed", "allocated", "completing"}


def jobs_of(base: Path, *, every_state: bool = False) -> list[str]:
    """Ids of the Slurm jobs submitted from ``base`` (their working directory is under it)."""
    cmd = ["squeue", "-h", "-o", "%A %Z"] + (["-t", "all"] if every_state else [])
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=True).stdout
    base = base.resolve()
    return [
        job
        for job, _, workdir in (line.partition(" ") for line in out.splitlines())
        if Path(workdir) == base or base in Path(workdir).parents
    ]


@pytest.fixture(autouse=True)
def cancel_jobs(tmp_path: Path) -> Iterator[None]:
    """Whatever happens in the test, none of its jobs stays in the queue."""
    yield
    if left := jobs_of(tmp_path):
        subprocess.run(["scancel", *left], timeout=20, check=False)
        wait_for(lambda: not jobs_of(tmp_path), seconds=120, what=f"jobs {left} to go")


def index_rows(root: Path) -> list[dict[str, str]]:
    if not (root / "index.csv").exists():
        return []
    with open(root / "index.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_ok_failed_and_died_runs_on_slurm_jobs(tmp_path: Path) -> None:
    table = [{"mode": m} for m in ("ok", "raise", "exit", "ok2")]
    write_spec(tmp_path, "modes.py", name="m", table=table)
    proc = run_cli(*SWEEP[3:], "-j", "2", "--slurm-time", "10", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "m: FAILED: 2 ok, 1 failed, 0 timeout, 1 died, 0 interrupted" in proc.stdout
    assert "could not" not in proc.stderr, proc.stderr

    root = tmp_path / "runs"
    rows = {row["param.mode"]: row for row in index_rows(root)}
    assert {m: r["status"] for m, r in rows.items()} == {
        "ok": "ok", "raise": "failed", "exit": "died", "ok2": "ok",
    }  # fmt: skip
    assert rows["raise"]["error"].startswith("ValueError: asked to fail")
    assert rows["exit"]["error"].startswith("DeadKernel: "), rows["exit"]["error"]
    # every run executed inside one of this sweep's Slurm jobs, whose logs are in runs/.slurm
    logs = {p.name for p in (root / ".slurm").glob("ductaflow-*.err")}
    jobs = {(root / "m" / r["run"] / "job.txt").read_text() for r in rows.values()}
    assert jobs and {f"ductaflow-{job}.err" for job in jobs} <= logs, (jobs, logs)
    assert "#SBATCH -t 00:10:00" in (root / ".slurm" / "job.sh").read_text()
    # the conductor closed its cluster: its jobs leave the queue
    wait_for(lambda: not jobs_of(tmp_path), seconds=120, what="the sweep's jobs to end")
    assert not wait_no_kernels(tmp_path)


def test_ctrl_c_cancels_the_jobs_and_records_the_runs_interrupted(tmp_path: Path) -> None:
    hold = tmp_path / "hold"
    hold.mkdir()
    table = [{"x": 0}] + [{"x": x, "hold": str(hold)} for x in (1, 2)]
    write_spec(tmp_path, "hold.py", name="c", table=table)
    root = tmp_path / "runs"
    proc = subprocess.Popen(
        [*SWEEP, "-j", "2"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )  # fmt: skip

    try:
        wait_for(lambda: len(index_rows(root)) == 1 and started(hold) == {1, 2}, what="runs held")
        assert len(jobs_of(tmp_path)) == 2
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 1, err
    assert "c: interrupted: 1 ok, 0 failed, 0 timeout, 0 died, 2 interrupted" in out
    # cancelled, they leave at once; left alone, they would stay for their whole time limit
    wait_for(lambda: not jobs_of(tmp_path), seconds=120, what="the jobs to leave squeue")
    run_dirs = [d for d in root.glob("c/*") if d.is_dir()]
    statuses = {read_json(d / "CONFIG.json")["x"]: read_json(d / "status.json") for d in run_dirs}
    assert {x: s["status"] for x, s in statuses.items()} == {
        0: "ok", 1: "interrupted", 2: "interrupted",
    }  # fmt: skip
    for x in (1, 2):  # Ctrl-C, passed on to the run processes (fault 9 of issue 15)
        assert statuses[x]["error"] == "Interrupted: the run was stopped by SIGINT"
    assert sorted(r["status"] for r in index_rows(root)) == ["interrupted", "interrupted", "ok"]
    assert not wait_no_kernels(tmp_path), "a kernel outlived Ctrl-C"


def test_sigkill_of_the_conductor_lets_the_runs_finish_and_then_the_jobs_end(
    tmp_path: Path,
) -> None:
    hold = tmp_path / "hold"
    hold.mkdir()
    write_spec(tmp_path, "hold.py", name="k", table=[{"x": x, "hold": str(hold)} for x in (1, 2)])
    root = tmp_path / "runs"
    proc = subprocess.Popen(
        [*SWEEP, "-j", "2"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )  # fmt: skip

    def statuses() -> list[str]:
        return [read_json(p)["status"] for p in root.glob("k/*/status.json")]

    try:
        wait_for(lambda: statuses() == ["running"] * 2, 120, "both runs to start")
        assert len(jobs_of(tmp_path)) == 2
    finally:
        proc.kill()  # the conductor, and the Dask scheduler that lives in it
        proc.communicate()
    release(hold)
    # the workers lose their scheduler: each lets its run finish, then its job ends
    # a deadline only: on a loaded machine the workers' own checks can take a while
    wait_for(lambda: statuses() == ["ok"] * 2, 240, "the runs to finish")
    # each worker appended its run's row itself: the file is right before anything looks
    assert sorted(r["status"] for r in index_rows(root)) == ["ok", "ok"]
    # a deadline far under the jobs' time limit, when they would end anyway
    wait_for(lambda: not jobs_of(tmp_path), seconds=120, what="the jobs to end")
    assert not wait_no_kernels(tmp_path)
    shown = run_cli("status", cwd=tmp_path)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "ok" in shown.stdout and "interrupted" not in shown.stdout, shown.stdout


def test_a_worker_job_scancelled_mid_run_is_replaced_and_the_run_redone(tmp_path: Path) -> None:
    hold = tmp_path / "hold"
    hold.touch()
    write_spec(tmp_path, "jobs.py", name="w", table=[{"hold": str(hold)}])
    root = tmp_path / "runs"
    # Dask replaces a lost worker after this timeout (default 15 s); the test need not wait
    env = {**os.environ, "DASK_DISTRIBUTED__DEPLOY__LOST_WORKER_TIMEOUT": "1s"}
    proc = subprocess.Popen(
        [*SWEEP, "-j", "1"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True, env=env,
    )  # fmt: skip

    def jobs_seen() -> list[str]:
        return [line for p in root.glob("w/*/jobs.log") for line in p.read_text().split()]

    try:
        wait_for(lambda: len(jobs_seen()) == 1, 120, "the run to start")
        (first,) = jobs_seen()
        assert jobs_of(tmp_path) == [first]
        subprocess.run(["scancel", first], check=True, timeout=20)
        wait_for(lambda: len(jobs_seen()) == 2, 120, "the run to start again")
        hold.unlink()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, out + err
    assert "w: ok: 1 ok, 0 failed, 0 timeout, 0 died, 0 interrupted" in out
    again = jobs_seen()[1]
    assert again and again != first, "the run was not redone in a new job"
    ((status_path),) = root.glob("w/*/status.json")
    status = read_json(status_path)
    assert status["status"] == "ok"
    # both attempts recorded: the one scancel cut, in the first job, and the one that ended ok
    assert status["attempts"] == 2
    log = status["attempt_log"]
    assert [(a["job_id"], a["status"]) for a in log] == [(first, "interrupted"), (again, "ok")]
    assert all(a["host"] and a["started"] and a["ended"] for a in log), log
    assert log[0]["error"].startswith("Interrupted: "), log[0]
    assert [(r["status"], r["attempts"]) for r in index_rows(root)] == [("ok", "2")]


@pytest.mark.parametrize(
    ("option", "reason"),
    [
        (("--slurm-partition", "nosuch"), "Invalid partition name specified"),
        (("--slurm-mem", "100000G"), "Requested node configuration is not available"),
    ],
    ids=["partition", "memory"],
)
def test_a_job_script_slurm_rejects_fails_before_anything(
    tmp_path: Path, option: tuple[str, str], reason: str
) -> None:
    """``sbatch --test-only`` first: exit 2, one line, no job queued, nothing written."""
    write_spec(tmp_path, "modes.py", name="r", table=[{"mode": "ok"}, {"mode": "ok2"}])
    proc = run_cli(*SWEEP[3:], *option, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"ductaflow: error: --backend slurm: sbatch rejects the job script: "
        f"allocation failure: {reason}"
    ]
    assert proc.stdout == ""
    assert not (tmp_path / "runs").exists(), sorted(map(str, (tmp_path / "runs").rglob("*")))
    assert not jobs_of(tmp_path, every_state=True), "a job was queued"


def test_a_worker_whose_job_is_nearly_up_takes_no_run_it_cannot_finish(tmp_path: Path) -> None:
    """``--slurm-time 1`` and three runs of 20 s on one worker: a job fits two of them. The
    worker drains after its second run and a fresh job runs the third; none is cut."""
    write_spec(tmp_path, "jobs.py", name="t", table=[{"x": x, "seconds": 20} for x in (1, 2, 3)])
    proc = run_cli(*SWEEP[3:], "-j", "1", "--slurm-time", "1", cwd=tmp_path, timeout=280)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "t: ok: 3 ok, 0 failed, 0 timeout, 0 died, 0 interrupted" in proc.stdout
    root = tmp_path / "runs"
    statuses = [read_json(p) for p in sorted(root.glob("t/*/status.json"))]
    # never cut, never redone: one attempt each, and that one ok
    assert [(s["attempts"], [a["status"] for a in s["attempt_log"]]) for s in statuses] == [
        (1, ["ok"])
    ] * 3
    jobs = [s["job_id"] for s in statuses]
    # two fit in a job (one only, on a machine slow to start the worker): never three
    assert len(set(jobs)) >= 2, f"three runs of 20 s in one 1-minute job? {jobs}"
    logs = [p.read_text().split() for p in sorted(root.glob("t/*/jobs.log"))]
    assert [len(log) for log in logs] == [1, 1, 1], logs  # each run began once
    assert [r["attempts"] for r in index_rows(root)] == ["1"] * 3


def test_a_slurm_worker_forks_warm_kernels_from_one_zygote_for_its_job(tmp_path: Path) -> None:
    write_spec(tmp_path, "kernel_parent.py", name="z", table=[{"x": x} for x in range(4)])
    proc = run_cli(*SWEEP[3:], "-j", "1", "--preload", "json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    root = tmp_path / "runs"
    rows = sorted(index_rows(root), key=lambda r: r["started"])
    statuses = [read_json(root / r["run_dir"] / "status.json") for r in rows]
    assert len({r["result.job"] for r in rows}) == 1, "one job ran them all"
    # every kernel is a child of the same zygote, not of the run process that executes runs
    parents = {r["result.kernel_parent"] for r in rows}
    assert len(parents) == 1, parents
    assert parents != {str(s["pid"]) for s in statuses}, "the kernels were not forked"
    # (that a forked kernel starts faster than the first is a speed: benchmarks/, not here)
