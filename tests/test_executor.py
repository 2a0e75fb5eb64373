"""Sweeps end to end with real kernels: the pool, resume, the index, faults, concurrency."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest
from helpers import (
    FLOWS,
    conductor,
    is_run_dir,
    read_json,
    release,
    run_cli,
    started,
    wait_for,
    wait_no_kernels,
    write_spec,
)

from ductaflow.executor import SweepOptions, execute_sweep
from ductaflow.index import load_index
from ductaflow.rundir import is_claimed, read_status
from ductaflow.spec import RunOptions
from ductaflow.sweep import Sweep

pytestmark = pytest.mark.slow  # kernels and processes: not in `-m "not slow"`


def executions(run_dir: Path) -> int:
    log = run_dir / "executions.log"
    return len(log.read_text().split()) if log.exists() else 0


def index_rows(root: Path) -> list[dict[str, str]]:
    """The raw rows of index.csv, ``run_dir`` (recorded relative to the root) made absolute."""
    with open(root / "index.csv", newline="") as fh:
        return [{**row, "run_dir": str(root / row["run_dir"])} for row in csv.DictReader(fh)]


def run_dirs(root: Path, sweep: str = "s") -> dict[str, Path]:
    return {p.name: p for p in (root / sweep).iterdir() if is_run_dir(p)}


def notebook_text(path: Path) -> str:
    return "\n".join("".join(cell["source"]) for cell in read_json(path)["cells"])


def test_sweep_runs_indexes_and_resumes(tmp_path: Path) -> None:
    write_spec(tmp_path, table=[{"x": 1}, {"x": 2}, {"x": 3, "fail": True}])
    proc = run_cli("sweep", "spec.json", "-j", "2", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    summary = proc.stdout.strip().splitlines()[-1]
    assert "s: FAILED: 2 ok, 1 failed, 0 timeout, 0 died, 0 interrupted, 0 skipped" in summary
    assert summary.endswith(f"-> {tmp_path / 'runs' / 'index.csv'}")
    report = tmp_path / "runs" / "s" / "report.html"
    assert proc.stdout.splitlines()[0] == f"report -> {report}"
    (failed_dir,) = (tmp_path / "runs" / "s").glob("fail=true*")
    assert "#ductaflow-error" in report.read_text()
    assert 'id="ductaflow-error"' in (failed_dir / "work_executed.html").read_text()
    assert not list((tmp_path / "runs" / "s").glob("x=*/work_executed.html"))  # ok: on demand

    frame = load_index(tmp_path / "runs")
    assert len(frame) == 3
    assert sorted(frame["status"]) == ["failed", "ok", "ok"]
    failed = frame[frame["status"] == "failed"].iloc[0]
    assert failed["error"] == "ValueError: asked to fail (x=3)"
    assert frame["run_dir"].tolist() == sorted(frame["run_dir"].tolist())  # stable order
    assert str(frame["param.x"].dtype) == "int64"
    assert str(frame["duration_s"].dtype) == "float64"
    assert str(frame["started"].dtype).startswith("datetime64")
    assert str(frame["attempts"].dtype) == "Int64"
    ok = frame[frame["status"] == "ok"].set_index("param.x")
    assert ok.loc[2, "result.double"] == 4
    assert (frame["flow.work.duration_s"] > 0).all()
    assert frame.groupby("param.x")["result.double"].mean().loc[1] == 2

    plan = run_cli("sweep", "spec.json", "--dry-run", cwd=tmp_path)
    assert plan.returncode == 0
    assert plan.stdout.strip() == "s: 3 runs (2 done, 1 failed); 1 to run"

    again = run_cli("sweep", "spec.json", "-j", "2", "--no-report", cwd=tmp_path)
    assert not again.stdout.startswith("report")
    assert "1 failed, 0 timeout, 0 died, 0 interrupted, 2 skipped" in again.stdout
    counts = {d.name.split("-")[0]: executions(d) for d in run_dirs(tmp_path / "runs").values()}
    assert counts == {"fail=true_x=3": 2, "x=1": 1, "x=2": 1}
    assert len(index_rows(tmp_path / "runs")) == 3, "the index keeps one row per run"


def test_stale_only_force_and_extension(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, grid={"x": [1, 2]})
    root = tmp_path / "runs"
    assert run_cli("sweep", "spec.json", "--no-report", "-j", "2", cwd=tmp_path).returncode == 0

    data = json.loads(spec.read_text())
    data["grid"]["x"] = [1, 2, 3]  # extending a grid reruns nothing that exists
    spec.write_text(json.dumps(data))
    proc = run_cli("sweep", "spec.json", "--no-report", "-j", "2", cwd=tmp_path)
    assert "1 ok," in proc.stdout and "2 skipped" in proc.stdout
    assert sorted(executions(d) for d in run_dirs(root).values()) == [1, 1, 1]

    with open(tmp_path / "work.py", "a") as fh:
        fh.write("\n# an edit makes every run stale\n")
    plan = run_cli("sweep", "spec.json", "--dry-run", cwd=tmp_path)
    assert plan.stdout.strip() == "s: 3 runs (3 stale); 3 to run"
    proc = run_cli("sweep", "spec.json", "--no-report", "--only", "new", cwd=tmp_path)
    assert proc.returncode == 0 and "0 ok," in proc.stdout and "3 skipped" in proc.stdout
    proc = run_cli("sweep", "spec.json", "--no-report", "-j", "2", "--only", "stale", cwd=tmp_path)
    assert "3 ok," in proc.stdout
    assert sorted(executions(d) for d in run_dirs(root).values()) == [2, 2, 2]
    proc = run_cli("sweep", "spec.json", "--no-report", "-j", "2", "--force", cwd=tmp_path)
    assert "3 ok," in proc.stdout
    assert sorted(executions(d) for d in run_dirs(root).values()) == [3, 3, 3]


def test_retries_and_timeouts(tmp_path: Path) -> None:
    write_spec(tmp_path, "flaky.py", grid={"x": [1]})
    proc = run_cli("sweep", "spec.json", "--no-report", "--retries", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run_dir,) = run_dirs(tmp_path / "runs").values()
    assert read_json(run_dir / "status.json")["attempts"] == 2
    assert load_index(tmp_path / "runs")["attempts"].tolist() == [2]

    sweep = Sweep(name="t", flows=(FLOWS / "work.py",), grid={"sleep": [0, 30]})
    report = execute_sweep(
        sweep,
        SweepOptions(tmp_path / "runs", 2, run=RunOptions(timeout=8), progress=False),
    )
    assert sorted(o.result.status for o in report.outcomes) == ["ok", "timeout"]
    assert not report.ok
    assert "1 ok, 0 failed, 1 timeout" in report.summary()


def test_two_conductors_never_run_a_directory_twice(tmp_path: Path) -> None:
    """Two conductors at -j 2 on 4 held runs: 4 runs in their flow at once can only be both
    conductors running (the overlap is certain, not hoped for); then each ran once."""
    hold = tmp_path / "hold"
    hold.mkdir()
    write_spec(tmp_path, "hold.py", grid={"x": [1, 2, 3, 4]}, base={"hold": str(hold)})
    args = ("spec.json", "-j", "2", "--no-progress", "--no-report")
    with conductor(*args, cwd=tmp_path) as a, conductor(*args, cwd=tmp_path) as b:
        a.until(lambda: len(started(hold)) == 4, what="4 runs held by two conductors")
        assert a.alive() and b.alive()
        release(hold)
        assert (a.wait(), b.wait()) == (0, 0), a.output() + b.output()
    dirs = run_dirs(tmp_path / "runs")
    assert len(dirs) == 4 and len(list(hold.glob("started-*"))) == 4
    assert {name: executions(d) for name, d in dirs.items()} == {name: 1 for name in dirs}
    rows = load_index(tmp_path / "runs")
    assert len(rows) == 4 and set(rows["status"]) == {"ok"}


@pytest.mark.parametrize("mode", ["warm", "standard"])
def test_killed_conductor_leaves_every_finished_run_indexed(tmp_path: Path, mode: str) -> None:
    """Warm: runs on the conductor's threads die with it; standard: loky workers outlive it."""
    hold = tmp_path / "hold"
    hold.mkdir()
    # 6 runs at -j 2: 2 finish, 2 are held when the conductor is killed, 2 never start
    write_spec(tmp_path, "hold.py", grid={"x": list(range(6))}, base={"hold": str(hold)})
    root = tmp_path / "runs"
    flags = ["--no-warm"] if mode == "standard" else []

    def finished() -> int:
        if not (root / "index.csv").exists():
            return 0
        return sum(r["status"] == "ok" for r in index_rows(root))

    with conductor(
        "spec.json", "--no-report", "-j", "2", "--no-progress", *flags, cwd=tmp_path
    ) as c:
        first = c.until(lambda: len(started(hold)) == 2 and started(hold), what="2 runs held")
        for x in first:
            release(hold, x)
        c.until(lambda: finished() == 2 and len(started(hold)) == 4, what="2 done, 2 held")
        c.proc.kill()  # the conductor alone, SIGKILL: its loky workers are orphaned
        c.wait()
        assert not wait_no_kernels(tmp_path), "kernels outlived the killed conductor"
        wait_for(  # the orphaned workers stop their runs and record them, then let go
            lambda: not any(is_claimed(d) for d in run_dirs(root).values()),
            what="claims released",
        )

    ok_on_disk = {
        str(d) for d in run_dirs(root).values() if (read_status(d) or {}).get("status") == "ok"
    }
    indexed_ok = {r["run_dir"] for r in index_rows(root) if r["status"] == "ok"}
    assert ok_on_disk and ok_on_disk <= indexed_ok, "a finished run is missing from the index"
    in_flight = {
        str(d)
        for d in run_dirs(root).values()
        if (read_status(d) or {}).get("status") not in (None, "ok")
    }
    sleeping = {d for d in in_flight if executions(Path(d))}
    assert sleeping, "the conductor was killed with no run in its flow"

    # The next sweep records the runs the killed one left in flight (standard: the orphaned
    # workers did already), here without rerunning them; it runs the ones never started.
    release(hold)
    proc = run_cli(
        "sweep", "spec.json", "--no-report", "-j", "2", "--only", "new", *flags, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    left = {r["run_dir"]: r for r in index_rows(root) if r["run_dir"] in in_flight}
    assert left.keys() == in_flight
    assert {r["status"] for r in left.values()} == {"interrupted"}
    for run_dir in sleeping:
        assert "ended `interrupted`" in notebook_text(Path(run_dir) / "hold_executed.ipynb")

    before = {name: executions(d) for name, d in run_dirs(root).items()}
    proc = run_cli("sweep", "spec.json", "--no-report", "-j", "2", *flags, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name, d in run_dirs(root).items():
        if str(d) in ok_on_disk:
            assert executions(d) == before[name], "resume reran a finished run"
    assert set(load_index(root)["status"]) == {"ok"} and len(load_index(root)) == 6


def test_a_dead_worker_is_recorded_and_the_sweep_goes_on(tmp_path: Path) -> None:
    write_spec(
        tmp_path,
        "killworker.py",
        table=[{"x": 1}, {"x": 2, "kill": True}, {"x": 3}, {"x": 4}, {"x": 5}],
    )
    # standard kernels: the kernel's parent is the worker (a warm kernel's is its zygote)
    proc = run_cli("sweep", "spec.json", "--no-report", "-j", "2", "--no-warm", cwd=tmp_path)
    assert proc.returncode == 1
    frame = load_index(tmp_path / "runs").set_index("param.x")
    assert frame.loc[2, "status"] == "died"
    assert "DeadWorker" in frame.loc[2, "error"]
    assert frame.drop(index=2)["status"].tolist() == ["ok"] * 4


@pytest.mark.parametrize("mode", ["warm", "standard"])
def test_ctrl_c_records_runs_in_flight_and_resume_finishes(tmp_path: Path, mode: str) -> None:
    """Warm: the conductor stops the runs on its threads; standard: each loky worker its own."""
    hold = tmp_path / "hold"
    hold.mkdir()
    write_spec(tmp_path, "hold.py", grid={"x": list(range(6))}, base={"hold": str(hold)})
    root = tmp_path / "runs"
    flags = ["--no-warm"] if mode == "standard" else []
    with conductor("spec.json", "--no-report", "-j", "2", *flags, cwd=tmp_path) as c:
        c.until(lambda: len(started(hold)) == 2, what="two runs held")
        c.signal_group(signal.SIGINT)  # what Ctrl-C in a terminal does
        assert c.wait() == 1, c.output()
        assert "s: interrupted:" in c.out
    statuses = [read_json(d / "status.json")["status"] for d in run_dirs(root).values()]
    assert statuses and set(statuses) == {"interrupted"}
    assert {r["status"] for r in index_rows(root)} == {"interrupted"}
    assert not wait_no_kernels(tmp_path)
    # each notebook says its run was stopped; warm runs, stopped by the engine, say where
    where = "ended `interrupted` at cell 4" if mode == "warm" else "ended `interrupted`"
    held = [d for d in run_dirs(root).values() if executions(d)]
    assert len(held) == 2
    for run_dir in held:
        assert where in notebook_text(run_dir / "hold_executed.ipynb")

    release(hold)  # the same configs: the interrupted runs go again in their own directories
    proc2 = run_cli("sweep", "spec.json", "--no-report", "-j", "2", *flags, cwd=tmp_path)
    assert proc2.returncode == 0, proc2.stdout + proc2.stderr
    assert "s: ok: 6 ok" in proc2.stdout
    assert {executions(d) for d in held} == {2}
    assert len(run_dirs(root)) == 6


def test_warm_runs_share_the_conductor_and_standard_runs_use_workers(tmp_path: Path) -> None:
    """The default pool: warm kernels are driven from threads of the conductor (one zygote),
    standard kernels from loky worker processes."""
    write_spec(tmp_path, grid={"x": [1, 2, 3, 4]})
    pids = {}
    for mode, flags in (("warm", []), ("standard", ["--no-warm", "--force"])):
        proc = subprocess.Popen(
            [sys.executable, "-m", "ductaflow", "sweep", "spec.json", "--no-report", "-j", "2",
             *flags],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, out + err
        statuses = [read_status(d) or {} for d in run_dirs(tmp_path / "runs").values()]
        pids[mode] = {s["pid"] for s in statuses}
        if mode == "warm":
            assert pids[mode] == {proc.pid}
        else:
            assert proc.pid not in pids[mode] and 1 <= len(pids[mode]) <= 2


def test_sweeps_on_threads_leave_no_descriptor_or_thread_behind(tmp_path: Path) -> None:
    """A conductor runs sweep after sweep (conductor.py, notebooks): its threads hold nothing."""

    def sweep_once(k: int) -> None:
        sweep = Sweep(name=f"t{k}", flows=(FLOWS / "work.py",), grid={"x": list(range(8))})
        report = execute_sweep(sweep, SweepOptions(tmp_path / "runs", 2, progress=False))
        assert report.ok and report.counts()["ok"] == 8

    def counts() -> tuple[int, int]:
        return len(os.listdir("/proc/self/fd")), threading.active_count()

    sweep_once(1)
    first = wait_for(counts)  # the counts once the first sweep settled
    for k in (2, 3):
        sweep_once(k)
        wait_for(lambda: counts() <= first, what=f"sweep {k}'s threads and fds let go")


def test_ctrl_c_stops_a_sequential_sweep_at_once(tmp_path: Path) -> None:
    """At -j 1 the runs execute in the conductor's main thread: one Ctrl-C stops the sweep,
    not only the run in flight."""
    write_spec(tmp_path, grid={"x": list(range(4))}, base={"sleep": 30})
    root = tmp_path / "runs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ductaflow", "sweep", "spec.json", "-j", "1"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    wait_for(
        lambda: (root / "s").exists() and any(executions(d) for d in run_dirs(root).values()),
        seconds=60, what="the first run to start",
    )  # fmt: skip
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)  # a deadline, not a speed
    assert proc.returncode == 1, out + err
    assert "s: interrupted: 0 ok, 0 failed, 0 timeout, 0 died, 1 interrupted" in out
    started = [d for d in run_dirs(root).values() if read_status(d)]
    assert len(started) == 1 and read_status(started[0])["status"] == "interrupted"


def test_a_notebook_can_conduct_sweeps(tmp_path: Path) -> None:
    """Sweeps launched from a kernel (a notebook as the conductor), whose thread already runs
    an event loop, at -j 1 (runs in that thread) and -j 2 (runs on threads)."""
    proc = run_cli(
        "run", FLOWS / "conduct.py", "--set", f"flow={FLOWS / 'work.py'}",
        "--set", f"root={tmp_path / 'inner'}", "--run-dir", "outer", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    nb = read_json(tmp_path / "outer" / "conduct_executed.ipynb")
    printed = "".join("".join(o.get("text", "")) for c in nb["cells"] for o in c.get("outputs", []))
    assert "1 ['ok', 'ok', 'ok'] [2, 4, 6]" in printed, printed
    assert "2 ['ok', 'ok', 'ok'] [2, 4, 6]" in printed, printed
    assert "Warning" not in printed, printed


def test_status_and_index_commands(tmp_path: Path) -> None:
    write_spec(tmp_path, table=[{"x": 1}, {"x": 2, "fail": True}])
    run_cli("sweep", "spec.json", "--no-report", "-j", "2", cwd=tmp_path)
    proc = run_cli("status", cwd=tmp_path)
    assert proc.returncode == 1
    assert "ValueError: asked to fail (x=2)" in proc.stdout
    lines = proc.stdout.splitlines()
    assert any(line.split()[:3] == ["s", "1", "1"] for line in lines), proc.stdout

    original = index_rows(tmp_path / "runs")
    (tmp_path / "runs" / "index.csv").unlink()
    proc = run_cli("index", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith("2 runs -> runs/index.csv")
    rebuilt = index_rows(tmp_path / "runs")
    key = lambda rows: sorted(rows, key=lambda r: r["run_dir"])  # noqa: E731
    assert key(rebuilt) == key(original)


def test_run_sweep_python_api_returns_the_sweeps_rows(tmp_path: Path) -> None:
    from ductaflow.executor import run_sweep

    sweep = Sweep(name="api", flows=(FLOWS / "work.py",), grid={"x": [5, 6]})
    frame = run_sweep(sweep, SweepOptions(runs_root=tmp_path / "runs", n_jobs=2, progress=False))
    assert isinstance(frame, pd.DataFrame)
    assert sorted(frame["result.double"].tolist()) == [10, 12]
    assert set(frame["sweep"]) == {"api"}


@pytest.mark.parametrize("backend", ["sequential", "threading"])
def test_other_backends_give_the_same_rows(tmp_path: Path, backend: str) -> None:
    sweep = Sweep(name="b", flows=(FLOWS / "work.py",), table=({"x": 1}, {"x": 2, "fail": True}))
    execute_sweep(sweep, SweepOptions(tmp_path / "runs", 2, backend=backend, progress=False))
    frame = load_index(tmp_path / "runs").sort_values("param.x")
    assert frame["status"].tolist() == ["ok", "failed"]
    assert frame["run"].tolist() == [s.name for s in sweep.expand(tmp_path / "runs")]


def test_progress_bar_in_a_terminal(tmp_path: Path) -> None:
    """In a terminal (a pty of 120 columns here) a sweep shows a progress bar with counts."""
    import fcntl
    import pty
    import struct
    import termios

    write_spec(tmp_path, table=[{"x": 1}, {"x": 2, "fail": True}])
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "ductaflow", "sweep", "spec.json", "-j", "2"],
        cwd=tmp_path, stdin=follower, stdout=follower, stderr=follower,
    )  # fmt: skip
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    assert proc.wait(timeout=60) == 1
    text = b"".join(chunks).decode(errors="replace")
    assert "0/2" in text and "2/2" in text and "100%" in text, text
    assert "ok=1" in text and "failed=1" in text, text
    assert "s: FAILED: 1 ok, 1 failed" in text


LIGHT = """
import sys
from ductaflow.cli import main
import ductaflow.executor
for argv in (["sweep", "spec.json", "--dry-run"], ["status"], ["index"]):
    main(argv)
print(sorted(m for m in ("nbclient", "zmq", "jupyter_client", "joblib") if m in sys.modules))
"""


def test_planning_and_reading_commands_load_no_kernel_machinery(tmp_path: Path) -> None:
    """``import ductaflow.executor``, ``--dry-run``, ``status`` and ``index`` start no kernel, so
    they must not pay for importing nbclient, zmq or joblib (~0.3 s)."""
    write_spec(tmp_path, grid={"x": [1, 2]})
    proc = subprocess.run(
        [sys.executable, "-c", LIGHT], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "s: 2 runs (2 new); 2 to run" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout


def run_in_pty(*args: str, cwd: Path, timeout: float = 120) -> tuple[int, str]:
    """``ductaflow ARGS`` in a terminal of 120 columns; its exit code and all it wrote."""
    import fcntl
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "ductaflow", *args],
        cwd=cwd, stdin=follower, stdout=follower, stderr=follower,
    )  # fmt: skip
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    return proc.wait(timeout=timeout), b"".join(chunks).decode(errors="replace")


def test_log_lines_and_the_progress_bar_do_not_garble_each_other(tmp_path: Path) -> None:
    """A warning logged while the bar is drawn gets a line of its own, above the bar."""
    write_spec(tmp_path, "killworker.py", table=[{"x": 1}, {"x": 2, "kill": True}])
    code, text = run_in_pty("sweep", "spec.json", "-j", "2", "--no-warm", cwd=tmp_path)
    assert code == 1, text
    lines = [seg for seg in re.split(r"[\r\n]", text) if "a worker died" in seg]
    assert lines and all(line.startswith("ductaflow: a worker died") for line in lines), text
    assert "2/2" in text and "s: FAILED: 1 ok, 0 failed, 0 timeout, 1 died" in text, text


def test_a_run_found_done_since_the_sweep_began_counts_as_ran_not_skipped(tmp_path: Path) -> None:
    """A task run again after its first outcome was lost (a Dask worker that retires before its
    result is gathered: seen on the real Slurm under load as "2 ok, 1 skipped" for 3 runs that
    all ran) finds its run done: that run is this sweep's, ran once, and is already indexed."""
    from ductaflow.process import now
    from ductaflow.spec import RAN, SKIPPED
    from ductaflow.task import run_task

    root = tmp_path / "runs"
    (spec,) = Sweep(name="s", flows=(FLOWS / "work.py",), grid={"x": [3]}).expand(root)
    options, since = RunOptions(warm=False), now()
    first = run_task(spec, options, force=False, since=since, index_root=root)
    assert first.kind == RAN and first.result is not None and first.result.ok and first.indexed
    again = run_task(spec, options, force=False, since=since, index_root=root)
    assert again.kind == RAN and again.indexed, again
    assert again.result is not None and again.result.status == "ok"
    assert again.result.started == first.result.started  # the same execution, read back
    forced = run_task(spec, options, force=True, since=since, index_root=root)
    assert forced.kind == RAN and forced.result.started == first.result.started  # not twice
    assert (spec.run_dir / "executions.log").read_text().count("\n") == 1
    # a later sweep finds it done before it began: skipped, as resume promises
    later = run_task(spec, options, force=False, since=now(), index_root=root)
    assert later.kind == SKIPPED
    assert (spec.run_dir / "executions.log").read_text().count("\n") == 1
