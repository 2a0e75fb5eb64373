"""Runs on a joblib pool (loky worker processes by default), or one after another here.

``n_jobs=1`` (or ``sequential``) is a plain loop that a debugger can step through.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from ..spec import INTERRUPTED, Outcome, RunSpec
from .base import Backend, Task

__all__ = ["JoblibBackend", "SequentialBackend"]


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

        # a lazy iterable (trials asked as they are pulled): no run waits ahead of a free slot
        ahead = "2*n_jobs" if isinstance(specs, Sequence) else "n_jobs"
        parallel = Parallel(
            n_jobs=self.n_jobs, backend=self.backend, return_as="generator_unordered",
            batch_size=1, pre_dispatch=ahead,
        )  # fmt: skip
        yield from parallel(delayed(task)(s) for s in specs)
