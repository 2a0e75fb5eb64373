"""Runs on Dask: a scheduler you have (``dask``) or a LocalCluster of this machine (``dask-local``).

The conductor submits one Dask task per run with ``Client.submit`` (``pure=False``) and takes the
outcomes back with ``as_completed``, so the index and the progress bar move as runs finish. The
runs directory is on a filesystem that the workers share; each run's row goes into the index from
its worker (under the index's lock), so a run that finishes after its conductor was killed is
indexed all the same.
On a worker, the task goes to a reused run process (``runprocess``), which is what lets a run be
stopped.

- A run that raises, times out or kills its kernel is recorded by the engine; the task returns
  normally, so Dask never sees an error.
- A run whose run process dies (a flow killed it) goes again once, and is recorded ``died`` by
  its worker the second time, like a run whose ``loky`` worker dies. When a Dask worker dies,
  its run processes get SIGTERM and record their runs ``interrupted``; Dask runs those tasks
  again elsewhere, and after ``distributed.scheduler.allowed-failures`` worker deaths the
  conductor records the run ``died``.
- Ctrl-C in the conductor (or ``stop()``) cancels the queued tasks and sends SIGINT (SIGTERM
  when SIGTERM stopped the conductor) to this sweep's run processes on every worker, then waits
  for them to record their runs.

``dask`` needs ``client=`` or ``scheduler=ADDRESS`` (extra ``ductaflow[dask]``); ``dask-local``
starts ``n_jobs`` one-thread worker processes. SLURM (``slurm.py``) is a Dask cluster too.
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
import logging
import operator
import os
import pickle
import signal
import sys
import threading
import uuid
from collections.abc import Generator, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from ..lifecycle import settle_killed
from ..process import interrupting_signal, now, scratch_dir
from ..spec import Outcome, RunSpec
from .base import Backend, Task
from .runprocess import run_remote, stop_sweep

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["STOP_GRACE_S", "DaskBackend", "dask_setup", "require"]

log = logging.getLogger("ductaflow")

#: Seconds the conductor gives stopped runs to record themselves after Ctrl-C.
STOP_GRACE_S = 20.0


def require(module: str, backend: str, extra: str = "dask") -> Any:
    """Import ``module`` of an optional extra, or say in one line how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise InputError(
            f"--backend {backend} needs {module}: pip install 'ductaflow[{extra}]'"
        ) from None


def dask_setup(worker: Any) -> None:
    """Dask preload hook (``preload=["ductaflow.backends.dask"]``): ignore Ctrl-C in the terminal.

    The workers of a ``dask-local`` cluster share the conductor's process group; Ctrl-C is for the
    conductor, which then stops the runs and closes the cluster itself.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


class DaskBackend(Backend):
    """One Dask task per run, on a client given, a scheduler's address, or a cluster started here.

    ``kind`` is ``dask`` (``client`` or ``scheduler``; ``n_jobs`` is ignored: the cluster's
    threads decide) or ``dask-local`` (``n_jobs`` workers of one thread each). Raises
    ``InputError`` when the extra is missing or the scheduler cannot be reached.
    """

    local = False
    #: the extra that brings what this backend imports
    extra = "dask"

    def __init__(
        self,
        kind: str,
        n_jobs: int,
        *,
        client: Client | None = None,
        scheduler: str | None = None,
    ) -> None:
        self.name = kind
        self.n_jobs = n_jobs
        self.client = client
        self.scheduler = scheduler
        self._outcomes: Generator[Outcome, None, None] | None = None
        self._signum = signal.SIGINT

    def run(self, specs: Iterable[RunSpec], task: Task) -> Iterator[Outcome]:
        self._outcomes = self._run(specs, task)
        return self._outcomes

    def stop(self) -> None:
        # called while the KeyboardInterrupt is handled: the runs get the signal it came from
        self._signum = interrupting_signal(sys.exc_info()[1])
        if self._outcomes is not None:
            self._outcomes.close()  # the generator's ``finally`` stops the runs on the cluster

    def _run(self, specs: Iterable[RunSpec], task: Task) -> Generator[Outcome, None, None]:
        # a sequence is submitted at once (the scheduler queues it); a lazy iterable (trials
        # asked as they are pulled) one spec per free slot, n_jobs in flight
        window = None if isinstance(specs, Sequence) else self.n_jobs
        count = operator.length_hint(specs, self.n_jobs)
        todo = iter(specs)
        first = next(todo, None)
        if first is None:
            return
        distributed = require("distributed", self.name, self.extra)
        since = now()
        n_workers = max(1, min(self.n_jobs, count))
        runs_root = first.run_dir.parent.parent  # <root>/<sweep>/<run>
        if self.name == "dask":
            log.info("--backend dask: the cluster's worker threads set how many runs run at once")
        # pickled here and unpickled in the run process: a worker never imports the engine
        payload = pickle.dumps(task)
        with _quiet("distributed", "bokeh"), self._connect(n_workers, runs_root) as client:
            token = uuid.uuid4().hex
            pending: dict[Any, RunSpec] = {}

            def submit(spec: RunSpec) -> Any:
                key = f"ductaflow-{spec.name}-{token[:8]}"
                future = client.submit(run_remote, payload, spec, token, key=key, pure=False)
                pending[future] = spec
                return future

            try:
                submit(first)
                for spec in itertools.islice(todo, None if window is None else window - 1):
                    submit(spec)
                finished = distributed.as_completed(list(pending), loop=client.loop)
                for future in finished:
                    spec = pending.pop(future)
                    try:
                        answer = future.result()
                        # nothing kept on the worker: a worker that drains has no data to move
                        future.release()
                        outcome = pickle.loads(answer) if isinstance(answer, bytes) else answer
                    except Exception as exc:  # KilledWorker: the workers running it kept dying
                        log.warning("%s: lost on the cluster (%s)", spec.name, exc)
                        error = f"DeadWorker: the workers running it died ({type(exc).__name__})"
                        outcome = settle_killed(spec, since, error)
                    yield outcome
                    if window is not None:
                        for spec in itertools.islice(todo, max(0, window - len(pending))):
                            finished.add(submit(spec))
            finally:
                if pending:  # Ctrl-C here (or SIGTERM), or stop() closing this generator
                    exc = sys.exc_info()[1]
                    signum = self._signum if isinstance(exc, GeneratorExit) else None
                    _stop(client, list(pending), token, signum or interrupting_signal(exc))

    @contextlib.contextmanager
    def _connect(self, n_workers: int, runs_root: Path) -> Iterator[Client]:
        """A client; what is started here is closed here, what was given is kept."""
        from distributed import Client

        if self.name == "dask":
            if self.client is not None:
                _check_workers(self.client, runs_root)
                yield self.client
                return
            if not self.scheduler:
                raise InputError(
                    "--backend dask needs --scheduler ADDRESS (or client= from Python)"
                )
            try:
                own = Client(self.scheduler, timeout="30s", set_as_default=False)
            except (OSError, TimeoutError) as exc:
                raise InputError(f"--scheduler {self.scheduler}: cannot connect ({exc})") from None
            with own:
                _check_workers(own, runs_root)
                yield own
            return
        cluster = self.start_cluster(n_workers, runs_root)
        try:
            with Client(cluster, set_as_default=False) as own:
                yield own
        finally:
            cluster.close()

    def start_cluster(self, n_workers: int, runs_root: Path) -> Any:
        """The cluster this backend starts and closes (``dask-local``: a LocalCluster)."""
        if self.name != "dask-local":
            raise InputError(f"backend {self.name!r}: not a distributed backend")
        import dask
        from distributed import LocalCluster

        # the scheduler's and the workers' dask-scratch-space go with the sweep (process.py)
        with dask.config.set({"temporary-directory": str(scratch_dir() / "dask")}):
            return LocalCluster(
                n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None,
                silence_logs=logging.ERROR, preload=[__name__],  # see dask_setup
            )  # fmt: skip


@contextlib.contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """Keep Dask's INFO chatter (scheduler started, client connected, ...) out of our output."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    if not log.isEnabledFor(logging.DEBUG):
        for logger in loggers:
            logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _check_workers(client: Client, runs_root: Path) -> None:
    """Fail early when a connected worker cannot see the runs root (it must be shared)."""
    seen = client.run(os.path.isdir, str(runs_root), on_error="return")
    if not seen:
        log.info("no Dask worker connected yet; the runs wait for workers")
    blind = sorted(addr for addr, ok in seen.items() if ok is not True)
    if blind:
        raise InputError(
            f"{runs_root}: not found on worker {blind[0]} ({len(blind)} of {len(seen)} workers); "
            "the runs root must be on a filesystem the workers share"
        )


def _stop(client: Client, futures: list[Any], token: str, signum: int) -> None:
    """Cancel the queued runs and stop the running ones (their run processes get ``signum``)."""
    log.info("stopping %d runs on the cluster", len(futures))
    with contextlib.suppress(Exception):
        client.cancel(futures, force=True)
    try:
        client.run(stop_sweep, token, STOP_GRACE_S, int(signum), on_error="ignore")
    except Exception as exc:  # the cluster is gone; its runs went with it
        log.warning("could not reach the workers to stop the runs (%s)", exc)
