"""The runs of an ``optimize`` sweep: asked from its study one at a time, told as each ends.

A ``TrialFeed`` is the iterable of ``RunSpec`` that the conductor (``ductaflow.executor``) hands
to a backend instead of a fixed list. Each time the backend pulls a spec (a slot is free: every
backend pulls at most ``-j N`` ahead of the outcomes it has given back), the feed asks the study
for a trial and makes its run; each outcome is told back (``told``), its value read from the
run's ``results.json``. The feed stops once the study holds ``trials`` finished trials, counting
those of earlier sweeps, so running the sweep again continues the study.

Trials a killed conductor left ``RUNNING`` in the study are told failed when the next sweep
opens it (``recover``), unless their run is still claimed by a live process: they count once
and their run directories stay in the index.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .rundir import LABELS_FILE, read_status, write_json
from .spec import BUSY, INTERRUPTED, PlanState, RunSpec
from .study import RUN_ATTR, STUDY_DB, STUDY_JOURNAL, Study, describe_best
from .sweep import Sweep

__all__ = ["TrialFeed", "describe_optimize"]

log = logging.getLogger("ductaflow")


def _fmt_params(params: Mapping[str, Any]) -> str:
    return ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v!r}" for k, v in params.items()
    )


def describe_optimize(sweep: Sweep, runs_root: str | Path) -> str:
    """What ``--dry-run`` says of an optimize sweep; opens no study that does not exist yet."""
    block = sweep.optimize
    assert block is not None
    sweep_dir = Path(runs_root).absolute() / sweep.name
    finished = 0
    stored = {"sqlite": sweep_dir / STUDY_DB, "journal": sweep_dir / STUDY_JOURNAL}
    path = stored.get(block.storage)
    if path is not None and path.exists():
        finished = Study(block, sweep_dir, sweep.name).finished()
    keys = ", ".join(block.keys)
    return (
        f"{sweep.name}: optimize sweep of {block.trials} trials ({block.sampler}, "
        f"{block.direction} {block.result!r} over {keys}); {finished} finished, "
        f"{max(0, block.trials - finished)} to run"
    )


class TrialFeed:
    """The trials of one optimize sweep invocation; iterate it for their runs."""

    def __init__(self, sweep: Sweep, runs_root: str | Path, *, inspect: bool = True) -> None:
        assert sweep.optimize is not None
        self.sweep = sweep
        self.block = sweep.optimize
        self.root = Path(runs_root).absolute()
        self.flows = sweep.flow_refs(inspect)
        self.study = Study(self.block, self.root / sweep.name, sweep.name)
        #: the configs of the runs asked so far, by run directory (the conductor indexes them)
        self.configs: dict[Path, Mapping[str, Any]] = {}
        self._numbers: dict[Path, int] = {}
        self._lock = threading.Lock()  # joblib pulls from its own thread
        self._todo = 0
        self.asked = 0
        self.told_count = 0
        #: why the study stopped the sweep (it could not ask or be told); the runs in flight
        #: still finish and are recorded, and the sweep ends with this error (exit 1)
        self.error: str | None = None

    # -- before the sweep ------------------------------------------------------------------------
    def known_specs(self) -> list[RunSpec]:
        """The runs of the study's earlier trials (those whose run directory it remembers)."""
        specs = []
        for trial in self.study.study.get_trials(deepcopy=False):
            name = trial.user_attrs.get(RUN_ATTR)
            if name and set(trial.params) == set(self.block.keys):
                spec = self.sweep.trial_spec(trial.number, trial.params, self.flows, self.root,
                                             name=name)  # fmt: skip
                specs.append(spec)
        return specs

    def example_specs(self) -> list[RunSpec]:
        """Runs at the space's middle and corners, for the flows' source checks."""
        points = [{d.key: d.value(u) for d in self.block.space} for u in (0.0, 0.5, 0.999)]
        return [self.sweep.trial_spec(0, p, self.flows, self.root) for p in points]

    def recover(self, states: Mapping[Path, PlanState]) -> int:
        """Tell failed the trials an earlier conductor left running (its run not claimed now);
        then plan this sweep's share. Returns how many trials remain to run."""
        for number, name in self.study.running():
            run_dir = self.root / self.sweep.name / name if name else None
            if run_dir is not None and states.get(run_dir) == PlanState.RUNNING:
                continue  # a live conductor's trial
            status = read_status(run_dir) if run_dir is not None else None
            why = self.study.tell(number, (status or {}).get("status") or INTERRUPTED,
                                  run_dir or self.root)  # fmt: skip
            log.info("%s: trial %d, left running by a stopped sweep, failed (%s)",
                     self.sweep.name, number, why)  # fmt: skip
            if run_dir is not None:
                self._label(run_dir, number, None, why)
        self._todo = self.study.remaining()
        return self._todo

    # -- during the sweep ------------------------------------------------------------------------
    def __iter__(self) -> Iterator[RunSpec]:
        return self

    def __length_hint__(self) -> int:
        return max(0, self._todo - self.asked)

    def __next__(self) -> RunSpec:
        with self._lock:
            if self.asked >= self._todo or self.error:
                raise StopIteration
            try:
                trial = self.study.ask()
                spec = self.sweep.trial_spec(trial.number, trial.params, self.flows, self.root)
                self.study.name_run(trial, spec.name)
            except Exception as exc:  # the study failed, not a worker: no more trials
                self._failed("ask for a trial", exc)
                raise StopIteration from None
            self.asked += 1
            self._numbers[spec.run_dir] = trial.number
            self.configs[spec.run_dir] = spec.config
        log.debug("%s: trial %d asked: %s", self.sweep.name, trial.number,
                  _fmt_params(trial.params))  # fmt: skip
        return spec

    def told(self, outcome: Any) -> bool:
        """Tell the study how a trial's run ended; True when it was one of this feed's trials
        (its index row then gains the trial's value or error)."""
        if outcome.kind == BUSY:
            return False
        run_dir = outcome.spec.run_dir
        with self._lock:
            number = self._numbers.pop(run_dir, None)
            if number is None:
                return False
            result = outcome.result
            status = result.status if result is not None else None
            try:
                why = self.study.tell(number, status, run_dir)
            except Exception as exc:  # the run is recorded and indexed; the study missed it
                self._failed(f"be told trial {number}", exc)
                return False
            self.told_count += 1
        value = None if why else self.study.value_of(status, run_dir)[0]
        self._label(run_dir, number, value, why)
        if why:
            log.info("%s: trial %d failed: %s", self.sweep.name, number, why)
        return True

    def _failed(self, what: str, exc: Exception) -> None:
        if self.error is None:
            self.error = (
                f"{self.sweep.name}: the study could not {what} ({type(exc).__name__}: {exc}); "
                "the runs so far are recorded: fix the study's storage and sweep again to go on"
            )
            log.debug("%s", self.error, exc_info=exc)

    def _label(self, run_dir: Path, number: int, value: float | None, why: str | None) -> None:
        labels: dict[str, Any] = {"trial": number, "trial_state": "fail" if why else "complete",
                                  "trial_direction": self.block.direction}  # fmt: skip
        if value is not None:
            labels["trial_value"] = value
        if why:
            labels["trial_error"] = why
        try:
            write_json(run_dir / LABELS_FILE, labels)
        except OSError as exc:  # the study has it; the index row only misses it
            log.warning("%s: could not write %s (%s)", run_dir, LABELS_FILE, exc)

    # -- after -----------------------------------------------------------------------------------
    def best_line(self) -> str | None:
        """``best trial 17: loss = 0.0123 (x=1.98, y=-1.02) -> <run>``, or None before any."""
        return describe_best(self.study.study)
