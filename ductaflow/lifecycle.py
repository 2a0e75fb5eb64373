"""What a run becomes when the process executing it is gone: the one place that decides.

A run is claimed (``rundir.RunLock``) for as long as a process executes it, and its
``status.json`` says ``running`` meanwhile. When that process ends without recording the run
(a dead worker, Ctrl-C of the conductor, a killed conductor, a lost machine), the claim goes with
it and the status still says ``running``. From there:

- ``classify``: at planning, such a run is ``failed`` (it is run again), one still claimed is
  ``running`` (another process executes it: the sweep waits for it).
- ``recover_unfinished``: the next sweep records it ``interrupted`` under its claim, with the
  index's ``UNFINISHED_ERROR``, and a marker in its notebook (``record_abandoned``).
- ``settle``: a conductor whose worker died, or that was stopped, records the runs that worker
  left behind (``died`` / ``interrupted``), once their claim is released (``wait_released``).
- ``wait_for_run``: a run another conductor executes is waited for, then read back.
- ``shown_status``: until then, the index shows it ``interrupted`` (``UNFINISHED_ERROR``).
- ``earlier_attempts``: a run executed again in the same sweep (its worker died, its job was
  cancelled) keeps the attempts before, in ``status.json``'s ``attempt_log``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .process import now
from .rundir import (
    STATUS_FILE,
    RunLock,
    attempt_entry,
    is_claimed,
    read_status,
    write_json,
    write_status,
)
from .spec import (
    BUSY,
    DIED,
    INTERRUPTED,
    NOT_RUN,
    OK,
    RAN,
    RUNNING,
    FlowResult,
    Outcome,
    PlanState,
    RunResult,
    RunSpec,
)

__all__ = [
    "CLAIM_WAIT_S",
    "UNFINISHED_ERROR",
    "classify",
    "earlier_attempts",
    "matches",
    "record_abandoned",
    "recover_unfinished",
    "settle",
    "settle_killed",
    "shown_status",
    "wait_for_run",
    "wait_released",
]

#: Seconds a conductor waits for the claim of a run whose process is gone to be released (the
#: kernel drops a dead process's ``flock`` as the process goes).
CLAIM_WAIT_S = 10.0
#: The error of a run whose process ended without recording it.
UNFINISHED_ERROR = "Interrupted: the process running it ended before it finished"


def shown_status(run_dir: Path, status: str, error: str | None) -> tuple[str, str | None]:
    """The status and error to show for a recorded run: a ``running`` run that nobody claims
    is ``interrupted`` (its process is gone), whatever its ``status.json`` still says."""
    if status == RUNNING and not is_claimed(run_dir):
        return INTERRUPTED, UNFINISHED_ERROR
    return status, error


def earlier_attempts(status: Mapping[str, Any] | None, since: str) -> list[dict[str, Any]]:
    """The attempts a sweep that began at ``since`` already made at a run, from its
    ``status.json`` (none when it was last executed before this sweep). An attempt whose process
    died without recording it is ``interrupted``, with ``UNFINISHED_ERROR``."""
    if not status or (status.get("started") or "") < since:
        return []
    entries = status.get("attempt_log")
    log = [dict(e) for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []
    if not log:  # recorded by a ductaflow that kept no log, or by a conductor for a lost run
        log = [attempt_entry(dict(status))]
    if log[-1].get("status") == RUNNING:
        log[-1].update(status=INTERRUPTED, error=UNFINISHED_ERROR)
    return log


def matches(spec: RunSpec, status: Mapping[str, Any]) -> bool:
    """Whether a recorded run is the planned one: same config and the same flow files."""
    flows = status.get("flows") or ()
    recorded = [(f.get("path"), f.get("sha256")) for f in flows if isinstance(f, dict)]
    planned = [(str(f.path), f.sha256) for f in spec.flows]
    return status.get("config_hash") == spec.config_hash and recorded == planned


def classify(spec: RunSpec, status: Mapping[str, Any] | None) -> PlanState:
    """Where a run stands: new, done, failed, stale, or running (claimed elsewhere)."""
    if status is None:
        return PlanState.NEW
    state = status.get("status")
    if state == RUNNING:
        return PlanState.RUNNING if is_claimed(spec.run_dir) else PlanState.FAILED
    if state == OK:
        return PlanState.DONE if matches(spec, status) else PlanState.STALE
    return PlanState.FAILED


def wait_released(run_dir: Path, timeout: float = CLAIM_WAIT_S, poll: float = 0.05) -> bool:
    """Wait up to ``timeout`` s for nobody to hold the run's claim; True when nobody does."""
    deadline = time.monotonic() + timeout
    while is_claimed(run_dir) and time.monotonic() < deadline:
        time.sleep(poll)
    return not is_claimed(run_dir)


def wait_for_run(spec: RunSpec) -> Outcome:
    """A run another conductor is executing: wait until it is released, then read it."""
    lock = RunLock(spec.run_dir)
    while not lock.acquire():
        time.sleep(0.2)
    lock.release()
    data = read_status(spec.run_dir)
    return Outcome(spec, RAN, RunResult.from_json(data, spec.run_dir) if data else None)


def record_abandoned(run_dir: Path, status: str, error: str) -> RunResult | None:
    """Record a run whose process was killed mid-run (status.json still says ``running``).

    Called once the run's lock is free: the flow that was executing gets ``status`` and
    ``error``, and its saved notebook a marker cell at the top. None when the run is not
    ``running`` on disk (its process recorded it).
    """
    data = read_status(run_dir)
    if data is None or data.get("status") != RUNNING:
        return None
    flows = list(data.get("flows", ()))
    for flow in flows:
        if flow.get("status") in (NOT_RUN, RUNNING):
            flow.update(status=status, error=error)
            _mark_notebook(run_dir / flow.get("notebook", ""), status, error)
            break
    data.update(status=status, error=error, flows=flows, finished=now())
    log = data.get("attempt_log")
    if isinstance(log, list) and log and isinstance(log[-1], dict):  # the attempt it was on
        if log[-1].get("status") == RUNNING:
            log[-1] = attempt_entry(data)
    result = RunResult.from_json(data, run_dir)
    extra = {k: v for k, v in data.items() if k not in RunResult.__dataclass_fields__}
    write_status(result, extra)
    return result


def _mark_notebook(path: Path, status: str, error: str) -> None:
    """A marker cell at the top of a saved notebook: how the run ended and why."""
    with contextlib.suppress(Exception):
        import nbformat

        from .notebook import ERROR_TAG, save_notebook

        nb = nbformat.read(path, as_version=4)
        marker = nbformat.v4.new_markdown_cell(
            f"**ductaflow: this run ended `{status}`**: `{error}`. The cells below show "
            "what it had done when it was stopped.",
            metadata={"tags": [ERROR_TAG]},
        )
        marker["id"] = "ductaflow-error-summary"
        nb.cells.insert(1 if nb.cells else 0, marker)
        save_notebook(nb, path)


def recover_unfinished(run_dir: Path) -> RunResult | None:
    """Record ``interrupted`` a run left ``running`` by a process that is gone (a killed
    conductor, a lost machine), under its claim; None when it is claimed or not ``running``."""
    lock = RunLock(run_dir)
    if not lock.acquire():
        return None
    try:
        return record_abandoned(run_dir, INTERRUPTED, UNFINISHED_ERROR)
    finally:
        lock.release()


def settle(
    spec: RunSpec,
    since: str,
    status: str,
    error: str,
    *,
    record_if: Callable[[RunSpec], bool] | None = None,
    unstarted: bool = False,
) -> Outcome | None:
    """What a run whose process is gone (a dead worker, a stopped sweep) becomes.

    - claimed still after ``CLAIM_WAIT_S``: a ``busy`` outcome (another process runs it now);
    - recorded by its process before it went: that record;
    - still ``running`` on disk: recorded ``status`` with ``error``, unless ``record_if`` says
      not yet (then None: it may run again);
    - never started since ``since``: None, or with ``unstarted``, recorded ``status`` with every
      flow ``not-run`` (a run lost before it began).
    """
    data = read_status(spec.run_dir)
    began = bool(data) and (data.get("started") or "") >= since  # type: ignore[union-attr]
    if not began and not unstarted:
        return None
    if not wait_released(spec.run_dir):
        return Outcome(spec, BUSY)
    data = read_status(spec.run_dir) or data
    if data and data.get("status") == RUNNING:
        if record_if is not None and not record_if(spec):
            return None
        result = record_abandoned(spec.run_dir, status, error)
        if result is not None:
            return Outcome(spec, RAN, result)
        data = read_status(spec.run_dir)  # its process recorded it meanwhile
    if data and (began or (data.get("started") or "") >= since):
        return Outcome(spec, RAN, RunResult.from_json(data, spec.run_dir))
    if not unstarted:
        return None
    stamp = now()
    result = RunResult(
        spec.run_dir, status, stamp, stamp, 0.0, spec.config_hash,
        tuple(FlowResult.not_run(f) for f in spec.flows), error, sweep=spec.sweep, name=spec.name,
    )  # fmt: skip
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    write_status(result)
    return Outcome(spec, RAN, result)


def settle_killed(spec: RunSpec, since: str, error: str) -> Outcome:
    """A run Dask gave up on: each worker death was recorded ``interrupted``; it ``died``."""
    outcome = settle(spec, since, DIED, error, unstarted=True)
    assert outcome is not None  # with ``unstarted``, every run gets an outcome
    if outcome.result is None or outcome.result.status != INTERRUPTED:
        return outcome
    data = read_status(spec.run_dir) or outcome.result.to_json()
    data.update(status=DIED, error=error)
    write_json(spec.run_dir / STATUS_FILE, data)
    return Outcome(spec, RAN, RunResult.from_json(data, spec.run_dir))
