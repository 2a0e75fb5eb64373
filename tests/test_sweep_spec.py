"""Sweep specs: expansion, naming, identity and validation (no kernels)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import run_cli

from ductaflow.config import config_hash
from ductaflow.errors import SweepSpecError
from ductaflow.sweep import Sweep, sanitize_name

FLOW = Path(__file__).parent / "flows" / "work.py"


def names(sweep: Sweep, root: Path) -> list[str]:
    return [spec.name for spec in sweep.expand(root)]


def test_blocks_multiply_and_set_dotted_keys(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("x,model.kind\n1,a\n2,\n")
    sweep = Sweep.from_dict(
        {
            "name": "s",
            "flows": [str(FLOW)],
            "base": {"x": 0, "model": {"kind": "base", "depth": 1}},
            "grid": {"alpha": [0.1, 0.2, 0.3], "model.depth": [2, 4]},
            "zip": {"seed": [1, 2], "label": ["a", "b"]},
            "table": "t.csv",
        },
        base_dir=tmp_path,
    )
    specs = sweep.expand(tmp_path / "runs")
    assert len(specs) == 3 * 2 * 2 * 2
    configs = [s.config for s in specs]
    assert {(c["seed"], c["label"]) for c in configs} == {(1, "a"), (2, "b")}
    assert {c["model"]["depth"] for c in configs} == {2, 4}
    assert {c["model"]["kind"] for c in configs} == {"a", "base"}  # an empty cell keeps base
    assert all(isinstance(c["x"], int) for c in configs)  # "1" in a CSV is an int
    assert sweep.base["model"] == {"kind": "base", "depth": 1}  # base is never mutated
    for spec in specs:
        assert spec.run_dir == (tmp_path / "runs" / "s" / spec.name)
        assert spec.config_hash == config_hash(spec.config)


def test_exclude_drops_matching_runs(tmp_path: Path) -> None:
    sweep = Sweep(
        name="s",
        flows=(FLOW,),
        grid={"alpha": [0.1, 0.3], "model.depth": [2, 4]},
        exclude=({"alpha": 0.3, "model.depth": 4},),
    )
    configs = [s.config for s in sweep.expand(tmp_path)]
    assert len(configs) == 3
    assert {"alpha": 0.3, "model": {"depth": 4}} not in configs


def test_default_names_are_readable_and_stable(tmp_path: Path) -> None:
    a = Sweep(name="s", flows=(FLOW,), grid={"alpha": [0.1, 0.2], "model.depth": [2]})
    b = Sweep(name="s", flows=(FLOW,), grid={"model.depth": [2, 8], "alpha": [0.3, 0.2, 0.1]})
    first = names(a, tmp_path)
    # pinned: a change of the hash or the naming would orphan every existing run directory
    assert first == ["alpha=0.1_model.depth=2-b68d82ec", "alpha=0.2_model.depth=2-635036dc"]
    assert set(first) <= set(names(b, tmp_path)), "reordering or extending renamed a run"


#: a fixed config and its hash as this version computes it, written out: the run directories of
#: every existing runs root are named by it, so it must never change by accident
PINNED_CONFIG = {
    "b": {"d": 3, "c": 2},
    "a": 1,
    "name": "é",
    "big": 12345678901234567890,
    "none": None,
    "list": [1, 2.5, "x"],
}
PINNED_HASH = "4084150242ebb0fe206771b77cab8a7daa3953e6a4d582c9d1e8ed949ea344a9"


def test_config_hash_is_pinned(tmp_path: Path) -> None:
    assert config_hash(PINNED_CONFIG) == PINNED_HASH
    reordered = dict(reversed(list(PINNED_CONFIG.items())))
    assert config_hash(reordered) == PINNED_HASH
    sweep = Sweep(name="s", flows=(FLOW,), base=PINNED_CONFIG, grid={"a": [1]})
    (spec,) = sweep.expand(tmp_path)
    assert spec.config_hash == PINNED_HASH and spec.name == f"a=1-{PINNED_HASH[:8]}"


def test_same_config_same_directory_whatever_key_order(tmp_path: Path) -> None:
    one = Sweep(name="s", flows=(FLOW,), base={"a": 1, "b": {"c": 2, "d": 3}}, grid={"x": [1]})
    two = Sweep(name="s", flows=(FLOW,), base={"b": {"d": 3, "c": 2}, "a": 1}, grid={"x": [1]})
    assert one.expand(tmp_path)[0].run_dir == two.expand(tmp_path)[0].run_dir
    other = Sweep(name="s", flows=(FLOW,), base={"a": 1.5}, grid={"x": [1]})
    assert other.expand(tmp_path)[0].run_dir != one.expand(tmp_path)[0].run_dir


def test_run_name_templates_and_csv_names(tmp_path: Path) -> None:
    sweep = Sweep(
        name="s",
        flows=(FLOW,),
        grid={"alpha": [0.1, 0.2], "model.depth": [2, 4]},
        run_name="a{alpha}-d{model.depth}",
    )
    assert names(sweep, tmp_path) == ["a0.1-d2", "a0.1-d4", "a0.2-d2", "a0.2-d4"]
    (tmp_path / "v.csv").write_text("run_name,alpha\nsmooth,1\n,2\n")
    table = Sweep.load(tmp_path / "v.csv", flows=[FLOW])
    got = names(table, tmp_path)
    assert table.name == "v" and got[0] == "smooth" and got[1].startswith("alpha=2-")


@pytest.mark.parametrize(
    ("value", "name"),
    [
        ("../../escape", "__.._escape"),
        ("/etc/passwd", "etc_passwd"),
        ("a/b\\c", "a_b_c"),
        ("..", "_"),
        (".hidden", "_hidden"),
        ("-rf", "_rf"),
        ("x" * 500, "x" * 120),
        ("é∂ƒ", "_"),
    ],
)
def test_names_stay_inside_the_sweep_directory(tmp_path: Path, value: str, name: str) -> None:
    sweep = Sweep(name="s", flows=(FLOW,), grid={"v": [value]}, run_name="{v}")
    (spec,) = sweep.expand(tmp_path)
    assert spec.run_dir.parent == tmp_path / "s"
    assert "/" not in spec.name and not spec.name.startswith((".", "-"))
    assert len(spec.name) <= 120
    default = Sweep(name="s", flows=(FLOW,), grid={"v": [value]}).expand(tmp_path)[0]
    assert default.run_dir.parent == tmp_path / "s" and len(default.name) <= 120
    assert spec.name == name == sanitize_name(value)


def test_duplicate_names_are_an_error(tmp_path: Path) -> None:
    sweep = Sweep(name="s", flows=(FLOW,), grid={"a": [1, 2], "b": [3]}, run_name="b{b}")
    with pytest.raises(SweepSpecError, match="run name 'b3' is given to two configs"):
        sweep.expand(tmp_path)


@pytest.mark.parametrize(
    ("spec", "files", "message"),
    [
        ({"grids": {}}, {}, "unknown key 'grids'"),
        ({"zip": {"a": [1, 2], "b": [1]}}, {}, "lists must have equal lengths (a: 2, b: 1)"),
        ({"grid": {"a": 1}}, {}, "'grid.a': must be a list of values"),
        ({"grid": {"a": []}}, {}, "'grid.a': is an empty list"),
        ({"grid": {"a b": [1]}}, {}, "is not a config key"),
        ({"flows": ["missing.py"]}, {}, "missing.py: flow file not found"),
        ({"base": "nobase.json"}, {}, "'base': nobase.json: config file not found"),
        ({"base": "bad.json"}, {"bad.json": "{,}"}, "bad.json:1:2: invalid JSON"),
        ({"table": "t.csv"}, {"t.csv": "a,b\n1,2\n3\n"}, "t.csv:3: row has 1 cells"),
        ({"table": "t.csv"}, {"t.csv": "a,,b\n1,2,3\n"}, "t.csv:1: column 2: '' is not"),
        ({"table": "t.csv"}, {"t.csv": "a,a\n1,2\n"}, "column 'a' appears twice"),
        ({"exclude": [{"a": 1}], "grid": {"a": [1]}}, {}, "the sweep has no runs"),
        ({"grid": {"a": [1]}, "zip": {"a": [2]}}, {}, "varied in both grid and zip"),
        ({"name": "../x"}, {}, "is not a usable directory name"),
        ({"run_name": "{nope}"}, {}, "{nope} is not a key of the config"),
    ],
)
def test_bad_specs_fail_in_one_line_before_anything_runs(
    tmp_path: Path, spec: dict, files: dict, message: str
) -> None:
    data = {"name": "s", "flows": [str(FLOW)], "grid": {"a": [1]}, **spec}
    (tmp_path / "spec.json").write_text(json.dumps(data))
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    proc = run_cli("sweep", "spec.json", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "spec.json" in proc.stderr or "t.csv" in proc.stderr or "bad.json" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists(), "a bad spec created directories"


def test_malformed_spec_json_reports_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "spec.json").write_text('{"name": "s",\n "grid": {"a": [1,]}}')
    proc = run_cli("sweep", "spec.json", cwd=tmp_path)
    assert proc.returncode == 2 and "spec.json:2:" in proc.stderr and "invalid JSON" in proc.stderr


def test_csv_sweep_needs_a_flow(tmp_path: Path) -> None:
    (tmp_path / "v.csv").write_text("alpha\n1\n")
    proc = run_cli("sweep", "v.csv", cwd=tmp_path)
    assert proc.returncode == 2 and "give --flow" in proc.stderr


def test_from_frame_reads_a_dataframe(tmp_path: Path) -> None:
    import pandas as pd

    frame = pd.DataFrame({"alpha": [0.1, float("nan")], "model.depth": [2, 3]})
    sweep = Sweep.from_frame(frame, name="f", flows=[FLOW], base={"alpha": 9.0})
    configs = [s.config for s in sweep.expand(tmp_path)]
    assert configs == [
        {"alpha": 0.1, "model": {"depth": 2}},
        {"alpha": 9.0, "model": {"depth": 3}},
    ]
    assert type(configs[0]["model"]["depth"]) is int


def test_expanding_a_large_grid(tmp_path: Path) -> None:
    """10,000 runs, each its own directory (the speed is benchmarks/bench_sweep.py's business:
    no wall-clock assert here)."""
    sweep = Sweep(name="big", flows=(FLOW,), grid={"a": list(range(100)), "b": list(range(100))})
    specs = sweep.expand(tmp_path)
    assert len(specs) == 10_000 and len({s.run_dir for s in specs}) == 10_000
