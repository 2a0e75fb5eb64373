"""On a Dask worker: each run goes to a *run process*, one per worker thread, started once and
reused, that executes the sweep's task (the same as ``loky`` executes, ``ductaflow.task``).

That is what lets a run be stopped: Dask cannot stop a running task, but a run process can be
sent SIGTERM, and then the engine records the run ``interrupted``, kills its kernel and saves its
notebook, as after Ctrl-C on one machine. A run process is in a session of its own and gets
SIGTERM when its worker dies (``PR_SET_PDEATHSIG``).

The worker imports neither the engine nor pandas: the task comes pickled and its outcome goes
back pickled. What a run whose run process died becomes is decided by ``ductaflow.lifecycle``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING

from ..lifecycle import settle, wait_released
from ..process import describe_exit, now, set_parent_death_signal
from ..spec import DIED, INTERRUPTED, Outcome, RunSpec
from .lifetime import refuse_run, worker_lifetime

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

__all__ = ["RUN_PROCESS_IDLE_S", "RunProcess", "run_remote", "serve", "stop_sweep"]

log = logging.getLogger("ductaflow")

#: Seconds a task rerun after its worker died waits for the old run process to let go of the run.
RECLAIM_WAIT_S = 30.0
#: Seconds a run process waits for its next run before it exits.
RUN_PROCESS_IDLE_S = 600.0

# The worker's own bookkeeping (one per worker process, shared by its threads).
_LOCK = threading.Lock()
#: Sweep tokens -> the run processes executing their runs on this worker now.
_ACTIVE: dict[str, set[RunProcess]] = {}
#: Tokens of sweeps whose conductor stopped them: their queued tasks must not start.
_STOPPED: set[str] = set()
_THREAD = threading.local()
_SERVE = "from ductaflow.backends.runprocess import serve; serve()"


def run_remote(payload: bytes, spec: RunSpec, token: str) -> bytes | Outcome | None:
    """The Dask task: execute one run in this worker thread's run process.

    ``payload`` is the pickled task; the answer is the pickled ``Outcome``, an ``Outcome``
    recorded here, or None when the sweep was stopped before the run began. A run whose run
    process dies goes again once in a new one, and is recorded ``died`` the second time, as a
    run whose ``loky`` worker dies. On a worker whose job ends too soon for another run, the
    run goes back to the scheduler instead (``lifetime``).
    """
    lifetime = worker_lifetime()
    if not lifetime.admit():
        refuse_run()  # raises distributed.Reschedule
    t0 = time.monotonic()
    try:
        return _run_remote(payload, spec, token)
    finally:
        lifetime.finished(time.monotonic() - t0)


def _run_remote(payload: bytes, spec: RunSpec, token: str) -> bytes | Outcome | None:
    since = now()
    why = ""
    for attempt in (1, 2):
        with _LOCK:
            if token in _STOPPED:
                return None  # nobody waits for it
        # a run process whose worker died may still be recording its run
        wait_released(spec.run_dir, RECLAIM_WAIT_S, poll=0.1)
        proc = _thread_run_process()
        with _LOCK:
            _ACTIVE.setdefault(token, set()).add(proc)
        try:
            answer = proc.run(payload, spec)
        finally:
            with _LOCK:
                _ACTIVE[token].discard(proc)
                if not _ACTIVE[token]:
                    del _ACTIVE[token]
        if answer is not None:
            return answer
        with _LOCK:
            stopped = token in _STOPPED
        if stopped:
            return settle(
                spec, since, INTERRUPTED, "Interrupted: the sweep was stopped", unstarted=True
            )
        why = proc.exit_description()
        if attempt == 1:
            log.warning("%s: its run process %s; it goes again", spec.name, why)
    error = f"DeadWorker: the run process running it died, twice: it {why}"
    return settle(spec, since, DIED, error, unstarted=True)


async def stop_sweep(token: str, grace: float, signum: int = signal.SIGTERM) -> int:
    """Run on every worker by the conductor: stop a sweep's runs here (their run processes get
    ``signum``, the signal that stopped the conductor); how many were running."""
    with _LOCK:
        _STOPPED.add(token)
        running = list(_ACTIVE.get(token, ()))
    for proc in running:
        proc.terminate(signum)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        with _LOCK:
            if not _ACTIVE.get(token):
                break
        await asyncio.sleep(0.05)
    return len(running)


def _thread_run_process() -> RunProcess:
    proc: RunProcess | None = getattr(_THREAD, "run_process", None)
    if proc is None or not proc.alive:
        proc = _THREAD.run_process = RunProcess()
    return proc


class RunProcess:
    """A child process that executes runs one at a time, in its main thread, for one worker thread.

    It is in a session of its own (a signal to the worker's process group does not reach it),
    gets SIGTERM when the thread that started it ends (its worker died: the run is recorded
    ``interrupted`` and Dask runs it again elsewhere), and exits after ``RUN_PROCESS_IDLE_S``
    without work.
    """

    def __init__(self) -> None:
        from multiprocessing.connection import Connection

        to_child, inbox = os.pipe()
        outbox, from_child = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _SERVE, str(to_child), str(from_child), str(os.getpid())],
                pass_fds=(to_child, from_child),
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            os.close(to_child)
            os.close(from_child)
        self._send: Connection = Connection(inbox, readable=False)
        self._recv: Connection = Connection(outbox, writable=False)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def run(self, payload: bytes, spec: RunSpec) -> bytes | None:
        """The run's pickled outcome, or None when the process died before it answered."""
        try:
            self._send.send((payload, spec))
        except OSError:
            return None
        while True:
            if self._recv.poll(0.5):
                try:
                    return self._recv.recv_bytes()
                except (EOFError, OSError):
                    return None
            if self.proc.poll() is not None:
                with contextlib.suppress(EOFError, OSError):
                    if self._recv.poll(0):
                        return self._recv.recv_bytes()
                return None

    def terminate(self, signum: int = signal.SIGTERM) -> None:
        with contextlib.suppress(OSError):
            self.proc.send_signal(signum)

    def exit_description(self) -> str:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        return describe_exit(self.proc.returncode)


def serve() -> None:
    """Main of a run process: ``python -c _SERVE IN_FD OUT_FD PARENT_PID``."""
    from multiprocessing.connection import Connection

    in_fd, out_fd, parent = (int(arg) for arg in sys.argv[1:4])
    # SIGTERM when the worker dies: the engine records a run that it stops ``interrupted`` and
    # kills its kernel; an idle run process just ends.
    set_parent_death_signal(signal.SIGTERM, parent)
    inbox = Connection(in_fd, writable=False)
    outbox = Connection(out_fd, readable=False)
    # the worker is gone, or a Ctrl-C passed on by the conductor came between runs
    with contextlib.suppress(EOFError, OSError, KeyboardInterrupt):
        while inbox.poll(RUN_PROCESS_IDLE_S):
            payload, spec = inbox.recv()
            task = pickle.loads(payload)
            outbox.send_bytes(pickle.dumps(task(spec)))  # the task never raises
