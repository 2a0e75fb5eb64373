"""Runs on threads of the conductor: a ``concurrent.futures`` pool that can stop its runs.

Warm runs go here by default: one zygote in this process forks all their kernels, where worker
processes would each add their own start-up and their own zygote (``benchmarks/README.md``).
With ``ahead``, the runs next in line (one per thread) get their kernels forked while the runs
before them execute (``task.start_ahead``), so that a run never waits for its kernel to start.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from ..spec import Outcome, RunSpec
from .base import Backend, Task

__all__ = ["AHEAD_POLL_S", "ThreadsBackend"]

#: Seconds between attempts to fork the kernels of the runs next in line while the zygote boots.
AHEAD_POLL_S = 0.05


class ThreadsBackend(Backend):
    """``n_jobs`` threads of this process; at most ``n_jobs`` runs are submitted at a time, so
    none waits in a queue. Stopping (Ctrl-C, SIGTERM, ``stop()``) sets ``stop_event``: the runs
    in flight stop, record themselves ``interrupted`` and are waited for."""

    name = "threading"

    def __init__(self, n_jobs: int) -> None:
        self.n_jobs = n_jobs
        self.stop_event = threading.Event()
        self._outcomes: Generator[Outcome, None, None] | None = None
        #: called with each run next in line, until it says True (its kernel is forked, or
        #: will not be), before it is submitted; only for a sequence of runs: an optimize
        #: sweep's study is never asked for a trial before a slot is free
        self.ahead: Callable[[RunSpec], bool] | None = None

    def run(self, specs: Iterable[RunSpec], task: Task) -> Iterator[Outcome]:
        self._outcomes = self._run(specs, task)
        return self._outcomes

    def _run(self, specs: Iterable[RunSpec], task: Task) -> Generator[Outcome, None, None]:
        assert self.stop_event is not None
        ahead = self.ahead if isinstance(specs, Sequence) else None
        todo = iter(specs)
        upcoming: deque[RunSpec] = deque()  # next in line, their kernels forked ahead
        running: set[Future[Outcome]] = set()
        pool = ThreadPoolExecutor(self.n_jobs, thread_name_prefix="ductaflow-run")
        try:
            while True:
                free = self.n_jobs - len(running)
                for spec in itertools.islice(itertools.chain(_drain(upcoming), todo), free):
                    running.add(pool.submit(task, spec))
                waiting = False  # for the zygote, to fork the kernels of the runs next in line
                if ahead is not None:
                    upcoming.extend(itertools.islice(todo, self.n_jobs - len(upcoming)))
                    waiting = not all([ahead(spec) for spec in upcoming])  # each one once
                if not running:
                    return
                poll = AHEAD_POLL_S if waiting else None
                done, running = wait(running, timeout=poll, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        except BaseException:
            self.stop_event.set()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def stop(self) -> None:
        if self._outcomes is not None:
            self._outcomes.close()  # GeneratorExit in the pool loop: the runs stop


def _drain(queue: deque[RunSpec]) -> Iterator[RunSpec]:
    """Take items from the front of ``queue`` as they are asked for."""
    while queue:
        yield queue.popleft()
