"""Run directories: their file names, atomic writes, and the lock that claims a run.

A run directory holds ``CONFIG.json``, ``status.json`` and one ``<flow>_executed.ipynb`` per flow.
Files that other tools read are written to a temporary file in the same directory and renamed into
place, so a reader never sees half a file, whatever happens to the writer.

A run is claimed with an exclusive ``flock`` on ``.lock`` for as long as it executes. The kernel
releases the lock when the holder dies, so a claim can never go stale, and two conductors on one
runs root never execute the same run directory at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .spec import RunResult

try:  # POSIX only; elsewhere runs are not claimed (documented).
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "CONFIG_FILE",
    "LOCK_FILE",
    "STATUS_FILE",
    "RunLock",
    "atomic_write_text",
    "file_lock",
    "is_claimed",
    "provenance",
    "read_status",
    "write_json",
    "write_status",
]

CONFIG_FILE = "CONFIG.json"
STATUS_FILE = "status.json"
LOCK_FILE = ".lock"


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def provenance() -> dict[str, str]:
    """Where and with what a run executed."""
    from . import __version__

    return {
        "ductaflow_version": __version__,
        "python_version": platform.python_version(),
        "python": sys.executable,
        "host": socket.gethostname(),
    }


def write_status(result: RunResult, extra: dict[str, Any] | None = None) -> None:
    data = result.to_json()
    data.update(extra or {})
    write_json(result.run_dir / STATUS_FILE, data)


def read_status(run_dir: Path) -> dict[str, Any] | None:
    """The run's ``status.json`` as a dict, or None when it is missing or unreadable."""
    try:
        with open(run_dir / STATUS_FILE, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class RunLock:
    """An exclusive, non-blocking claim on a run directory (``flock`` on ``.lock``)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Claim the run; False when another process holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing), waiting for it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def is_claimed(run_dir: Path) -> bool:
    """Whether some live process holds the run's lock right now."""
    if fcntl is None or not (run_dir / LOCK_FILE).exists():
        return False
    lock = RunLock(run_dir)
    try:
        got = lock.acquire()
    except OSError:
        return False
    if got:
        lock.release()
    return not got
