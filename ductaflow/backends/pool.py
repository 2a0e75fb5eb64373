"""Runs on a joblib pool (loky worker processes by default), or one after another here.

``n_jobs=1`` (or ``sequential``) is a plain loop that a debugger can step through.

A pool worker lives no longer than its conductor: loky hands each worker a few tasks ahead, and
a worker whose conductor was killed would start them. ``PoolTask`` refuses them: a worker whose
parent is no longer the conductor exits before it claims the run. The run it was executing when
the conductor died is stopped, recorded and its kernel killed by the engine, and an idle worker
exits within a second (``task.orphan_guard``), never halfway through recording a run.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass

from ..process import SCRATCH_ENV
from ..spec import INTERRUPTED, Outcome, RunSpec
from .base import Backend, Task

__all__ = ["JoblibBackend", "PoolTask", "SequentialBackend"]


class SequentialBackend(Backend):
    """One run after another in this thread."""

    name = "sequential"

    def run(self, specs: Iterable[RunSpec], task: Task) -> Iterator[Outcome]:
        for spec in specs:
            outcome = task(spec)
            yield outcome
            if outcome.result is not None and outcome.result.status == INTERRUPTED:
                # in this thread only Ctrl-C or SIGTERM interrupts a run: stop the sweep too
                raise KeyboardInterrupt(f"{spec.run_dir}: interrupted")


class JoblibBackend(Backend):
    """A joblib pool: ``backend`` (loky, multiprocessing, ...) or, with None, joblib's current
    one (``joblib.parallel_config``). Outcomes come back as runs finish; a worker process that
    dies raises (loky's ``TerminatedWorkerError``) and takes its siblings' runs with it."""

    def __init__(self, n_jobs: int, backend: str | None = None) -> None:
        self.n_jobs = n_jobs
        self.backend = backend
        self.name = backend or "joblib"

    def run(self, specs: Iterable[RunSpec], task: Task) -> Iterator[Outcome]:
        from joblib import Parallel, delayed

        if not isinstance(specs, Sequence) and self.backend in (None, "loky"):
            yield from self._pulled(specs, task)
            return

        # a lazy iterable (trials asked as they are pulled): no run waits ahead of a free slot
        ahead = "2*n_jobs" if isinstance(specs, Sequence) else "n_jobs"
        parallel = Parallel(
            n_jobs=self.n_jobs, backend=self.backend, return_as="generator_unordered",
            batch_size=1, pre_dispatch=ahead,
        )  # fmt: skip
        guarded = PoolTask(task, os.getpid(), os.environ.get(SCRATCH_ENV))
        yield from parallel(delayed(guarded)(s) for s in specs)

    def _pulled(self, specs: Iterable[RunSpec], task: Task) -> Iterator[Outcome]:
        """A lazy iterable (an optimize sweep's trials) on loky's executor: a spec is pulled
        only after the outcome of the run whose slot it takes was given back, which joblib's
        own dispatching (from its callback thread, before the outcome is handed on) cannot
        promise. A worker that dies raises here too (``TerminatedWorkerError``)."""
        from joblib.externals.loky import get_reusable_executor

        executor = get_reusable_executor(max_workers=self.n_jobs)
        guarded = PoolTask(task, os.getpid(), os.environ.get(SCRATCH_ENV))
        todo = iter(specs)
        running: set[Future[Outcome]] = set()
        try:
            while True:
                for spec in itertools.islice(todo, self.n_jobs - len(running)):
                    running.add(executor.submit(guarded, spec))
                if not running:
                    return
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        finally:
            for future in running:
                future.cancel()


@dataclass(frozen=True)
class PoolTask:
    """The sweep's task as a pool worker executes it: never for a dead conductor.

    ``scratch``: the sweep's scratch directory (a reused worker was started by an earlier sweep,
    with that sweep's environment).
    """

    task: Task
    conductor: int
    scratch: str | None = None

    def __call__(self, spec: RunSpec) -> Outcome:
        if os.getpid() != self.conductor:  # a worker (joblib may run a task in this process)
            if os.getppid() != self.conductor:
                os._exit(0)  # orphaned: nobody waits for this run; it is left as it was
            if self.scratch:
                os.environ[SCRATCH_ENV] = self.scratch
        return self.task(spec)
