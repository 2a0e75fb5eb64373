"""Runs on threads of the conductor: a ``concurrent.futures`` pool that can stop its runs.

Warm runs go here by default: one zygote in this process forks all their kernels, where worker
processes would each add their own start-up and their own zygote (``benchmarks/README.md``).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Generator, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from ..spec import Outcome, RunSpec
from .base import Backend, Task

__all__ = ["ThreadsBackend"]


class ThreadsBackend(Backend):
    """``n_jobs`` threads of this process; at most ``n_jobs`` runs are submitted at a time, so
    none waits in a queue. Stopping (Ctrl-C, SIGTERM, ``stop()``) sets ``stop_event``: the runs
    in flight stop, record themselves ``interrupted`` and are waited for."""

    name = "threading"

    def __init__(self, n_jobs: int) -> None:
        self.n_jobs = n_jobs
        self.stop_event = threading.Event()
        self._outcomes: Generator[Outcome, None, None] | None = None

    def run(self, specs: Iterable[RunSpec], task: Task) -> Iterator[Outcome]:
        self._outcomes = self._run(specs, task)
        return self._outcomes

    def _run(self, specs: Iterable[RunSpec], task: Task) -> Generator[Outcome, None, None]:
        assert self.stop_event is not None
        todo = iter(specs)
        running: set[Future[Outcome]] = set()
        pool = ThreadPoolExecutor(self.n_jobs, thread_name_prefix="ductaflow-run")
        try:
            while True:
                for spec in itertools.islice(todo, self.n_jobs - len(running)):
                    running.add(pool.submit(task, spec))
                if not running:
                    return
                done, running = wait(running, return_when=FIRST_COMPLETED)
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
