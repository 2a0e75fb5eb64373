"""What makes 100,000-run sweeps quick must give the very runs the plain way gives (no kernels)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from ductaflow.config import Overlay, canonical_json, config_hash, get_dotted, set_dotted
from ductaflow.sweep import NAME_MAX, Sweep, sanitize_name

FLOW = Path(__file__).parent / "flows" / "work.py"

BASES: list[dict[str, Any]] = [
    {},
    {"x": 0, "model": {"kind": "base", "depth": 1}, "z": {"q": {"r": 1}}},
    {"a": {"b": {"x": 1}, "z": 2}, "q": "{not a slot}"},
]
KEYS = [("alpha",), ("alpha", "model.depth", "seed"), ("a.e", "a.b.d", "new.x.y", "q", "a.b.c")]
VALUES = [0.1, 1e-9, float("nan"), True, None, "x y/z", "é}{", [1, {"b": 1, "a": 2}], {"d": {}}]


def in_turn(base: Mapping[str, Any], keys: tuple[str, ...], values: list[Any]) -> Any:
    config: Mapping[str, Any] = base
    for key, value in zip(keys, values, strict=True):
        config = set_dotted(config, key, value)
    return config


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("keys", KEYS)
def test_overlay_builds_and_hashes_as_set_dotted_in_turn(base: dict, keys: tuple) -> None:
    overlay = Overlay.of(base, keys)
    assert overlay is not None
    for shift in range(len(VALUES)):
        values = [VALUES[(shift + i) % len(VALUES)] for i in range(len(keys))]
        config = overlay.apply(values)
        expected = in_turn(base, keys, values)
        assert json.dumps(config) == json.dumps(expected)  # same dicts, same key order
        texts = [canonical_json(v) for v in values]
        assert overlay.hash(config, texts) == config_hash(expected)
    assert json.dumps(base) == json.dumps(BASES[BASES.index(base)])  # the base is left alone


def test_overlay_declines_what_it_cannot_do_the_same() -> None:
    assert Overlay.of({}, ("model", "model.depth")) is None  # a key is another's prefix
    assert Overlay.of({"model": 3}, ("model.depth",)) is None  # set_dotted raises there
    assert Overlay.of({}, ("a", "a")) is None
    slot = Overlay.of({"k": "\x00ductaflow-slot-0\x00"}, ("a",))
    assert slot is not None and slot.hash({"k": "\x00ductaflow-slot-0\x00", "a": 1}, ["1"]) == (
        config_hash({"k": "\x00ductaflow-slot-0\x00", "a": 1})
    )


def plain_name(config: Mapping[str, Any], digest: str, varied: tuple[str, ...]) -> str:
    """The default run name, as the sweep docs define it."""
    parts = []
    missing = object()
    for key in varied:
        value = get_dotted(config, key, missing)
        if value is not missing:
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            parts.append(f"{key}={repr(value) if isinstance(value, float) else text}")
    readable = sanitize_name("_".join(parts), NAME_MAX - 9) if parts else ""
    return f"{readable}-{digest[:8]}" if readable else digest[:8]


SWEEPS: list[dict[str, Any]] = [
    {"grid": {"alpha": [0.1, 0.2, 1e-9], "model.depth": [1, 2], "seed": [1, True, "x y/z"]}},
    {
        "base": {"x": 0, "model": {"kind": "base", "depth": 1}},
        "grid": {"alpha": [0.1, 0.2], "model.depth": [2, 4], "z.q.s": ["é", "..a"]},
        "zip": {"seed": [1, 2], "label": ["a", "b"]},
        "table": ({"x": 1, "model.kind": "a"}, {"x": 2}),
    },
    {
        "base": {"model": {"depth": 1}},
        "grid": {"model": [{"depth": 3, "k": 1}, {"depth": 5}]},
        "table": ({"model.depth": 9}, {"x": 1}),
    },
    {"grid": {"-a": ["-x", ".y", "_z_"]}},
]


@pytest.mark.parametrize("spec", SWEEPS)
def test_expanded_runs_are_the_plain_ones(tmp_path: Path, spec: dict) -> None:
    sweep = Sweep(name="s", flows=(FLOW,), **spec)
    for run in sweep.expand(tmp_path):
        assert run.config_hash == config_hash(run.config)
        assert run.name == plain_name(run.config, run.config_hash, sweep.varied_keys)
        assert run.run_dir == tmp_path.absolute() / "s" / run.name
        assert type(run.run_dir) is type(tmp_path)
