"""Fault 9: no temporary file, socket directory or process outlives a sweep, whatever ends it;
the leftovers of a killed sweep are removed by the next one.

Each sweep runs in a process of its own with ``TMPDIR`` set to a fresh, short directory, so
that everything it leaves in the temporary directory can be seen (and only its own).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import wait_no_kernels
from faultkit import copy_flow, write_spec

from ductaflow.process import owner_alive, remove_stale_scratch

DEADLINE_S = 60.0


@pytest.fixture
def tmpdir_env(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A fresh ``TMPDIR``, short enough for the Unix socket paths that go below it; a sweep a
    failed test left going is killed with its process group."""
    tmp = Path(tempfile.mkdtemp(prefix="df9-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if k != "DUCTAFLOW_SCRATCH"}
    yield tmp, {**env, "TMPDIR": str(tmp)}
    for proc in _STARTED.pop(str(tmp), []):
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    shutil.rmtree(tmp, ignore_errors=True)


#: the sweeps each test started, by its TMPDIR (for the fixture's teardown only)
_STARTED: dict[str, list[subprocess.Popen[str]]] = {}


def leftovers(tmp: Path) -> list[str]:
    """Everything under ``tmp`` but the (empty) per-user root ductaflow keeps its scratch in."""
    found = []
    for path in sorted(tmp.rglob("*")):
        if path.parent == tmp and path.name == f"ductaflow-{os.getuid()}" and path.is_dir():
            continue
        found.append(str(path.relative_to(tmp)))
    return found


def start_sweep(work: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ductaflow", "sweep", "s.json", "-j", "2", "--no-report",
         "--no-progress", *args],
        cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    _STARTED.setdefault(env["TMPDIR"], []).append(proc)
    return proc


def wait_until(what: object, seconds: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + seconds
    while not what():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"not true within {seconds:g} s: {what}"
        time.sleep(0.1)


def started_runs(work: Path) -> list[Path]:
    """Runs whose flow has begun executing (its first cell writes ``executions.log``)."""
    return sorted(p.parent for p in work.glob("runs/s/*/executions.log"))


def sweep_in_flight(
    tmp_path: Path, env: dict[str, str], runs: int, *args: str
) -> tuple[Path, subprocess.Popen[str]]:
    """A sweep of ``runs`` runs that sleep, started, with two of them executing."""
    copy_flow(tmp_path, "work.py")
    write_spec(tmp_path, flow="work.py", grid={"x": list(range(runs))}, base={"sleep": 60})
    proc = start_sweep(tmp_path, env, *args)
    wait_until(lambda: len(started_runs(tmp_path)) >= 2 or proc.poll() is not None)
    assert proc.poll() is None, proc.communicate()
    return tmp_path, proc


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stopped_no_warm_sweep_leaves_no_socket_directory(
    tmp_path: Path, tmpdir_env: tuple[Path, dict[str, str]], signum: int
) -> None:
    tmp, env = tmpdir_env
    work, proc = sweep_in_flight(tmp_path, env, 4, "--no-warm")
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "interrupted" in out, out + err
    assert not wait_no_kernels(work), "kernels outlived the sweep"
    assert leftovers(tmp) == []


def test_dask_local_leaves_no_scratch_after_a_clean_sweep(
    tmp_path: Path, tmpdir_env: tuple[Path, dict[str, str]]
) -> None:
    pytest.importorskip("distributed")
    tmp, env = tmpdir_env
    copy_flow(tmp_path, "work.py")
    write_spec(tmp_path, flow="work.py", grid={"x": [1, 2, 3]})
    proc = start_sweep(tmp_path, env, "--backend", "dask-local")
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0 and "3 ok" in out, out + err
    assert not wait_no_kernels(tmp_path)
    assert leftovers(tmp) == []  # no df-zygote-*, no dask-scratch-space


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_dask_local_ctrl_c_is_recorded_as_ctrl_c(
    tmp_path: Path, tmpdir_env: tuple[Path, dict[str, str]], signum: int
) -> None:
    """Its runs are recorded as stopped by the signal that stopped the conductor."""
    pytest.importorskip("distributed")
    tmp, env = tmpdir_env
    work, proc = sweep_in_flight(tmp_path, env, 4, "--backend", "dask-local")
    running = started_runs(work)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "interrupted" in out, out + err
    errors = [json.loads((run / "status.json").read_text())["error"] for run in running]
    name, other = ("SIGINT", "SIGTERM") if signum == signal.SIGINT else ("SIGTERM", "SIGINT")
    assert all(name in e and other not in e for e in errors), errors
    assert not wait_no_kernels(work)
    assert leftovers(tmp) == []


def test_orphaned_pool_workers_start_no_new_run(
    tmp_path: Path, tmpdir_env: tuple[Path, dict[str, str]]
) -> None:
    """loky hands its workers tasks ahead; after the conductor's SIGKILL they must not start
    them, and the runs they were executing stop, with their kernels."""
    _, env = tmpdir_env
    work, proc = sweep_in_flight(tmp_path, env, 8, "--no-warm")
    workers = [
        pid for pid in children(proc.pid) if b"loky" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    assert workers, "no loky worker found"
    running = started_runs(work)
    proc.kill()
    proc.communicate(timeout=30)
    wait_until(lambda: not any(alive(pid) for pid in workers))
    assert not wait_no_kernels(work, 30), "the orphans' kernels still run"
    statuses = {
        run.name: json.loads((run / "status.json").read_text())["status"]
        for run in work.glob("runs/s/*")
        if (run / "status.json").exists()
    }
    assert sorted(statuses) == sorted(run.name for run in running), statuses
    assert set(statuses.values()) == {"interrupted"}, statuses


@pytest.mark.parametrize(
    "backend", [("--no-warm",), ("--backend", "dask-local")], ids=["loky", "dask-local"]
)
def test_the_next_sweep_removes_what_a_killed_one_left(
    tmp_path: Path, tmpdir_env: tuple[Path, dict[str, str]], backend: tuple[str, ...]
) -> None:
    if "dask-local" in backend:
        pytest.importorskip("distributed")
    tmp, env = tmpdir_env
    work, proc = sweep_in_flight(tmp_path, env, 4, *backend)
    proc.kill()
    proc.communicate(timeout=30)
    assert not wait_no_kernels(work, 30)
    assert leftovers(tmp), "a killed sweep left nothing: the test proves nothing"
    # a second sweep (another spec, same TMPDIR) cleans up after the first
    write_spec(work, name="t", flow="work.py", grid={"x": [1]})
    again = subprocess.run(
        [sys.executable, "-m", "ductaflow", "sweep", "t.json", "--no-warm", "--no-report",
         "--no-progress"],
        cwd=work, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    assert leftovers(tmp) == []


def test_stale_means_its_owner_is_dead(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A scratch directory goes only when the process it is named after (pid and start time)
    is gone; a live owner's, or a name that is not ours, stays."""
    tmp = Path(tempfile.mkdtemp(prefix="df9-", dir="/tmp"))
    try:
        monkeypatch.setenv("TMPDIR", str(tmp))
        monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir reads TMPDIR again
        dead = subprocess.Popen(["true"])
        dead.wait()
        root = tmp / f"ductaflow-{os.getuid()}"
        start = Path(f"/proc/{os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()[19]
        names = [f"{dead.pid}-12345", f"{os.getpid()}-{start}", f"{os.getpid()}-1", "notes"]
        for name in names:
            (root / name / "df-x").mkdir(parents=True)
        assert [owner_alive(n) for n in names] == [False, True, False, True]
        removed = remove_stale_scratch()
        assert sorted(p.name for p in removed) == sorted([names[0], names[2]])
        assert sorted(p.name for p in root.iterdir()) == sorted([names[1], names[3]])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_run_flow_keeps_its_socket_directory_in_the_process_scratch(tmp_path: Path) -> None:
    """Outside a sweep (``ductaflow run``), a kernel's sockets go in the process's own scratch
    directory, removed when it exits."""
    tmp = Path(tempfile.mkdtemp(prefix="df9-", dir="/tmp"))
    try:
        copy_flow(tmp_path, "work.py")
        env = {**os.environ, "TMPDIR": str(tmp)}
        env.pop("DUCTAFLOW_SCRATCH", None)
        proc = subprocess.run(
            [sys.executable, "-m", "ductaflow", "run", "work.py"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert leftovers(tmp) == []
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
