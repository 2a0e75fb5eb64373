"""The task that runs in a worker: claim one run, re-check it, execute it, index it.

Every backend runs this same task (``run_task``, bound to a sweep's settings with
``functools.partial``, pickled to worker processes). It never raises: whatever goes wrong
becomes an ``Outcome`` with a recorded result. The engine (nbclient, the kernels) is imported
only when a run really executes.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .index import IndexFile, build_row
from .lifecycle import classify, earlier_attempts
from .process import now
from .rundir import LABELS_FILE, RunLock, as_storage_error, read_status, write_json, write_status
from .spec import BUSY, FAILED, RAN, SKIPPED, Outcome, PlanState, RunOptions, RunResult, RunSpec

__all__ = ["orphan_guard", "run_task", "start_ahead"]

if TYPE_CHECKING:
    from .warm import KernelsAhead

log = logging.getLogger("ductaflow")


def run_task(
    spec: RunSpec,
    options: RunOptions,
    force: bool,
    since: str,
    conductor: int | None = None,
    index_root: Path | None = None,
    stop: threading.Event | None = None,
    ahead: KernelsAhead | None = None,
) -> Outcome:
    """Claim, re-check, execute and index one run. Never raises: every fault becomes a record.

    ``conductor``: the pid of the sweep's conductor; a pool worker whose parent it is stops its
    run when the conductor dies. ``index_root``: append the run's index row there from the
    worker, before the claim is released, so that once no process holds a run's claim its
    result is in the index, even if the conductor was killed meanwhile. ``stop``: set by the
    conductor to stop a run executing in one of its threads. ``ahead``: kernels forked ahead
    of their runs in this process (``start_ahead``); the run adopts its own, or it is killed.
    """
    try:
        spec.run_dir.mkdir(parents=True, exist_ok=True)
        if spec.labels and not (spec.run_dir / LABELS_FILE).exists():
            write_json(spec.run_dir / LABELS_FILE, dict(spec.labels))
        lock = RunLock(spec.run_dir)
        if not lock.acquire():
            return Outcome(spec, BUSY)
        try:
            status = read_status(spec.run_dir)
            if status and classify(spec, status) == PlanState.DONE:
                done = RunResult.from_json(status, spec.run_dir)
                if (status.get("started") or "") >= since:
                    # executed since this sweep began: by this very task, whose outcome was
                    # lost (a Dask worker retired before its result was gathered), or by
                    # another conductor meanwhile. Either way it ran, and whoever ran it put
                    # its row in the index before letting go of the claim we now hold
                    return Outcome(spec, RAN, done, indexed=True)
                if not force:
                    return Outcome(spec, SKIPPED, done)
            worker = conductor is not None and os.getppid() == conductor
            guard = orphan_guard(conductor) if worker and conductor is not None else None
            with guard or contextlib.nullcontext():
                result = _execute(
                    spec, options, worker, stop, earlier_attempts(status, since), ahead
                )
                return _indexed(Outcome(spec, RAN, result), index_root)
        finally:
            lock.release()
    except BaseException as exc:  # a fault of ductaflow's own, recorded against the run
        stamp = now()
        result = RunResult(
            run_dir=spec.run_dir, status=FAILED, started=stamp, finished=stamp, duration_s=0.0,
            config_hash=spec.config_hash, error=f"ductaflow internal error: {exc!r}",
            traceback=traceback.format_exc(), sweep=spec.sweep, name=spec.name,
        )  # fmt: skip
        with contextlib.suppress(OSError):
            write_status(result)
        refused = as_storage_error(exc, spec.run_dir, "write the run directory")
        return Outcome(spec, RAN, result, storage=str(refused) if refused else None)
    finally:
        if ahead is not None:  # not adopted (busy, skipped, failed before its kernel)
            ahead.drop(spec.run_dir)


def _execute(
    spec: RunSpec,
    options: RunOptions,
    worker: bool,
    stop: threading.Event | None,
    earlier: list[dict[str, Any]],
    ahead: KernelsAhead | None = None,
) -> RunResult:
    """Execute the run with the kernel starter its options ask for; an interrupted run too.
    ``earlier``: the attempts this sweep made at it before (a worker lost it)."""
    from .engine import RunInterrupted, execute_run
    from .warm import WarmStarter, make_starter

    starter = make_starter(options.kernel, options.warm, options.preload)
    if isinstance(starter, WarmStarter):
        starter.ahead = ahead
    try:
        return execute_run(
            spec, options, starter, stop_with_parent=worker, stop=stop, earlier=earlier
        )
    except RunInterrupted as exc:
        return exc.result


def start_ahead(spec: RunSpec, options: RunOptions, ahead: KernelsAhead) -> bool:
    """Fork the kernel of ``spec``'s first flow now, in its run directory, for the run to adopt
    when it starts (the threads backend calls it for the runs next in line). False: not yet,
    the zygote is not up; True: forked, or it will not be (the run starts its own)."""
    from .engine import first_kernel

    env = first_kernel(spec, options)
    if env is None:  # the flow's own kernelspec: started the standard way
        return True
    return ahead.start(spec.run_dir, env)


@functools.cache
def orphan_guard(conductor: int) -> threading.Lock:
    """In a pool worker: exit once the conductor is gone and no run is being recorded.

    An orphaned loky worker would otherwise wait for tasks forever. Runs hold the returned lock,
    so the worker never exits halfway through recording one (the engine stops a run whose
    conductor died, records it and kills its kernel).
    """
    busy = threading.Lock()

    def watch() -> None:
        while os.getppid() == conductor:
            time.sleep(1.0)
        with busy:
            os._exit(0)

    threading.Thread(target=watch, name="ductaflow-orphan-guard", daemon=True).start()
    return busy


def _indexed(outcome: Outcome, index_root: Path | None) -> Outcome:
    """Append the outcome's row to the index (from a worker); the conductor does it otherwise."""
    if index_root is None or outcome.result is None:
        return outcome
    spec = outcome.spec
    try:
        IndexFile(index_root).append(build_row(spec.run_dir, outcome.result.to_json(),
                                               spec.config))  # fmt: skip
    except OSError as exc:
        log.warning("%s: could not append to the index (%s); the conductor will", spec, exc)
        return outcome
    return Outcome(spec, outcome.kind, outcome.result, indexed=True)
