"""Fault 3: config keys that are names ductaflow or the kernel use stay in ``config`` only."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from conftest import read_json, run_cli
from faultkit import index_rows, write_flow, write_spec

from ductaflow.config import is_variable_name
from ductaflow.notebook import injected_source

#: Writes what the kernel holds under the names a hostile config could take.
PROBE = """\
# %% tags=["parameters"]
import ductaflow

ductaflow.parameters(globals())

# %%
import json

with open("out.json", "w", encoding="utf-8") as fh:
    json.dump({
        "config": config,
        "builtins": type(__builtins__).__name__,
        "oh": type(_oh).__name__,
        "y": globals().get("y"),
    }, fh)

# %%
print("the kernel still runs cells")
"""


def test_every_name_the_injected_cell_binds_is_reserved() -> None:
    source, _ = injected_source({"a": 1})
    bound = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            bound.add(node.id)
        elif isinstance(node, ast.alias):
            bound.add(node.asname or node.name)
    bound.discard("a")
    assert bound and not any(is_variable_name(name) for name in bound), bound


@pytest.mark.parametrize(
    "name", ["config", "__builtins__", "__name__", "_ductaflow_json", "_oh", "get_ipython", "_3"]
)
def test_a_reserved_name_is_not_a_variable(name: str) -> None:
    assert not is_variable_name(name)


def test_a_grid_over_reserved_names_keeps_config_whole(tmp_path: Path) -> None:
    write_flow(tmp_path, "probe.py", PROBE)
    write_spec(tmp_path, flow="probe.py", grid={"config": ["a", "b"]}, base={"__builtins__": 1})
    proc = run_cli("sweep", "s.json", "-j", "2", "--no-report", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = index_rows(tmp_path / "runs")
    assert sorted(r["param.config"] for r in rows) == ["a", "b"]
    for run_dir in (tmp_path / "runs" / "s").iterdir():
        out = read_json(run_dir / "out.json")
        # ``config`` in the kernel is the whole config; the key is in it, not bound as a name
        assert set(out["config"]) == {"config", "__builtins__"}
        assert out["builtins"] in ("module", "dict")
        status = read_json(run_dir / "status.json")
        assert any("'config'" in w["message"] for w in status["warnings"]), status["warnings"]


@pytest.mark.parametrize("item", ["config=x", "__builtins__=x", "_oh=1"])
def test_set_of_a_reserved_name_runs_ok(tmp_path: Path, item: str) -> None:
    write_flow(tmp_path, "probe.py", PROBE)
    proc = run_cli(
        "run", "probe.py", "--set", item, "--set", "y=2", "--run-dir", "rd", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads((tmp_path / "rd" / "out.json").read_text())
    key, _, value = item.partition("=")
    assert out["config"] == {key: int(value) if value.isdigit() else value, "y": 2}
    assert out["builtins"] in ("module", "dict") and out["oh"] == "dict" and out["y"] == 2
