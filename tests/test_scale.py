"""What makes 100,000-run sweeps quick must give the very runs the plain way gives (no kernels)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from ductaflow.config import Overlay, canonical_json, config_hash, get_dotted, set_dotted
from ductaflow.executor import LIVE_MIN_GAP_S, LIVE_SHARE, LiveReport
from ductaflow.index import IndexFile, load_index
from ductaflow.rundir import write_json, write_status
from ductaflow.spec import FlowResult, RunResult
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


# -- a 100,000-run index is read without opening each run; it must read as if it did ----------
def finished_run(root: Path, sweep: str, i: int, status: str = "ok") -> Path:
    """A run directory as the engine leaves it, without a kernel."""
    run_dir = root / sweep / f"x={i}"
    run_dir.mkdir(parents=True)
    write_json(run_dir / "CONFIG.json", {"x": i})
    if status == "ok":
        write_json(run_dir / "results.json", {"y": i * 2})
    stamp = "2025-03-01T10:00:00.000+00:00"
    flow = FlowResult("f", "/f/f.py", "0", status, "f_executed.ipynb", stamp, stamp, 1.0)
    write_status(RunResult(run_dir, status, stamp, stamp, 1.0 + i, f"h{i}", (flow,),
                           sweep=sweep, name=run_dir.name))  # fmt: skip
    return run_dir


def frames_alike(root: Path) -> None:
    """``load_index`` (the file, checked) gives what a rebuild from the run directories gives."""
    checked = load_index(root)
    rebuilt = load_index(root, rebuild=True)  # also rewrites the file: the next case starts sound
    pd.testing.assert_frame_equal(checked, rebuilt)


def test_the_checked_index_reads_as_the_run_directories(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    dirs = [finished_run(root, sweep, i) for sweep in ("a", "b") for i in range(6)]
    index = IndexFile(root)
    index.rebuild()
    frames_alike(root)  # a sound, sorted file: its own text is parsed

    # rows appended out of order (as runs finish); then one run twice (its last row wins)
    rows = index.read()
    header = (root / "index.csv").read_text(encoding="utf-8").splitlines(keepends=True)[0]
    for extra in ([], [rows[3]]):
        (root / "index.csv").write_text(header, encoding="utf-8")
        for row in [*reversed(rows), *extra]:
            index.append(row)
        frames_alike(root)

    # a finished run without its row (its conductor was killed before appending it)
    lost = finished_run(root, "b", 7, status="failed")
    frames_alike(root)
    assert "b/x=7" in {Path(d).relative_to(root).as_posix() for d in load_index(root)["run_dir"]}

    # a row recorded running whose process is gone: read again from its directory
    running = dict(index.read()[0], status="running")
    index.append(running)
    frames_alike(root)

    # a run_dir recorded absolute, in a root since moved: placed under this root
    moved = dict(index.read()[1], run_dir=f"/elsewhere/runs/{Path(dirs[1]).parent.name}/x=1")
    index.append(moved)
    frames_alike(root)
    assert lost.is_dir()


def test_the_live_report_keeps_within_its_budget(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    for i in range(3):
        finished_run(root, "s", i)
    IndexFile(root).rebuild()
    live = LiveReport(root, "s")
    assert live.due(0.0)  # nothing written yet: the first run writes it at once
    page = live.refresh()
    assert page is not None and page.is_file()
    wrote = page.stat().st_mtime_ns
    start, spent, ended = live._since, live._spent, live._last
    assert start is not None and spent > 0
    # not again until its time so far is LIVE_SHARE of the time since the first write, and
    # LIVE_MIN_GAP_S after the last write ended
    enough = max(start + spent / LIVE_SHARE, ended + LIVE_MIN_GAP_S)
    assert not live.due(start + spent)
    assert not live.due(enough - 1e-3)
    assert live.due(enough + 1e-3)
    assert live.refresh(force=True) == page  # the end of the sweep writes it whatever the cost
    assert page.stat().st_mtime_ns > wrote and live._spent > spent
    assert not live.due(time.monotonic())  # and that write is counted too
