"""Fault 1: a lone surrogate in a recorded result fails that run, never the sweep or the root."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_cli
from faultkit import index_rows, write_flow, write_spec

from ductaflow.index import load_index


def test_a_surrogate_result_fails_its_run_only(tmp_path: Path) -> None:
    write_flow(tmp_path)
    write_spec(tmp_path, table=[{"x": 1}, {"x": 2, "weird": True}, {"x": 3}])
    # one run at a time: the run after the weird one must still execute
    proc = run_cli("sweep", "s.json", "-j", "1", "--no-report", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "2 ok, 1 failed" in proc.stdout, proc.stdout
    root = tmp_path / "runs"
    rows = {r["param.x"]: r for r in index_rows(root)}
    assert sorted(rows) == ["1", "2", "3"]
    assert [rows[x]["status"] for x in "123"] == ["ok", "failed", "ok"]
    assert "lone surrogate" in rows["2"]["error"], rows["2"]

    # the root is not poisoned: index, a second sweep and load_index all work
    assert run_cli("index", cwd=tmp_path).returncode == 0
    again = run_cli(
        "sweep", "s.json", "--no-report", "--no-progress", "--only", "new", cwd=tmp_path
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(load_index(root)) == 3


def test_a_results_file_with_a_surrogate_never_breaks_the_index(tmp_path: Path) -> None:
    """A flow that writes results.json itself: the index escapes what UTF-8 cannot hold."""
    write_flow(tmp_path)
    write_spec(tmp_path, grid={"x": [1, 2]})
    proc = run_cli("sweep", "s.json", "-j", "2", "--no-report", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    root = tmp_path / "runs"
    run_dir = next((root / "s").iterdir())
    (run_dir / "results.json").write_text(json.dumps({"weird": "\ud800"}), encoding="utf-8")
    proc = run_cli("index", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    frame = load_index(root)
    assert "\\ud800" in set(frame["result.weird"].dropna())
    assert run_cli("report", "--no-notebooks", cwd=tmp_path).returncode == 0
