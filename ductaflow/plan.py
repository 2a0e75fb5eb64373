"""What a sweep (re)runs: each run's state on disk, and the runs to execute (resume by default)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .config import gc_paused
from .lifecycle import classify, recover_unfinished
from .rundir import read_status, read_statuses
from .spec import RUNNING, PlanState, RunSpec

__all__ = ["ONLY_CHOICES", "Plan", "PlannedRun", "plan_runs", "recover_abandoned"]

#: What ``--only`` can select.
ONLY_CHOICES = (PlanState.FAILED.value, PlanState.STALE.value, PlanState.NEW.value)


@dataclass(frozen=True)
class PlannedRun:
    spec: RunSpec
    state: PlanState
    status: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Plan:
    runs: tuple[PlannedRun, ...]
    to_run: tuple[RunSpec, ...]

    def counts(self) -> Counter[PlanState]:
        return Counter(run.state for run in self.runs)

    def describe(self, name: str) -> str:
        c = self.counts()
        parts = [f"{c[s]} {s}" for s in PlanState if c[s]]
        return f"{name}: {len(self.runs)} runs ({', '.join(parts)}); {len(self.to_run)} to run"


def plan_runs(
    specs: Sequence[RunSpec], *, force: bool = False, only: Iterable[str] | None = None
) -> Plan:
    """Read each run's status and choose what to run (resume by default).

    Runs claimed by another process (``running``) are always in ``to_run``: the sweep waits for
    them. Raises ``ValueError`` for an ``only`` outside ``ONLY_CHOICES``.
    """
    wanted = set(only or ()) or {PlanState.NEW, PlanState.FAILED, PlanState.STALE}
    bad = set(wanted) - set(ONLY_CHOICES)
    if bad:
        raise ValueError(f"--only {sorted(bad)[0]!r}: choose from {', '.join(ONLY_CHOICES)}")
    with gc_paused():
        statuses = read_statuses([spec.run_dir for spec in specs])
        runs = [
            PlannedRun(spec, classify(spec, status), status)
            for spec, status in zip(specs, statuses, strict=True)
        ]
    to_run = tuple(
        r.spec for r in runs if r.state == PlanState.RUNNING or force or r.state in wanted
    )
    return Plan(tuple(runs), to_run)


def recover_abandoned(plan: Plan) -> Plan:
    """Record the runs whose process ended without recording them, and plan them anew.

    A killed conductor (SIGKILL, a lost machine) leaves its runs in flight ``running`` on disk
    with no claim held; such a run is recorded ``interrupted`` (``lifecycle.recover_unfinished``),
    so that it shows as such in the index and its notebook says where it stopped.
    """
    runs = list(plan.runs)
    for i, run in enumerate(runs):
        if not run.status or run.status.get("status") != RUNNING or run.state == PlanState.RUNNING:
            continue
        if recover_unfinished(run.spec.run_dir) is not None:
            runs[i] = PlannedRun(run.spec, PlanState.FAILED, read_status(run.spec.run_dir))
    return Plan(tuple(runs), plan.to_run)
