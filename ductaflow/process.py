"""Small facts about processes, shared by the engine, the warm kernels and the backends.

Standard library only: the zygote child (``ductaflow.zygote``) imports it too.

Scratch directories. Every temporary directory ductaflow makes (a kernel's sockets and
connection file, a zygote's log, a local Dask cluster's ``local_directory``) is under one root,
``$TMPDIR/ductaflow-<uid>/``, in a directory named after the process that owns it
(``<pid>-<start time>``). A sweep makes one for itself (``sweep_scratch``) and hands it to every
process it starts through ``DUCTAFLOW_SCRATCH``; it removes it at its end, whatever ends it. A
process killed before its end leaves its directory behind: the next sweep removes every
directory whose owner is no longer alive.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import re
import shutil
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

__all__ = [
    "SCRATCH_ENV",
    "describe_exit",
    "interrupting_signal",
    "now",
    "one_line",
    "owner_alive",
    "remove_stale_scratch",
    "scratch_dir",
    "scratch_root",
    "set_parent_death_signal",
    "signal_name",
    "strip_ansi",
    "sweep_scratch",
]

#: Names the scratch directory of the sweep a process works for (set by ``sweep_scratch``).
SCRATCH_ENV = "DUCTAFLOW_SCRATCH"

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
#: prctl option: a signal for this process when its parent dies (Linux)
_PR_SET_PDEATHSIG = 1


def now() -> str:
    """The current UTC time as ISO 8601 with milliseconds: how every record stamps its times."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def strip_ansi(text: str) -> str:
    """``text`` without terminal colour codes (IPython's tracebacks carry them)."""
    return _ANSI.sub("", text)


def one_line(text: str, limit: int = 300) -> str:
    """``text`` as one line of at most ``limit`` characters, colour codes and runs of space gone."""
    line = " ".join(strip_ansi(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def signal_name(signum: int) -> str:
    """``SIGKILL`` for 9; ``signal 77`` for a number with no name."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def describe_exit(code: int | None) -> str:
    """How a process ended, from its return code: ``was killed by SIGKILL``, ``exited with
    code 3``; ``stopped answering`` while it still runs (``None``)."""
    if code is None:
        return "stopped answering"
    if code < 0:
        return f"was killed by {signal_name(-code)}"
    return f"exited with code {code}"


def interrupting_signal(exc: BaseException | None) -> signal.Signals:
    """The signal behind a ``KeyboardInterrupt``: SIGTERM when the CLI's SIGTERM handler raised
    it (``stopped by SIGTERM``), else SIGINT (Ctrl-C); what a stopped sweep passes on to the run
    processes it stops, so that their runs are recorded as stopped by what stopped the sweep."""
    if isinstance(exc, KeyboardInterrupt) and "SIGTERM" in str(exc):
        return signal.SIGTERM
    return signal.SIGINT


def set_parent_death_signal(signum: int, parent: int, *, fallback: bool = True) -> None:
    """Have ``signum`` sent to this process when its parent ``parent`` dies.

    Linux arms it in the kernel (``PR_SET_PDEATHSIG``). Elsewhere, with ``fallback``, a daemon
    thread polls for the parent twice a second; without it, ``OSError`` is raised. If the parent
    is already gone when this is called, the signal is sent at once.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    except (OSError, AttributeError):
        if not fallback:
            raise

        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(0.5)
            os.kill(os.getpid(), signum)

        threading.Thread(target=watch, name="ductaflow-parent-watch", daemon=True).start()
    if os.getppid() != parent:  # it died before the signal was armed
        os.kill(os.getpid(), signum)


def scratch_root() -> Path:
    """``$TMPDIR/ductaflow-<uid>``, or under ``/tmp`` when ``$TMPDIR`` is too long for the Unix
    socket paths that go below it (at most ~100 bytes)."""
    base = tempfile.gettempdir()
    if len(base) > 40:
        base = "/tmp"
    return Path(base) / f"ductaflow-{os.getuid()}"


def _start_time(pid: int) -> str:
    """When ``pid`` started (clock ticks since boot, from ``/proc``), so that a reused pid is
    not taken for the process that made a directory; ``0`` where ``/proc`` is missing."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "0"


def owner_alive(name: str) -> bool:
    """Whether the process a scratch directory is named after (``<pid>-<start>``) still runs.

    A name that is not of that form is taken as alive: it is not ours to remove.
    """
    pid_text, _, start = name.partition("-")
    if not pid_text.isdigit() or not start.isdigit():
        return True
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return start == "0" or _start_time(pid) in (start, "0")


@functools.cache
def _own_dir(pid: int) -> Path:
    """This process's scratch directory, made once and removed at its exit."""
    root = scratch_root()
    root.mkdir(mode=0o700, exist_ok=True)
    path = root / f"{pid}-{_start_time(pid)}"
    path.mkdir(mode=0o700, exist_ok=True)

    def remove() -> None:
        if os.getpid() == pid:  # not in a forked child
            shutil.rmtree(path, ignore_errors=True)

    atexit.register(remove)
    return path


def scratch_dir(*, lasting: bool = False) -> Path:
    """Where this process makes its temporary directories: the sweep's (``DUCTAFLOW_SCRATCH``)
    or, outside a sweep, its own (removed at its exit).

    ``lasting``: for what outlives a sweep in the process that ran it (a zygote kept warm for
    the next one): its own directory there, the sweep's in the processes the sweep started.
    """
    given = os.environ.get(SCRATCH_ENV)
    if given:
        path = Path(given)
        if not (lasting and path.parent.name.startswith(f"{os.getpid()}-")):
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            return path
    return _own_dir(os.getpid())


def remove_stale_scratch() -> list[Path]:
    """Remove the scratch directories of processes that died without removing theirs."""
    root = scratch_root()
    try:
        entries = list(root.iterdir())
    except OSError:
        return []
    stale = [path for path in entries if not owner_alive(path.name)]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


@contextlib.contextmanager
def sweep_scratch() -> Iterator[Path]:
    """A scratch directory for one sweep, named for every process it starts, removed at its end.

    Leftovers of killed processes are removed first, and again at the end (a pool worker
    killed at Ctrl-C is gone by then).
    """
    remove_stale_scratch()
    path = _own_dir(os.getpid()) / f"sweep-{uuid.uuid4().hex[:8]}"
    path.mkdir(mode=0o700)
    before = os.environ.get(SCRATCH_ENV)
    os.environ[SCRATCH_ENV] = str(path)
    try:
        yield path
    finally:
        if before is None:
            os.environ.pop(SCRATCH_ENV, None)
        else:
            os.environ[SCRATCH_ENV] = before
        shutil.rmtree(path, ignore_errors=True)
        remove_stale_scratch()
