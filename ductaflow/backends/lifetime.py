"""On a SLURM worker: stop taking runs while there is time to finish them, so no run is cut.

SLURM ends a job at its time limit, whatever the job is doing. The job script exports when that
is (``DUCTAFLOW_JOB_END``, seconds since the epoch; ``slurm.py`` writes it from SLURM's own end
time, or from the start and ``--slurm-time``). Before each run the worker asks
``WorkerLifetime.admit``: the run goes ahead while the time left is at least a margin plus the
longest run this worker has executed so far. Otherwise the worker *drains*: the run goes back to
the scheduler for another worker (``distributed.Reschedule``), this worker takes no new run, and
once none of its runs is executing it closes gracefully. Its job ends, and dask-jobqueue starts a
fresh one in its place while runs remain.

Dask's own ``--lifetime`` is not used: it retires a worker at a fixed time, which stops the run it
is executing ("Tried retiring worker ..., but 1 tasks could not be moved").

Settings, in the workers' environment (``sbatch`` passes the submitter's on):
``DUCTAFLOW_JOB_MARGIN_S`` (default: 5 % of the job's time, within 5 s to 2 min) and
``DUCTAFLOW_RUN_ESTIMATE_S`` (the least a run is expected to take, before and after runs have
been timed; a worker's first run goes ahead all the same, unless even the margin is not left).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

__all__ = [
    "JOB_END_ENV",
    "MARGIN_ENV",
    "RUN_ESTIMATE_ENV",
    "WorkerLifetime",
    "refuse_run",
    "worker_lifetime",
]

log = logging.getLogger("ductaflow")

#: When SLURM ends this worker's job, in seconds since the epoch (set by the job script).
JOB_END_ENV = "DUCTAFLOW_JOB_END"
#: Seconds kept free at the end of a job: a run must end this long before the job does.
MARGIN_ENV = "DUCTAFLOW_JOB_MARGIN_S"
#: Seconds a run is expected to take, before this worker has timed one.
RUN_ESTIMATE_ENV = "DUCTAFLOW_RUN_ESTIMATE_S"
#: Seconds a refused run waits before it goes back to the scheduler (it may come back here
#: until the scheduler knows this worker is closing; the wait keeps that from spinning).
REFUSE_WAIT_S = 0.5


def _seconds(environ: Mapping[str, str], name: str) -> float | None:
    try:
        value = float(environ.get(name, ""))
    except ValueError:
        return None
    return value if value >= 0 else None


class WorkerLifetime:
    """Whether this worker may begin another run before its job ends (one per worker process).

    ``end``: the job's end (epoch seconds), None for a worker without a time limit.
    """

    def __init__(
        self, end: float | None, margin: float, estimate: float = 0.0, *, clock: Any = time.time
    ) -> None:
        self.end, self.margin, self.clock = end, margin, clock
        #: the longest run executed here so far (or the estimate given)
        self.longest = estimate
        self.draining = False
        #: admitted runs executing now, and those that ended
        self.running = self.ran = 0
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> WorkerLifetime:
        end = _seconds(environ, JOB_END_ENV)
        margin = _seconds(environ, MARGIN_ENV)
        if margin is None:
            total = (end - time.time()) if end is not None else 0.0
            margin = min(120.0, max(5.0, 0.05 * total))
        return cls(end, margin, _seconds(environ, RUN_ESTIMATE_ENV) or 0.0)

    def left(self) -> float | None:
        """Seconds until the job ends, None without a limit."""
        return None if self.end is None else self.end - self.clock()

    def admit(self) -> bool:
        """True: begin the run (then call ``finished``). False: this worker drains from now on."""
        with self._lock:
            left = self.left()
            # a worker's first run always goes ahead: were it refused on an estimate alone,
            # every fresh job might refuse it in turn
            short = left is not None and left < self.margin + self.longest
            if not self.draining and short and (self.ran or left < self.margin):
                self.draining = True
                log.info(
                    "worker: %.0f s left in the job, a run takes up to %.0f s (+%.0f s margin): "
                    "taking no more runs", left, self.longest, self.margin,
                )  # fmt: skip
            if self.draining:
                return False
            self.running += 1
            return True

    def finished(self, seconds: float) -> None:
        """An admitted run ended after ``seconds``."""
        with self._lock:
            self.running -= 1
            self.ran += 1
            self.longest = max(self.longest, seconds)
            self._idle.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no admitted run is executing; True when none is."""
        with self._lock:
            return self._idle.wait_for(lambda: self.running == 0, timeout)


@functools.cache
def worker_lifetime() -> WorkerLifetime:
    """This worker process's lifetime, read once from its job's environment."""
    return WorkerLifetime.from_env()


@functools.cache
def _close_when_idle(lifetime: WorkerLifetime) -> None:
    """Close this Dask worker gracefully once its runs have ended (once per worker)."""
    from distributed import get_worker

    worker = get_worker()

    def close() -> None:
        lifetime.wait_idle()
        log.info("worker %s: its job's time is nearly up; closing", worker.address)
        worker.loop.add_callback(worker.close_gracefully, reason="ductaflow: job time nearly up")

    threading.Thread(target=close, name="ductaflow-drain", daemon=True).start()


def refuse_run() -> None:
    """In a Dask task: give the run back to the scheduler and close this worker when idle."""
    from distributed import Reschedule

    lifetime = worker_lifetime()
    with contextlib.suppress(ValueError):  # not in a Dask worker: nothing to close
        _close_when_idle(lifetime)
    time.sleep(REFUSE_WAIT_S)
    raise Reschedule()
