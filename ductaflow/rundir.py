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
import errno
import json
import logging
import os
import platform
import socket
import sys
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .errors import StorageError
from .spec import RunResult

try:  # POSIX only; elsewhere runs are not claimed (documented).
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "CONFIG_FILE",
    "LABELS_FILE",
    "LOCK_FILE",
    "STATUS_FILE",
    "STORAGE_ERRNOS",
    "RunLock",
    "as_storage_error",
    "atomic_write_text",
    "attempt_entry",
    "file_lock",
    "is_claimed",
    "move_aside",
    "provenance",
    "read_status",
    "read_statuses",
    "storage_error",
    "write_json",
    "write_status",
]

log = logging.getLogger("ductaflow")

CONFIG_FILE = "CONFIG.json"
STATUS_FILE = "status.json"
#: a run's index columns that are not config keys (``sample``, ``trial``, ...): ``RunSpec.labels``
LABELS_FILE = "labels.json"
LOCK_FILE = ".lock"


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename.

    A disk that refuses (full, read-only, permission) raises ``StorageError`` (an ``OSError``).
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        refused = as_storage_error(exc, path, "write")
        if refused is not None:
            raise refused from None
        raise


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically; text that is not valid UTF-8 (a lone surrogate) is kept as an
    ``\\uXXXX`` escape, so the file is always valid UTF-8 and reads back to the same data."""
    text = json.dumps(data, indent=2, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(data, indent=2, ensure_ascii=True)
    atomic_write_text(path, text + "\n")


#: errnos that mean "the file system refused", not "ductaflow has a bug"
STORAGE_ERRNOS = {
    errno.ENOSPC: "the disk is full; free some space",
    errno.EDQUOT: "the disk quota is exceeded; free some space",
    errno.EROFS: "the file system is read-only; use a writable runs root",
    errno.EACCES: "permission denied; check the owner and mode of the runs root",
    errno.EPERM: "operation not permitted; check the owner and mode of the runs root",
}


def storage_error(path: Path, exc: OSError, doing: str) -> StorageError:
    """A one-line ``StorageError`` for an ``OSError`` met while ``doing`` something to ``path``."""
    fix = STORAGE_ERRNOS.get(exc.errno or 0, "check the disk and the runs root")
    reason = exc.strerror or type(exc).__name__
    return StorageError(f"{path}: cannot {doing} ({reason}): {fix}", exc.errno)


def as_storage_error(exc: BaseException, path: Path, doing: str) -> StorageError | None:
    """``exc`` as a ``StorageError`` when it is the disk refusing (see ``STORAGE_ERRNOS``)."""
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS:
        return storage_error(path, exc, doing)
    return None


def move_aside(path: Path) -> Path:
    """Rename ``path`` (something in the way) to a free ``<name>.broken[-N]`` beside it."""
    for n in range(1000):
        target = path.with_name(f"{path.name}.broken" + (f"-{n}" if n else ""))
        if not os.path.lexists(target):
            os.rename(path, target)
            return target
    raise StorageError(f"{path}: in the way, and no free name to move it aside; remove it")


def provenance() -> dict[str, str | None]:
    """Where and with what a run executed (``job_id``: the SLURM job, when in one)."""
    from . import __version__

    return {
        "ductaflow_version": __version__,
        "python_version": platform.python_version(),
        "python": sys.executable,
        "host": socket.gethostname(),
        "job_id": os.environ.get("SLURM_JOB_ID") or None,
    }


def attempt_entry(status: dict[str, Any]) -> dict[str, Any]:
    """One entry of ``status.json``'s ``attempt_log``: when, where and how one attempt ended.

    ``status`` is what ``status.json`` says of that attempt (``started``, ``finished``,
    ``host``, ``job_id``, ``status``, ``error``).
    """
    return {
        "started": status.get("started"),
        "ended": status.get("finished"),
        "host": status.get("host"),
        "job_id": status.get("job_id"),
        "status": status.get("status"),
        "error": status.get("error"),
    }


def write_status(result: RunResult, extra: dict[str, Any] | None = None) -> None:
    data = result.to_json()
    data.update(extra or {})
    write_json(result.run_dir / STATUS_FILE, data)


def read_status(run_dir: Path) -> dict[str, Any] | None:
    """The run's ``status.json`` as a dict, or None when it is missing or unreadable."""
    return _read_status_at(os.path.join(run_dir, STATUS_FILE))


def read_statuses(run_dirs: Iterable[Path]) -> list[dict[str, Any] | None]:
    """``read_status`` of many run directories, in their order, at the cost of the ones that
    exist: each parent folder is listed once (``os.scandir``) and only the ``status.json`` of a
    directory in it is opened (planning 100,000 runs of which half are new opened 100,000
    files, and failed on half of them)."""
    listed: dict[str, set[str]] = {}
    out: list[dict[str, Any] | None] = []
    for run_dir in run_dirs:
        path = str(run_dir)
        parent, _, name = path.rpartition(os.sep)
        parent = parent or os.curdir
        names = listed.get(parent)
        if names is None:
            try:
                with os.scandir(parent) as entries:
                    names = listed[parent] = {e.name for e in entries}
            except OSError:  # no sweep folder yet (or not one to list): nothing in it
                names = listed[parent] = set()
        out.append(_read_status_at(os.path.join(path, STATUS_FILE)) if name in names else None)
    return out


def _read_status_at(path: str) -> dict[str, Any] | None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:  # unbuffered: a status file is read whole, most often in one read
        chunks = [os.read(fd, 65536)]
        while len(chunks[-1]) == 65536:
            chunks.append(os.read(fd, 65536))
        data = json.loads(b"".join(chunks).decode("utf-8"))
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)
    return data if isinstance(data, dict) else None


class RunLock:
    """An exclusive, non-blocking claim on a run directory (``flock`` on ``.lock``)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Claim the run; False when another process holds it. ``StorageError`` when the disk
        refuses the lock file."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            refused = as_storage_error(exc, self.path, "create the run's lock file")
            if refused is not None:
                raise refused from None
            raise
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
    """Hold an exclusive ``flock`` on ``path`` (created if missing), waiting for it.

    A directory where the lock file belongs is moved aside (it holds no lock). Raises
    ``StorageError`` when the lock file cannot be created (read-only, full, permission).
    """
    try:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except IsADirectoryError:
            target = move_aside(path)
            log.warning("%s: a directory in place of a lock file; moved it to %s", path, target)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except StorageError:
        raise
    except OSError as exc:
        raise storage_error(path, exc, "create the lock file") from None
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
