"""Sweeps: a base config and blocks of variations, expanded into run specs with stable names.

The runs are the product of the blocks present: ``grid`` (cartesian product of its axes) times
``zip`` (lists stepped together) times ``table`` (CSV rows) times ``sample`` (points of a space).
``exclude`` drops runs. An ``optimize`` sweep has no fixed runs: its study asks for each trial
(``ductaflow.study``, ``ductaflow.trials``), and ``trial_spec`` makes the trial's run. A run's
directory is ``<runs root>/<sweep name>/<run name>``; the default run name shows the varied keys
and ends in a short hash of the run's whole config, so the same config always maps to the same
directory however the spec is reordered or extended.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from .checks import check_runs
from .config import (
    Overlay,
    canonical_json,
    check_key,
    config_hash,
    gc_paused,
    get_dotted,
    load_config,
    load_json,
    parse_scalar,
    set_dotted,
)
from .errors import ConfigError, InputError, SweepSpecError
from .space import SampleBlock, parse_sample
from .spec import FlowRef, RunSpec
from .study import OptimizeBlock, parse_optimize

__all__ = ["SPEC_KEYS", "Sweep", "load_table", "sanitize_name"]

SPEC_KEYS = (
    "name",
    "description",
    "flows",
    "base",
    "grid",
    "zip",
    "table",
    "exclude",
    "run_name",
    "preload",
    "sample",
    "optimize",
    "strict",
)
#: the blocks an ``optimize`` sweep cannot have: its study chooses every run
FIXED_BLOCKS = ("grid", "zip", "table", "sample")
RUN_NAME_COLUMN = "run_name"
_UNSAFE = re.compile(r"[^A-Za-z0-9._=+,-]+")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
NAME_MAX = 120
_MISSING = object()


def sanitize_name(text: str, limit: int = NAME_MAX) -> str:
    """A directory name from any text: a safe character set, no leading dot or dash, capped."""
    return _finish_name(_UNSAFE.sub("_", text), limit)


def _finish_name(name: str, limit: int) -> str:
    """``sanitize_name`` of a text already in the safe character set."""
    name = name.strip("_")
    if name[:1] in (".", "-"):
        name = re.sub(r"^[.-]+", "_", name)
    return name[:limit] or "_"


def _fmt(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | float):
        return repr(value)  # what JSON shows too, for finite numbers
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class _Cell(NamedTuple):
    """One key's value in a run's overrides, with what expanding needs of it, made once per
    value of a block: its ``canonical_json`` (None if it has none) and its part of the
    default run name, already safe (``_UNSAFE`` replaced; None for a key that names nothing).
    The ``_`` that joins parts is safe, so parts made safe one by one join to
    ``sanitize_name`` of their join."""

    key: str
    value: Any
    text: str | None
    part: str | None


def _cell(key: str, value: Any, named: bool) -> _Cell:
    try:
        text: str | None = canonical_json(value)
    except (TypeError, ValueError):  # config_hash raises for it, where it is hashed
        text = None
    part = _UNSAFE.sub("_", f"{key}={_fmt(value)}") if named else None
    return _Cell(key, value, text, part)


class _Shape(NamedTuple):
    """What runs with the same override keys share: how their configs are built and hashed
    (``overlay``: None when a key is another's prefix), and where each varied key's name part
    is among their cells (None: a varied key is not overridden, so ``_name`` names them)."""

    overlay: Overlay | None
    name_slots: tuple[int, ...] | None

    @classmethod
    def of(cls, base: Mapping[str, Any], keys: tuple[str, ...], varied: Sequence[str]) -> _Shape:
        overlay = Overlay.of(base, keys)
        slots = None
        if overlay is not None and all(k in keys for k in varied):
            slots = tuple(keys.index(k) for k in varied)
        return cls(overlay, slots)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return bool(a == b)


def load_table(path: Path) -> tuple[tuple[dict[str, Any], ...], tuple[str, ...]]:
    """Read a CSV table: rows of ``{dotted key: value}`` (empty cells left out), and the header."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            lines = list(csv.reader(fh))
    except FileNotFoundError:
        raise SweepSpecError(f"{path}: table file not found; check the path") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SweepSpecError(f"{path}: cannot read CSV table ({exc})") from None
    numbered = [(n, row) for n, row in enumerate(lines, 1) if any(c.strip() for c in row)]
    if not numbered:
        raise SweepSpecError(f"{path}: the CSV table is empty; give a header of keys and rows")
    header = [h.strip() for h in numbered[0][1]]
    for column, key in enumerate(header, 1):
        if key != RUN_NAME_COLUMN:
            try:
                check_key(key, where=f"{path}:1: column {column}")
            except ConfigError as exc:
                raise SweepSpecError(str(exc)) from None
    dupes = sorted({k for k in header if header.count(k) > 1})
    if dupes:
        raise SweepSpecError(f"{path}:1: column {dupes[0]!r} appears twice in the header")
    rows = []
    for n, row in numbered[1:]:
        if len(row) != len(header):
            raise SweepSpecError(
                f"{path}:{n}: row has {len(row)} cells but the header has {len(header)}; "
                "every row needs one cell per column (leave a cell empty to keep the base value)"
            )
        cells = {}
        for key, cell in zip(header, row, strict=True):
            if cell.strip():
                at = f"{path}:{n}: column {key!r}"
                text = cell.strip()
                cells[key] = text if key == RUN_NAME_COLUMN else parse_scalar(cell, where=at)
        rows.append(cells)
    if not rows:
        raise SweepSpecError(f"{path}: the CSV table has a header but no rows")
    return tuple(rows), tuple(header)


@dataclass(frozen=True)
class Sweep:
    """A sweep: flows, a base config, and the blocks that vary it."""

    name: str
    flows: tuple[Path, ...]
    base: Mapping[str, Any] = field(default_factory=dict)
    grid: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    zip: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    table: tuple[Mapping[str, Any], ...] | None = None
    exclude: tuple[Mapping[str, Any], ...] = ()
    run_name: str | None = None
    preload: tuple[str, ...] = ()
    #: sampled points of a space (``ductaflow.space``), times the other blocks
    sample: SampleBlock | None = None
    #: a search instead of fixed runs (``ductaflow.study``); no other block goes with it
    optimize: OptimizeBlock | None = None
    #: Refuse to run (exit 2) when the flows' source checks warn (``--strict``).
    strict: bool = False
    #: Where the sweep came from (a spec file), for messages.
    source: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "flows", tuple(Path(f) for f in self.flows))
        object.__setattr__(self, "exclude", tuple(self.exclude))
        object.__setattr__(self, "preload", tuple(self.preload))
        if self.table is not None:
            object.__setattr__(self, "table", tuple(self.table))
        self._validate()

    # -- messages -----------------------------------------------------------------------------
    def _where(self, key: str) -> str:
        return f"{self.source or f'sweep {self.name!r}'}: {key!r}"

    def _error(self, key: str, message: str) -> SweepSpecError:
        return SweepSpecError(f"{self._where(key)}: {message}")

    def _check_key(self, key: Any, block: str) -> None:
        if not isinstance(key, str):
            raise self._error(block, f"key {key!r} must be a string")
        try:
            check_key(key, where=self._where(f"{block}.{key}"))
        except ConfigError as exc:
            raise SweepSpecError(str(exc)) from None

    def _validate(self) -> None:
        if not isinstance(self.name, str) or sanitize_name(self.name) != self.name:
            raise self._error(
                "name", f"{self.name!r} is not a usable directory name; use letters, digits, ._-="
            )
        if not self.flows:
            raise self._error("flows", "no flows given; list at least one flow (.py, .md, .ipynb)")
        if not isinstance(self.base, Mapping):
            raise self._error("base", "must be a JSON object or the path of a JSON file")
        for block in ("grid", "zip"):
            axes = getattr(self, block)
            if not isinstance(axes, Mapping):
                raise self._error(
                    block, 'must be an object of key: [values], e.g. {"alpha": [1, 2]}'
                )
            for key, values in axes.items():
                self._check_key(key, block)
                if not isinstance(values, list | tuple):
                    raise self._error(f"{block}.{key}", "must be a list of values")
                if not values:
                    raise self._error(
                        f"{block}.{key}", "is an empty list, so the sweep has no runs"
                    )
        lengths = {k: len(v) for k, v in self.zip.items()}
        if len(set(lengths.values())) > 1:
            detail = ", ".join(f"{k}: {n}" for k, n in lengths.items())
            raise self._error("zip", f"lists must have equal lengths ({detail})")
        seen: dict[str, str] = {}
        columns = {k for row in self.table or () for k in row if k != RUN_NAME_COLUMN}
        sampled = self.sample.keys if self.sample else ()
        if self.optimize is not None:
            given = {"grid": self.grid, "zip": self.zip, "table": self.table,
                     "sample": self.sample}  # fmt: skip
            for block in FIXED_BLOCKS:
                if given[block]:
                    raise self._error(
                        "optimize", f"cannot be combined with {block!r}: the study chooses "
                        f"every run; put fixed values in 'base' or make {block!r} a dimension",
                    )  # fmt: skip
            if self.run_name is not None and "{trial}" not in str(self.run_name):
                raise self._error(
                    "run_name", "an optimize sweep's run names need {trial}, e.g. "
                    '"t{trial}-{hash}"',
                )  # fmt: skip
        blocks = (("grid", self.grid), ("zip", self.zip), ("table", columns), ("sample", sampled))
        for block, keys in blocks:
            for key in keys:
                if key in seen:
                    raise self._error(key, f"is varied in both {seen[key]} and {block}; keep one")
                seen[key] = block
        for i, entry in enumerate(self.exclude):
            if not isinstance(entry, Mapping) or not entry:
                raise self._error(f"exclude[{i}]", 'must be an object like {"alpha": 0.3}')
            for key in entry:
                self._check_key(key, f"exclude[{i}]")
        if not isinstance(self.strict, bool):
            raise self._error("strict", "must be true or false")
        if self.run_name is not None and not isinstance(self.run_name, str):
            raise self._error("run_name", 'must be a template string like "a{alpha}-{hash}"')

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, **overrides: Any) -> Sweep:
        """A sweep from a JSON spec, or from a CSV table (then ``flows=`` is needed)."""
        path = Path(path)
        if path.suffix.lower() == ".csv":
            rows, _ = load_table(path)
            flows = overrides.pop("flows", None)
            if not flows:
                raise SweepSpecError(f"{path}: a CSV sweep needs a flow; give --flow FLOW.py")
            base = overrides.pop("base", None) or {}
            if not isinstance(base, Mapping):
                base = _load_base(Path(base), str(path))
            name = overrides.pop("name", None) or sanitize_name(path.stem)
            return cls(name=name, flows=tuple(flows), base=base, table=rows, source=str(path),
                       **overrides)  # fmt: skip
        data = load_json(path, what="sweep spec")
        if not isinstance(data, dict):
            raise SweepSpecError(f"{path}: a sweep spec must be a JSON object")
        if "name" not in data and "name" not in overrides:
            overrides["name"] = sanitize_name(path.stem)
        return cls.from_dict({**data, **overrides}, base_dir=path.parent, source=str(path))

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], base_dir: str | Path = ".", source: str = ""
    ) -> Sweep:
        """A sweep from a spec dict; relative paths in it are relative to ``base_dir``."""
        where = source or "sweep spec"
        unknown = sorted(set(data) - set(SPEC_KEYS))
        if unknown:
            raise SweepSpecError(
                f"{where}: unknown key {unknown[0]!r}; the keys are: {', '.join(SPEC_KEYS)}"
            )
        base_dir = Path(base_dir)
        flows = data.get("flows")
        if isinstance(flows, str):
            flows = [flows]
        if not isinstance(flows, list) or not all(isinstance(f, str) for f in flows):
            raise SweepSpecError(f"{where}: 'flows': give a list of flow paths (.py, .md, .ipynb)")
        base = data.get("base", {})
        if isinstance(base, str):
            base = _load_base(base_dir / base, where)
        table = data.get("table")
        if isinstance(table, str):
            table, _ = load_table(base_dir / table)
        elif table is not None:
            if not isinstance(table, list) or not all(isinstance(r, dict) for r in table):
                raise SweepSpecError(f"{where}: 'table': give a CSV path or a list of objects")
            table = tuple(table)
        exclude = data.get("exclude", [])
        if not isinstance(exclude, list):
            raise SweepSpecError(f"{where}: 'exclude': give a list of objects")
        sample = data.get("sample")
        if sample is not None:
            sample = parse_sample(sample, f"{where}: 'sample'")
        optimize = data.get("optimize")
        if optimize is not None:
            optimize = parse_optimize(optimize, f"{where}: 'optimize'")
        preload = data.get("preload", [])
        if not isinstance(preload, list) or not all(isinstance(m, str) for m in preload):
            raise SweepSpecError(f"{where}: 'preload': give a list of module names")
        return cls(
            name=data.get("name", "sweep"),
            flows=tuple(base_dir / f for f in flows),
            base=base,
            grid=data.get("grid", {}),
            zip=data.get("zip", {}),
            table=table,
            exclude=tuple(exclude),
            run_name=data.get("run_name"),
            preload=tuple(preload),
            sample=sample,
            optimize=optimize,
            strict=data.get("strict", False),
            source=source,
        )

    @classmethod
    def from_frame(
        cls,
        frame: Any,
        *,
        name: str,
        flows: Iterable[str | Path],
        base: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> Sweep:
        """A sweep whose table is a pandas DataFrame (columns are dotted keys; NaN keeps base)."""
        rows = []
        for record in frame.to_dict(orient="records"):
            row = {}
            for key, value in record.items():
                if hasattr(value, "item"):  # numpy scalars to Python
                    value = value.item()
                if value is None or (isinstance(value, float) and math.isnan(value)):
                    continue
                row[str(key)] = value
            rows.append(row)
        return cls(name=name, flows=tuple(flows), base=dict(base or {}), table=tuple(rows),
                   **kwargs)  # fmt: skip

    # -- expansion ------------------------------------------------------------------------------
    @property
    def varied_keys(self) -> tuple[str, ...]:
        """The keys the blocks vary, sorted: they name the runs."""
        columns = {k for row in self.table or () for k in row if k != RUN_NAME_COLUMN}
        sampled = self.sample.keys if self.sample else ()
        searched = self.optimize.keys if self.optimize else ()
        return tuple(sorted({*self.grid, *self.zip, *columns, *sampled, *searched}))

    def _overrides(
        self, varied: Sequence[str]
    ) -> Iterator[tuple[tuple[_Cell, ...], str | None, int | None]]:
        """Each run's overrides of the base as cells, its given name, and its sample point's
        number. A cell is made once per value of a block (see ``_Cell``)."""

        def cells(items: Iterable[tuple[str, Any]]) -> tuple[_Cell, ...]:
            return tuple(_cell(key, value, key in named) for key, value in items)

        named = set(varied)
        axes = [[_cell(key, v, key in named) for v in values] for key, values in self.grid.items()]
        zip_rows = [
            cells(zip(self.zip, row, strict=True)) for row in zip(*self.zip.values(), strict=True)
        ]
        table = [
            (
                row.get(RUN_NAME_COLUMN),
                cells((k, v) for k, v in row.items() if k != RUN_NAME_COLUMN),
            )
            for row in (self.table if self.table is not None else ({},))
        ]
        points = (
            [(n, cells(p.items())) for n, p in enumerate(self.sample.points())]
            if self.sample
            else [(None, ())]
        )
        for grid_cells in itertools.product(*axes):
            for zip_cells in zip_rows or [()]:
                head = grid_cells + zip_cells
                for name, row_cells in table:
                    for number, point_cells in points:
                        yield head + row_cells + point_cells, name, number

    def _excluded(self, config: Mapping[str, Any]) -> bool:
        return any(
            all(_same(get_dotted(config, k, _MISSING), v) for k, v in entry.items())
            for entry in self.exclude
        )

    def _name(
        self,
        config: Mapping[str, Any],
        digest: str,
        given: str | None,
        varied: Sequence[str],
        number: int | None = None,
    ) -> str:
        if given:
            return sanitize_name(given)
        if self.run_name:
            return sanitize_name(_PLACEHOLDER.sub(lambda m: self._fill(m, config, digest),
                                                  self.run_name))  # fmt: skip
        parts = [] if number is None else [f"sample={number:04d}"]
        for key in varied:
            value = get_dotted(config, key, _MISSING)
            if value is not _MISSING:
                parts.append(f"{key}={_fmt(value)}")
        readable = sanitize_name("_".join(parts), NAME_MAX - 9) if parts else ""
        return f"{readable}-{digest[:8]}" if readable else digest[:8]

    def _fill(
        self, match: re.Match[str], config: Mapping[str, Any], digest: str, trial: int | None = None
    ) -> str:
        key = match.group(1)
        if key == "hash":
            return digest[:8]
        if key == "trial" and trial is not None:
            return f"{trial:04d}"
        value = get_dotted(config, key, _MISSING)
        if value is _MISSING:
            raise self._error(
                "run_name", f"{{{key}}} is not a key of the config; use a dotted key or {{hash}}"
            )
        return _fmt(value)

    def expand(self, runs_root: str | Path = "runs", *, inspect: bool = True) -> list[RunSpec]:
        """Every run of the sweep, validated: flows exist, names are unique, nothing is empty.

        ``inspect``: also read each flow as a notebook and check its source (``checks``); a
        plan that runs nothing (``--dry-run``) only hashes them.
        """
        if self.optimize is not None:
            raise self._error("optimize", "an optimize sweep's runs come from its study")
        with gc_paused():
            return self._expand(runs_root, inspect)

    def flow_refs(self, inspect: bool = True) -> tuple[FlowRef, ...]:
        """The sweep's flows, hashed (and, ``inspect``, read as notebooks), checked once."""
        try:
            flows = tuple(FlowRef.from_path(f, inspect=inspect) for f in self.flows)
        except InputError as exc:
            raise self._error("flows", str(exc)) from None
        stems: dict[str, Path] = {}
        for ref in flows:
            if ref.name in stems and stems[ref.name] != ref.path:
                raise self._error(
                    "flows", f"{stems[ref.name]} and {ref.path} share the name {ref.name!r}, so "
                    "their executed notebooks would overwrite each other; rename one",
                )  # fmt: skip
            stems[ref.name] = ref.path
        return flows

    def trial_spec(
        self,
        number: int,
        params: Mapping[str, Any],
        flows: tuple[FlowRef, ...],
        runs_root: str | Path,
        name: str | None = None,
    ) -> RunSpec:
        """The run of an optimize sweep's trial ``number`` with the study's ``params``; ``name``
        (a run directory the study remembers) wins over the naming rule."""
        config: Mapping[str, Any] = self.base
        try:
            for key, value in params.items():
                config = set_dotted(config, key, value)
        except InputError as exc:
            raise SweepSpecError(f"{self._where('base')}: {exc}") from None
        digest = config_hash(config)
        if name is None and self.run_name:
            name = sanitize_name(_PLACEHOLDER.sub(
                lambda m: self._fill(m, config, digest, number), self.run_name))  # fmt: skip
        name = name or f"trial={number:04d}-{digest[:8]}"
        return RunSpec(
            run_dir=Path(runs_root).absolute() / self.name / name, config=config, flows=flows,
            sweep=self.name, name=name, config_hash=digest, labels={"trial": number},
        )  # fmt: skip

    def check(self, specs: Sequence[RunSpec], kernel: str | None = None) -> list[str]:
        """The flows' source checks for these runs of the sweep, before any of them runs: logged
        warnings, or (``strict``) an ``InputError``; ``kernel`` is ``--kernel`` (None: each flow's
        own kernelspec must be installed). See ``checks.check_runs``."""
        if not specs or any(f.facts is None for f in specs[0].flows):
            return []  # expanded without inspecting the flows: nothing to check
        facts = [f.facts for f in specs[0].flows if f.facts is not None]
        return check_runs(facts, [s.config for s in specs], self.varied_keys, strict=self.strict,
                          where=self.source or f"sweep {self.name!r}", kernel=kernel)  # fmt: skip

    def _expand(self, runs_root: str | Path, inspect: bool = True) -> list[RunSpec]:
        flows = self.flow_refs(inspect)
        sweep_dir = Path(runs_root).absolute() / self.name
        # a child path without parsing its name again (a third of a run's expansion); the name
        # is one safe path part (``sanitize_name``)
        child = getattr(sweep_dir, "_make_child_relpath", sweep_dir.joinpath)
        specs: list[RunSpec] = []
        names: dict[str, int] = {}
        # sampled values are long floats: the point's number names them instead
        varied = [k for k in self.varied_keys if not self.sample or k not in self.sample.keys]
        shapes: dict[tuple[str, ...], _Shape] = {}
        for cells, given, number in self._overrides(varied):
            keys = tuple([c.key for c in cells])
            shape = shapes.get(keys)
            if shape is None:
                shape = shapes[keys] = _Shape.of(self.base, keys, varied)
            values = [c.value for c in cells]
            try:
                if shape.overlay is not None:
                    config: Mapping[str, Any] = shape.overlay.apply(values)
                else:
                    config = self.base
                    for key, value in zip(keys, values, strict=True):
                        config = set_dotted(config, key, value)
            except InputError as exc:
                raise SweepSpecError(f"{self._where('base')}: {exc}") from None
            if self.exclude and self._excluded(config):
                continue
            if shape.overlay is not None:
                digest = shape.overlay.hash(config, [c.text for c in cells])
            else:
                digest = config_hash(config)
            if given or self.run_name or shape.name_slots is None:
                name = self._name(config, digest, given, varied, number)
            else:  # the default name from the cells' parts (``_name`` gives the same)
                parts = [] if number is None else [f"sample={number:04d}"]
                parts += [cells[i].part for i in shape.name_slots]  # type: ignore[misc]
                readable = _finish_name("_".join(parts), NAME_MAX - 9) if parts else ""
                name = f"{readable}-{digest[:8]}" if readable else digest[:8]
            if name in names:
                first = specs[names[name]]
                what = "the same config" if first.config_hash == digest else "two configs"
                raise self._error(
                    "run_name" if (self.run_name or given) else "grid",
                    f"run name {name!r} is given to {what} (runs {names[name] + 1} and "
                    f"{len(specs) + 1}); make each run distinct (add {{hash}} to run_name)",
                )
            names[name] = len(specs)
            specs.append(
                RunSpec(
                    run_dir=child(name),
                    config=config,
                    flows=flows,
                    sweep=self.name,
                    name=name,
                    config_hash=digest,
                    labels={} if number is None else {"sample": number},
                )
            )
        if not specs:
            raise self._error("exclude" if self.exclude else "grid", "the sweep has no runs")
        return specs


def _load_base(path: Path, where: str) -> dict[str, Any]:
    try:
        return load_config(path)
    except ConfigError as exc:
        raise SweepSpecError(f"{where}: 'base': {exc}") from None
