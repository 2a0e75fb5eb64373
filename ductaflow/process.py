"""Small facts about processes, shared by the engine, the warm kernels and the backends.

Standard library only: the zygote child (``ductaflow.zygote``) imports it too.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from datetime import datetime, timezone

__all__ = [
    "describe_exit",
    "now",
    "one_line",
    "set_parent_death_signal",
    "signal_name",
    "strip_ansi",
]

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
