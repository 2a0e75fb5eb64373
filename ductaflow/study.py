"""Adaptive sweeps: an Optuna study asks for each run's parameters and is told its result.

The ``optimize`` block of a spec::

    {"result": "loss", "direction": "minimize", "trials": 60, "sampler": "tpe", "seed": 0,
     "space": {"x": {"uniform": [-5, 5]}}, "storage": "sqlite"}

Each trial is one run (its own directory ``trial=0007-<hash>``, notebook, ``status.json`` and
index row); its value is the result the flow records with ``ductaflow.record("loss", ...)``. A
run that fails, records no such result, or records NaN is a failed trial. The study lives in
``runs/<sweep>/study.db`` (SQLite through Optuna's RDB storage, which ``optuna-dashboard``
opens), or ``study.log`` with ``"storage": "journal"``, or any database URL. Only this module
imports optuna (the ``ductaflow[optimize]`` extra).
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InputError, SweepSpecError
from .space import Dimension, parse_space

__all__ = [
    "DIRECTIONS",
    "OPTIMIZE_KEYS",
    "SAMPLERS",
    "OptimizeBlock",
    "Study",
    "describe_best",
    "load_study",
    "parse_optimize",
    "stored_study",
]

log = logging.getLogger("ductaflow")

OPTIMIZE_KEYS = ("result", "direction", "trials", "sampler", "seed", "space", "storage")
DIRECTIONS = ("minimize", "maximize")
#: sampler names and the Optuna class each stands for (others need their own extras)
SAMPLERS = {
    "tpe": "TPESampler",
    "random": "RandomSampler",
    "qmc": "QMCSampler",
    "cmaes": "CmaEsSampler",
    "gp": "GPSampler",
    "nsga2": "NSGAIISampler",
}
#: what a sampler needs beyond optuna (Optuna imports it only when the sampler first samples
#: for itself, after its random start-up trials: a sweep would stop mid-way without this check)
SAMPLER_NEEDS = {"cmaes": ("cmaes",), "gp": ("torch", "scipy")}
STUDY_DB = "study.db"
STUDY_JOURNAL = "study.log"
#: user attribute of a trial: the name of its run directory
RUN_ATTR = "ductaflow_run"
#: user attribute of a trial: why it failed
ERROR_ATTR = "ductaflow_error"
#: user attribute of the study: the result its trials' values are (``"loss"``)
RESULT_ATTR = "ductaflow_result"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class OptimizeBlock:
    """What to optimize and how; validated by ``parse_optimize``."""

    result: str
    direction: str
    trials: int
    sampler: str
    seed: int | None
    space: tuple[Dimension, ...]
    storage: str = "sqlite"

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(d.key for d in self.space)


def parse_optimize(block: Any, where: str) -> OptimizeBlock:
    """An ``optimize`` block from a spec, validated; every problem names its key."""
    if not isinstance(block, Mapping):
        raise SweepSpecError(
            f'{where}: give an object like {{"result": "loss", "trials": 40, ...}}'
        )
    unknown = sorted(set(block) - set(OPTIMIZE_KEYS))
    if unknown:
        raise SweepSpecError(f"{where}: unknown key {unknown[0]!r}; use {', '.join(OPTIMIZE_KEYS)}")
    result = block.get("result")
    if not isinstance(result, str) or not _NAME.fullmatch(result):
        raise SweepSpecError(
            f'{where}.result: give the name the flow records, as in ductaflow.record("loss", x)'
        )
    direction = block.get("direction", "minimize")
    if direction not in DIRECTIONS:
        raise SweepSpecError(f"{where}.direction: {direction!r}; use minimize or maximize")
    trials = block.get("trials")
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise SweepSpecError(f"{where}.trials: give the number of trials, a whole number >= 1")
    sampler = block.get("sampler", "tpe")
    if sampler not in SAMPLERS:
        raise SweepSpecError(
            f"{where}.sampler: unknown sampler {sampler!r}; use {', '.join(SAMPLERS)}"
        )
    seed = block.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise SweepSpecError(f"{where}.seed: give a whole number >= 0")
    storage = block.get("storage", "sqlite")
    if not isinstance(storage, str) or not storage:
        raise SweepSpecError(f'{where}.storage: "sqlite", "journal" or a database URL')
    space = parse_space(block.get("space"), f"{where}.space")
    return OptimizeBlock(result, direction, trials, sampler, seed, space, storage)


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise InputError(
            'an "optimize" sweep needs optuna: pip install "ductaflow[optimize]"'
        ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _distribution(optuna: Any, dim: Dimension) -> Any:
    d = optuna.distributions
    if dim.kind == "uniform":
        return d.FloatDistribution(dim.low, dim.high)
    if dim.kind == "loguniform":
        return d.FloatDistribution(dim.low, dim.high, log=True)
    if dim.kind == "int":
        return d.IntDistribution(int(dim.low), int(dim.high))
    return d.CategoricalDistribution(list(dim.choices))


def _sqlite(path: Path) -> Any:
    """A connection to the study's SQLite file in WAL mode with ``synchronous=NORMAL``: one
    sync per checkpoint instead of several per commit (half the cost of a trial here, see
    ``benchmarks/bench_study.py``); any SQLite client on this machine still opens the file."""
    import sqlite3

    connection = sqlite3.connect(str(path), timeout=60, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    return connection


def _storage(optuna: Any, storage: str, sweep_dir: Path) -> Any:
    sweep_dir.mkdir(parents=True, exist_ok=True)
    if storage == "sqlite":
        path = sweep_dir / STUDY_DB
        return optuna.storages.RDBStorage(
            f"sqlite:///{path}", engine_kwargs={"creator": lambda: _sqlite(path)}
        )
    if storage == "journal":
        journal = optuna.storages.journal
        return journal.JournalStorage(journal.JournalFileBackend(str(sweep_dir / STUDY_JOURNAL)))
    return storage


def _sampler(optuna: Any, block: OptimizeBlock) -> Any:
    import importlib.util

    missing = [m for m in SAMPLER_NEEDS.get(block.sampler, ()) if not importlib.util.find_spec(m)]
    if missing:
        ready = ", ".join(s for s in SAMPLERS if s not in SAMPLER_NEEDS)
        raise InputError(
            f"optimize.sampler: {block.sampler!r} needs {' and '.join(missing)}, not installed "
            f"here: pip install {' '.join(missing)} (or use {ready})"
        )
    cls = getattr(optuna.samplers, SAMPLERS[block.sampler])
    try:
        return cls(seed=block.seed)
    except ImportError as exc:  # e.g. GPSampler without torch
        raise InputError(
            f"sampler {block.sampler!r} needs a package that is missing ({exc})"
        ) from None


@dataclass(frozen=True)
class Trial:
    """One asked trial: its number and the config overrides it stands for."""

    number: int
    params: dict[str, Any]


class Study:
    """The study of one ``optimize`` sweep: ask for trials, tell their runs' results."""

    def __init__(self, block: OptimizeBlock, sweep_dir: Path, name: str) -> None:
        optuna = _optuna()
        self.block = block
        self._optuna = optuna
        self._distributions = {d.key: _distribution(optuna, d) for d in block.space}
        sampler = _sampler(optuna, block)  # first: a refused sampler leaves no study file
        self.study = optuna.create_study(
            storage=_storage(optuna, block.storage, sweep_dir),
            sampler=sampler,
            study_name=name,
            direction=block.direction,
            load_if_exists=True,
        )
        if self.study.user_attrs.get(RESULT_ATTR) != block.result:
            self.study.set_user_attr(RESULT_ATTR, block.result)
        #: trials asked by this process, by number (their user attributes can be set)
        self._asked: dict[int, Any] = {}

    # -- state ----------------------------------------------------------------------------------
    def finished(self) -> int:
        """Trials that ended, complete or failed: they count toward ``trials``."""
        return sum(1 for t in self.study.get_trials(deepcopy=False) if t.state.is_finished())

    def remaining(self) -> int:
        return max(0, self.block.trials - self.finished())

    def running(self) -> list[tuple[int, str | None]]:
        """Trials still ``RUNNING`` in the study: (number, run directory name)."""
        state = self._optuna.trial.TrialState.RUNNING
        return [
            (t.number, t.user_attrs.get(RUN_ATTR))
            for t in self.study.get_trials(deepcopy=False, states=(state,))
        ]

    def best(self) -> Any | None:
        """The best complete trial (Optuna's ``FrozenTrial``), or None before any."""
        try:
            return self.study.best_trial
        except ValueError:
            return None

    # -- ask and tell ---------------------------------------------------------------------------
    def ask(self) -> Trial:
        trial = self.study.ask(fixed_distributions=self._distributions)
        self._asked[trial.number] = trial
        return Trial(trial.number, dict(trial.params))

    def name_run(self, trial: Trial, run_name: str) -> None:
        """Remember which run directory holds the trial (for a conductor that resumes)."""
        self._asked[trial.number].set_user_attr(RUN_ATTR, run_name)

    def value_of(self, status: str | None, run_dir: Path) -> tuple[float | None, str | None]:
        """The trial value of a finished run, or None and why it is a failed trial."""
        if status != "ok":
            return None, f"the run ended {status}"
        try:
            results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            results = {}
        value = results.get(self.block.result) if isinstance(results, dict) else None
        if value is None:
            return None, f"the run recorded no {self.block.result!r} (ductaflow.record)"
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None, f"the run recorded {self.block.result!r} = {value!r}, not a number"
        if not math.isfinite(value):
            return None, f"the run recorded {self.block.result!r} = {value}"
        return float(value), None

    def tell(self, number: int, status: str | None, run_dir: Path) -> str | None:
        """Tell the study how trial ``number``'s run ended; returns why it failed, if it did."""
        value, why = self.value_of(status, run_dir)
        state = self._optuna.trial.TrialState
        asked = self._asked.pop(number, None)
        if value is None:
            if asked is not None:
                asked.set_user_attr(ERROR_ATTR, why)
            self.study.tell(number, state=state.FAIL, skip_if_finished=True)
        else:
            self.study.tell(number, value, skip_if_finished=True)
        return why


def stored_study(sweep_dir: Path) -> str | None:
    """The storage of the study kept in a sweep's directory (``sqlite``, ``journal``), or None."""
    if (sweep_dir / STUDY_DB).exists():
        return "sqlite"
    if (sweep_dir / STUDY_JOURNAL).exists():
        return "journal"
    return None


def load_study(runs_root: str | Path, sweep: str, storage: str | None = None) -> Any:
    """The Optuna study of an ``optimize`` sweep, for Optuna's own analysis and plots.

    ``storage``: ``"sqlite"``, ``"journal"`` or the database URL the spec names; by default the
    study file found in ``<runs_root>/<sweep>/``. Raises ``InputError`` when there is none.
    """
    sweep_dir = Path(runs_root) / sweep
    storage = storage or stored_study(sweep_dir)
    if storage is None:
        raise InputError(
            f"{sweep_dir}: no {STUDY_DB} or {STUDY_JOURNAL} here; is {sweep!r} an optimize sweep?"
        )
    optuna = _optuna()
    try:
        return optuna.load_study(study_name=sweep, storage=_storage(optuna, storage, sweep_dir))
    except KeyError:
        raise InputError(f"{sweep_dir}: the study has no sweep {sweep!r}") from None


def describe_best(study: Any) -> str | None:
    """``best trial 17: loss = 0.0123 (x=1.98, y=-1.02) -> <run>``; None before any."""
    try:
        best = study.best_trial
    except ValueError:
        return None
    params = ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v!r}" for k, v in best.params.items()
    )
    result = study.user_attrs.get(RESULT_ATTR, "value")
    run = best.user_attrs.get(RUN_ATTR, "")
    return f"best trial {best.number}: {result} = {best.value:.6g} ({params}) -> {run}"
