"""Plain, frozen records: what to run (``RunSpec``, ``RunOptions``), what happened (``RunResult``,
``Outcome``), and where a planned run stands (``PlanState``).

Nothing but these records (and paths) crosses to a worker, and nothing but an ``Outcome`` comes
back, so every backend can pickle them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from .checks import FlowFacts, load_flow
from .config import config_hash
from .errors import ConfigError

__all__ = [
    "BUSY",
    "ERROR_ANCHOR",
    "RAN",
    "SKIPPED",
    "FlowRef",
    "FlowResult",
    "Outcome",
    "PlanState",
    "RunOptions",
    "RunResult",
    "RunSpec",
    "RunWarning",
    "count_warnings",
    "valid_preload",
]

OK = "ok"
FAILED = "failed"
TIMEOUT = "timeout"
DIED = "died"
INTERRUPTED = "interrupted"
RUNNING = "running"
NOT_RUN = "not-run"  # a flow after the one that failed
#: HTML id of the marker just above a failed run's failing cell: ``<notebook>.html#<id>``.
ERROR_ANCHOR = "ductaflow-error"


class PlanState(str, Enum):
    """Where a run stands when a sweep is planned, read from its ``status.json`` and claim."""

    NEW = "new"
    DONE = "done"
    FAILED = "failed"
    STALE = "stale"
    #: claimed by another process right now
    RUNNING = "running"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class FlowRef:
    """A flow file, by absolute path and the sha256 of its bytes when it was planned.

    A flow is a Python notebook in any format Jupytext reads (``.py`` percent or light, ``.md``,
    MyST, ``.ipynb``); ``facts`` is what its source says (``checks.FlowFacts``), found once when
    the sweep is planned.
    """

    path: Path
    sha256: str
    facts: FlowFacts | None = field(default=None, compare=False, repr=False)

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def notebook_name(self) -> str:
        """File name of the executed notebook in the run directory."""
        return f"{self.path.stem}_executed.ipynb"

    @classmethod
    def from_path(cls, path: str | Path, *, inspect: bool = True) -> FlowRef:
        """The flow at ``path``, read and checked: ``FlowError`` for a file that cannot run.
        ``inspect=False``: only hashed (for a plan; ``facts`` stays None)."""
        path = Path(path).absolute()
        sha, facts = load_flow(path, inspect=inspect)
        return cls(path=path, sha256=sha, facts=facts)


@dataclass(frozen=True)
class RunOptions:
    """How runs execute; the same for every run of a sweep."""

    #: Seconds one cell may run (None: no limit).
    timeout: float | None = None
    #: Seconds a whole run (all its flows, kernel starts included) may take (None: no limit).
    run_timeout: float | None = None
    #: A registered kernelspec name; None runs the interpreter ductaflow runs in.
    kernel: str | None = None
    #: How many times a run that did not end ``ok`` is tried again.
    retries: int = 0
    #: Fork each kernel from a warm "zygote" process (Linux, this interpreter); see ``warm``.
    warm: bool = True
    #: Modules the zygote imports before forking kernels (e.g. ``("pandas", "numpy")``).
    preload: tuple[str, ...] = ()
    #: A run whose flows raised warnings (Python warnings, logging at WARNING+) ends ``failed``.
    strict_warnings: bool = False
    #: Bytes of cell output kept in each ``<flow>_output.txt`` (a note marks the cut).
    output_limit: int = 10_000_000
    #: The sweep's environment record (``environment.Environment``), named in ``status.json``.
    env_hash: str | None = None
    git_commit: str | None = None


@dataclass(frozen=True)
class RunSpec:
    """One run: a config, the flows to execute in order, and the directory they run in."""

    run_dir: Path
    config: Mapping[str, Any]
    flows: tuple[FlowRef, ...]
    sweep: str = ""
    name: str = ""
    config_hash: str = field(default="", compare=False)
    #: columns of the run's index row that are not config keys: its sample point's number
    #: (``sample``) or its trial's (``trial``); kept in the run's ``labels.json``
    labels: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not self.config_hash:
            object.__setattr__(self, "config_hash", config_hash(self.config))


#: ``RunWarning.kind``: found in the flow's source or config before it ran; raised while it ran.
CHECK, WARNING, LOG = "check", "warning", "log"


@dataclass(frozen=True)
class RunWarning:
    """A warning about a run: a source check (``check``), a Python warning (``warning``) or a
    ``logging`` record at WARNING or above (``log``) raised in one of its flows."""

    kind: str
    message: str
    flow: str | None = None
    #: 1-based number of the flow's cell that raised it (None: not known, or a check)
    cell: int | None = None
    #: the warning's class (``UserWarning``) or the record's level (``WARNING``)
    category: str | None = None
    #: how many times the same warning was raised in that cell
    count: int = 1

    @property
    def runtime(self) -> bool:
        """Raised while the flow ran (not a check of its source)."""
        return self.kind != CHECK

    def __str__(self) -> str:
        where = f"{self.flow}" + (f", cell {self.cell}" if self.cell is not None else "")
        what = f"{self.category}: " if self.category and self.runtime else ""
        times = f" (x{self.count})" if self.count > 1 else ""
        return f"{where}: {what}{self.message}{times}" if self.runtime else self.message

    @classmethod
    def from_json(cls, data: Any) -> RunWarning:
        """A record of ``status.json``; a plain string (before records) is a check."""
        if not isinstance(data, Mapping):
            return cls(CHECK, str(data))
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known and k != "kind"},
                   kind=str(data.get("kind") or CHECK))  # fmt: skip


def count_warnings(warnings: Any) -> int:
    """How many warnings a ``status.json`` ``warnings`` list holds (records carry a count)."""
    total = 0
    for w in warnings or ():
        count = w.get("count", 1) if isinstance(w, Mapping) else 1
        total += count if isinstance(count, int) and count > 0 else 1
    return total


@dataclass(frozen=True)
class FlowResult:
    """What happened to one flow of a run."""

    name: str
    path: str
    sha256: str
    status: str
    notebook: str
    started: str | None = None
    finished: str | None = None
    duration_s: float | None = None
    error: str | None = None
    traceback: str | None = None
    #: 1-based number of the flow's own cell that failed (injected cells not counted).
    failed_cell: int | None = None
    #: Seconds the kernel took to start and answer.
    kernel_start_s: float | None = None
    #: 1-based number of the flow's own cell that stopped it cleanly (``sys.exit(0)``); the
    #: cells after it were not executed.
    stopped_at_cell: int | None = None

    @classmethod
    def not_run(cls, ref: FlowRef) -> FlowResult:
        """A flow that did not run (after the one that failed, or a run that never began)."""
        return cls(ref.name, str(ref.path), ref.sha256, NOT_RUN, ref.notebook_name)


@dataclass(frozen=True)
class RunResult:
    """What happened to one run; ``status.json`` holds exactly this plus provenance."""

    run_dir: Path
    status: str
    started: str | None
    finished: str | None
    duration_s: float | None
    config_hash: str
    flows: tuple[FlowResult, ...] = ()
    error: str | None = None
    traceback: str | None = None
    failed_flow: str | None = None
    attempts: int = 1
    warnings: tuple[RunWarning, ...] = ()
    sweep: str = ""
    name: str = ""
    #: the hash of the sweep's environment record (``<sweep>/environment/<hash>.json``)
    env_hash: str | None = None
    #: the commit of the git repository holding the flows, when there is one
    git_commit: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def warned(self) -> bool:
        """Ended ``ok`` with warnings (the report shows it apart)."""
        return self.ok and bool(self.warnings)

    @property
    def notebooks(self) -> list[Path]:
        """Executed notebooks of the flows that ran."""
        return [self.run_dir / f.notebook for f in self.flows if f.status != NOT_RUN]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["run_dir"] = str(self.run_dir)
        data["flows"] = [asdict(f) for f in self.flows]
        data["warnings"] = [asdict(w) for w in self.warnings]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any], run_dir: Path | None = None) -> RunResult:
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in data.items() if k in known}
        flow_fields = set(FlowResult.__dataclass_fields__)
        kwargs["flows"] = tuple(
            FlowResult(**{k: v for k, v in f.items() if k in flow_fields})
            for f in data.get("flows", ())
        )
        kwargs["warnings"] = tuple(RunWarning.from_json(w) for w in data.get("warnings") or ())
        kwargs["run_dir"] = Path(run_dir if run_dir is not None else data["run_dir"])
        return cls(**kwargs)


#: What became of a planned run (``Outcome.kind``): executed here, found done, claimed elsewhere.
RAN, SKIPPED, BUSY = "ran", "skipped", "busy"


@dataclass(frozen=True)
class Outcome:
    """What became of one planned run: ``ran``, ``skipped`` (found done) or ``busy``."""

    spec: RunSpec
    kind: str
    result: RunResult | None = None
    #: True when the worker already appended the run's row to the index
    indexed: bool = False
    #: the disk refused the run's files (full, read-only): a StorageError's message
    storage: str | None = None


#: A dotted module name, as ``--preload`` takes them.
MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def valid_preload(preload: Sequence[str]) -> tuple[str, ...]:
    """A preload list as warm kernels' zygotes are keyed by it (each name once); ConfigError
    for a name that is not a module name."""
    if isinstance(preload, str):
        preload = [preload]
    for name in preload:
        if not isinstance(name, str) or not MODULE_NAME.fullmatch(name):
            raise ConfigError(f"--preload {name!r}: not a module name (e.g. pandas, numpy)")
    return tuple(dict.fromkeys(preload))
