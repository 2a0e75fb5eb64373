"""What the tests share: a view of a runs root, a conductor process that cannot outlive its test,
polling with a deadline, and the flows in ``tests/flows/``.

Tests import from here (``from helpers import ...``); ``conftest.py`` holds only fixtures and
re-exports these names for the files that still import them from there.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "BACKENDS",
    "FLOWS",
    "REPO",
    "SLURM_CONF",
    "Backend",
    "Conductor",
    "RunsRoot",
    "conductor",
    "kernels_under",
    "outputs_text",
    "read_json",
    "release",
    "run_cli",
    "slurm_up",
    "started",
    "wait_for",
    "wait_no_kernels",
    "write_spec",
]

FLOWS = Path(__file__).parent / "flows"
REPO = Path(__file__).parent.parent

SLURM_CONF = "/tmp/ductaflow-slurm/slurm.conf"

#: How long a test waits for an event before it fails: a deadline a loaded 2-core machine does
#: not reach by accident, never a measure of speed.
DEADLINE = 240.0


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def wait_for(
    predicate: Callable[[], Any], seconds: float = DEADLINE, what: str = "condition"
) -> Any:
    """Poll ``predicate`` until it returns something true (returned); fail at the deadline."""
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")
        time.sleep(0.05)


def run_cli(
    *args: str | Path,
    cwd: Path,
    timeout: float = DEADLINE,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``python -m ductaflow ARGS`` in ``cwd``, as a user would run it (to its end).

    In its own process group: when it outlives ``timeout`` (kept under pytest's 300 s, so that
    the test fails with the command's output rather than pytest's stack dump) or the test is
    stopped while it runs, the whole group is killed, its workers and kernels too. After a
    normal exit nothing is killed: a test that checks for leftovers sees them."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ductaflow", *map(str, args)],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=None if env is None else {**os.environ, **env},
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException as exc:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        if isinstance(exc, subprocess.TimeoutExpired):
            raise AssertionError(
                f"ductaflow {' '.join(map(str, args))} ran over {timeout:.0f} s:\n"
                f"--- stdout\n{out}\n--- stderr\n{err}"
            ) from None
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def write_spec(
    where: Path, flows: tuple[str, ...] | str = "work.py", name: str = "s", **blocks: Any
) -> Path:
    """Copy ``flows`` from ``tests/flows/`` into ``where`` and write ``where/spec.json``."""
    names = (flows,) if isinstance(flows, str) else flows
    for flow in names:
        shutil.copy(FLOWS / flow, where / flow)
    path = where / "spec.json"
    path.write_text(json.dumps({"name": name, "flows": list(names), **blocks}))
    return path


def is_run_dir(path: Path) -> bool:
    """A run's directory (not the sweep's ``environment/`` records or its report files)."""
    return path.is_dir() and any((path / f).exists() for f in ("CONFIG.json", "status.json"))


@dataclass
class RunsRoot:
    """A read-only view of a runs root: run directories, their records, the index's raw rows."""

    path: Path
    sweep: str = "s"

    def dirs(self) -> dict[str, Path]:
        """Run name → directory, for the sweep's runs ({} before the sweep made any)."""
        base = self.path / self.sweep
        if not base.is_dir():
            return {}
        return {p.name: p for p in sorted(base.iterdir()) if is_run_dir(p)}

    def by(self, key: str) -> dict[Any, Path]:
        """Config value of ``key`` → run directory (runs that have their CONFIG.json)."""
        out = {}
        for d in self.dirs().values():
            with contextlib.suppress(OSError, ValueError):
                out[read_json(d / "CONFIG.json").get(key)] = d
        return out

    def rows(self) -> list[dict[str, str]]:
        """index.csv's rows as written (strings), ``run_dir`` made absolute; [] without one."""
        try:
            with open(self.path / "index.csv", newline="", encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh))
        except FileNotFoundError:
            return []
        return [{**row, "run_dir": str(self.path / row["run_dir"])} for row in rows]

    def header(self) -> list[str]:
        with open(self.path / "index.csv", newline="", encoding="utf-8") as fh:
            return next(csv.reader(fh))

    def status(self, run_dir: Path) -> dict[str, Any]:
        """The run's status.json ({} while it has none or it is being replaced)."""
        try:
            data = read_json(run_dir / "status.json")
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def statuses(self) -> dict[str, str]:
        return {name: self.status(d).get("status", "") for name, d in self.dirs().items()}

    def results(self, run_dir: Path) -> dict[str, Any]:
        try:
            return read_json(run_dir / "results.json")
        except (OSError, ValueError):
            return {}

    def executions(self, run_dir: Path) -> int:
        """How many times a ``work.py``/``hold.py`` flow began in this run directory."""
        log = run_dir / "executions.log"
        return len(log.read_text().split()) if log.exists() else 0


@dataclass
class Conductor:
    """A ``python -m ductaflow ...`` process in its own process group; output goes to files."""

    proc: subprocess.Popen[bytes]
    out_path: Path
    err_path: Path
    returncode: int | None = field(default=None)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal_group(self, signum: int) -> None:
        """What a terminal does: Ctrl-C is SIGINT to the foreground job's whole group."""
        os.killpg(self.proc.pid, signum)

    def signal(self, signum: int) -> None:
        """What ``kill -TERM PID`` does: the conductor alone."""
        self.proc.send_signal(signum)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait(self, seconds: float = DEADLINE) -> int:
        self.returncode = self.proc.wait(timeout=seconds)
        return self.returncode

    @property
    def out(self) -> str:
        return self.out_path.read_text(errors="replace")

    @property
    def err(self) -> str:
        return self.err_path.read_text(errors="replace")

    def until(self, predicate: Callable[[], Any], what: str, seconds: float = DEADLINE) -> Any:
        """``wait_for`` that fails at once, with the output, if the conductor exits first."""

        def check() -> Any:
            value = predicate()
            if not value and not self.alive():
                value = predicate()  # it may have happened just before the exit
                assert value, f"the conductor ended before {what}:\n{self.output()}"
            return value

        return wait_for(check, seconds, what)

    def output(self) -> str:
        return f"exit {self.proc.poll()}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


@contextlib.contextmanager
def conductor(
    *args: str | Path,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    command: str = "sweep",
    verbose: int = 0,
) -> Iterator[Conductor]:
    """Start ``python -m ductaflow COMMAND ARGS`` in ``cwd``, in its own process group; on leaving,
    whatever happened in the test, SIGKILL the group (its loky workers, zygotes, kernels and
    Dask workers too), so that no process outlives the test that started it."""
    logs = cwd / ".conductor"
    logs.mkdir(exist_ok=True)
    n = len(list(logs.glob("*.out")))
    out_path, err_path = logs / f"{n}.out", logs / f"{n}.err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ductaflow", *["-v"] * verbose, command, *map(str, args)],
            cwd=cwd,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=None if env is None else {**os.environ, **env},
            start_new_session=True,
        )
    c = Conductor(proc, out_path, err_path)
    try:
        yield c
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)


def kernels_under(base: Path) -> list[int]:
    """Pids of live kernel processes whose working directory is under ``base``."""
    pids = []
    base = base.resolve()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            if b"ipykernel" not in cmdline:
                continue
            stat = Path(f"/proc/{entry}/stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] == "Z":
                continue  # a zombie is dead, waiting for its parent to reap it
            cwd = Path(os.readlink(f"/proc/{entry}/cwd"))
        except OSError:
            continue
        if cwd == base or base in cwd.parents:
            pids.append(int(entry))
    return pids


def wait_no_kernels(base: Path, seconds: float = 60.0) -> list[int]:
    """Poll until no kernel runs under ``base``; the pids still alive at the deadline."""
    deadline = time.monotonic() + seconds
    while (pids := kernels_under(base)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return pids


def outputs_text(nb_path: Path) -> str:
    """All stream and text outputs of a saved notebook ('' while it does not exist)."""
    try:
        nb = json.loads(nb_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    parts = []
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            text = out.get("text", "")
            parts.append("".join(text) if isinstance(text, list) else text)
    return "".join(parts)


def started(hold: Path) -> set[int]:
    """The ``x`` of every hold.py run that is waiting (or waited) in ``hold``."""
    return {int(p.name.split("-")[1]) for p in hold.glob("started-*")}


def release(hold: Path, x: int | str = "all") -> None:
    (hold / f"release-{x}").touch()


@dataclass(frozen=True)
class Backend:
    """One way a sweep executes, and how to tell from its run records that it really did.

    ``warm``: kernels forked from a zygote (the flow records its kernel's parent); ``threads``:
    runs driven from the conductor's own threads (``status.json`` ``pid`` is the conductor).
    A sweep of no more runs than ``-j`` starts standard kernels whatever was asked
    (``executor.execute_sweep``), so backend tests run more runs than ``JOBS``.
    """

    id: str
    flags: tuple[str, ...]
    warm: bool
    threads: bool
    env: tuple[tuple[str, str], ...] = ()

    JOBS = 2

    def args(self, *extra: str) -> tuple[str, ...]:
        """The sweep's flags on this backend (no report: its tests are elsewhere, and writing
        one costs a conductor a second or two)."""
        return ("-j", str(self.JOBS), "--no-progress", "--no-report", *self.flags, *extra)

    @property
    def environ(self) -> dict[str, str]:
        return dict(self.env)

    def assert_mode(self, root: RunsRoot, conductor_pid: int, runs: list[Path]) -> None:
        """Each run in ``runs`` ran the way this backend promises (from its own records)."""
        assert runs, "no run to check the kernel mode of"
        for run_dir in runs:
            status = root.status(run_dir)
            results = root.results(run_dir)
            assert status.get("status") == "ok", (run_dir, status.get("status"))
            flows = status["flows"]
            assert all(f["kernel_start_s"] is not None for f in flows), flows
            if self.threads:
                assert status["pid"] == conductor_pid, f"{self.id}: run not on a conductor thread"
            else:
                assert status["pid"] != conductor_pid, f"{self.id}: run in the conductor"
            assert results["forked"] is self.warm, f"{self.id}: forked={results['forked']}"
            if not self.warm:  # a standard kernel is the worker's own child
                assert results["kernel_ppid"] == status["pid"], (self.id, status, results)


def slurm_up() -> str | None:
    """None when the single-node Slurm of tests/slurm/start.sh is up, else why not."""
    if not Path(SLURM_CONF).exists():
        return f"no {SLURM_CONF}: tests/slurm/start.sh has not run"
    try:
        proc = subprocess.run(
            [str(REPO / "tests" / "slurm" / "start.sh"), "status"],
            capture_output=True, text=True, timeout=30,
            env={**os.environ, "SLURM_CONF": SLURM_CONF},
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"tests/slurm/start.sh status: {exc}"
    if proc.returncode != 0:
        return f"Slurm is down (tests/slurm/start.sh status: exit {proc.returncode})"
    return None


BACKENDS = [
    pytest.param(Backend("warm-threads", (), warm=True, threads=True), id="warm-threads"),
    pytest.param(
        Backend("standard-loky", ("--no-warm", "--backend", "loky"), warm=False, threads=False),
        id="standard-loky",
    ),
    pytest.param(
        Backend("warm-loky", ("--backend", "loky"), warm=True, threads=False), id="warm-loky"
    ),
    pytest.param(
        Backend("dask-local", ("--backend", "dask-local"), warm=True, threads=False),
        id="dask-local",
        marks=pytest.mark.distributed,
    ),
    pytest.param(
        Backend(
            "slurm",
            ("--backend", "slurm", "--slurm-time", "20"),
            warm=True,
            threads=False,
            env=(("SLURM_CONF", SLURM_CONF),),
        ),
        id="slurm",
        marks=[pytest.mark.distributed, pytest.mark.slurm],
    ),
]
