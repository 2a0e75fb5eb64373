"""Search spaces and sampled points: the ``sample`` block of a sweep spec.

A space maps dotted config keys to dimensions::

    {"alpha": {"uniform": [0, 1]}, "lr": {"loguniform": [1e-4, 0.1]},
     "depth": {"int": [1, 8]}, "model.kind": {"choice": ["a", "b"]}}

``int`` bounds are inclusive. A ``sample`` block draws ``n`` points of a space with a seeded
method: ``random`` (numpy), ``sobol``, ``halton`` or ``lhs`` (``scipy.stats.qmc``, the
``ductaflow[sample]`` extra). The same block always gives the same points, so run directories are
stable; for ``random``, ``sobol`` and ``halton`` the first ``n`` points stay the same when ``n``
grows (only the new ones run), while ``lhs`` lays out all its points anew for another ``n``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import InputError, SweepSpecError

__all__ = [
    "DIMENSION_KINDS",
    "SAMPLE_METHODS",
    "Dimension",
    "SampleBlock",
    "parse_sample",
    "parse_space",
]

DIMENSION_KINDS = ("uniform", "loguniform", "int", "choice")
SAMPLE_METHODS = ("random", "sobol", "halton", "lhs")
#: methods whose first n points do not depend on n
PREFIX_STABLE = ("random", "sobol", "halton")
SAMPLE_KEYS = ("n", "method", "seed", "space")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Dimension:
    """One key of a space: ``kind`` with ``low``/``high`` bounds, or ``choices``."""

    key: str
    kind: str
    low: float = 0.0
    high: float = 1.0
    choices: tuple[Any, ...] = ()

    def value(self, u: float) -> Any:
        """The value at ``u`` in [0, 1): a float, an int within the bounds, or a choice."""
        if self.kind == "uniform":
            return float(self.low + u * (self.high - self.low))
        if self.kind == "loguniform":
            lo, hi = math.log(self.low), math.log(self.high)
            return float(math.exp(lo + u * (hi - lo)))
        if self.kind == "int":
            span = int(self.high) - int(self.low) + 1
            return int(self.low) + min(int(u * span), span - 1)
        return self.choices[min(int(u * len(self.choices)), len(self.choices) - 1)]


def _dimension(key: str, spec: Any, where: str) -> Dimension:
    here = f"{where}: {key!r}"
    kinds = " | ".join(f'{{"{k}": ...}}' for k in DIMENSION_KINDS)
    if not isinstance(spec, Mapping) or len(spec) != 1:
        raise SweepSpecError(f'{here}: give one of {kinds}, e.g. {{"uniform": [0, 1]}}')
    ((kind, arg),) = spec.items()
    if kind not in DIMENSION_KINDS:
        raise SweepSpecError(f"{here}: unknown kind {kind!r}; use {', '.join(DIMENSION_KINDS)}")
    if kind == "choice":
        if not isinstance(arg, list) or not arg:
            raise SweepSpecError(f'{here}: "choice" needs a non-empty list of values')
        return Dimension(key, kind, choices=tuple(arg))
    if not (isinstance(arg, list) and len(arg) == 2 and all(_number(b) for b in arg)):
        raise SweepSpecError(f'{here}: "{kind}" needs [low, high], two finite numbers')
    low, high = arg
    if kind == "int" and not all(isinstance(b, int) or float(b).is_integer() for b in arg):
        raise SweepSpecError(f'{here}: "int" bounds must be whole numbers, got {arg}')
    if not low < high:
        raise SweepSpecError(f"{here}: the bounds {arg} must be increasing (low < high)")
    if kind == "loguniform" and low <= 0:
        raise SweepSpecError(f'{here}: "loguniform" bounds must be > 0, got {arg}')
    return Dimension(key, kind, float(low), float(high))


def parse_space(space: Any, where: str) -> tuple[Dimension, ...]:
    """The dimensions of a ``space`` object, in key order; ``SweepSpecError`` naming the key."""
    from .config import check_key
    from .errors import ConfigError

    if not isinstance(space, Mapping) or not space:
        raise SweepSpecError(
            f'{where}: give a non-empty object like {{"alpha": {{"uniform": [0, 1]}}}}'
        )
    dims = []
    for key, spec in space.items():
        if not isinstance(key, str):
            raise SweepSpecError(f"{where}: key {key!r} must be a string")
        try:
            check_key(key, where=f"{where}.{key}")
        except ConfigError as exc:
            raise SweepSpecError(str(exc)) from None
        dims.append(_dimension(key, spec, where))
    return tuple(dims)


@dataclass(frozen=True)
class SampleBlock:
    """``n`` points of a space drawn by ``method`` from ``seed``."""

    n: int
    method: str
    seed: int
    space: tuple[Dimension, ...]

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(d.key for d in self.space)

    def unit_points(self) -> list[list[float]]:
        """``n`` points of the unit cube, one coordinate per dimension."""
        d = len(self.space)
        if self.method == "random":
            import numpy as np

            return np.random.default_rng(self.seed).random((self.n, d)).tolist()
        try:
            from scipy.stats import qmc
        except ImportError:
            raise InputError(
                f'sample method {self.method!r} needs scipy: pip install "ductaflow[sample]"'
            ) from None
        if self.method == "sobol":
            engine: Any = qmc.Sobol(d, scramble=True, seed=self.seed)
        elif self.method == "halton":
            engine = qmc.Halton(d, scramble=True, seed=self.seed)
        else:
            engine = qmc.LatinHypercube(d, seed=self.seed)
        with warnings.catch_warnings():  # Sobol's balance wants powers of 2; any n is allowed
            warnings.simplefilter("ignore", UserWarning)
            return engine.random(self.n).tolist()

    def points(self) -> list[dict[str, Any]]:
        """The sampled configs' overrides, point by point: ``{dotted key: value}``."""
        return [
            {dim.key: dim.value(u) for dim, u in zip(self.space, row, strict=True)}
            for row in self.unit_points()
        ]


def parse_sample(block: Any, where: str) -> SampleBlock:
    """A ``sample`` block from a spec, validated; every problem names its key."""
    if not isinstance(block, Mapping):
        raise SweepSpecError(f'{where}: give an object like {{"n": 64, "method": "sobol", ...}}')
    unknown = sorted(set(block) - set(SAMPLE_KEYS))
    if unknown:
        raise SweepSpecError(f"{where}: unknown key {unknown[0]!r}; use {', '.join(SAMPLE_KEYS)}")
    n = block.get("n")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise SweepSpecError(f"{where}.n: give the number of points, a whole number >= 1")
    method = block.get("method", "sobol")
    if method not in SAMPLE_METHODS:
        raise SweepSpecError(
            f"{where}.method: unknown method {method!r}; use {', '.join(SAMPLE_METHODS)}"
        )
    seed = block.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SweepSpecError(f"{where}.seed: give a whole number >= 0")
    return SampleBlock(n, method, seed, parse_space(block.get("space"), f"{where}.space"))
