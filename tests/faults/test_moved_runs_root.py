"""Fault 8 (and 12.txt item 6): a runs root moved or copied keeps one row per run."""

from __future__ import annotations

import shutil
from pathlib import Path

from conftest import run_cli
from faultkit import index_rows, write_flow, write_spec

from ductaflow.index import load_index


def sweep(spec: Path, root: Path) -> str:
    proc = run_cli("sweep", spec, "--runs-root", root, "-j", "3", "--no-report", "--no-progress",
                   cwd=spec.parent)  # fmt: skip
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    return proc.stdout


def test_a_moved_and_a_copied_root_load_and_sweep(tmp_path: Path) -> None:
    write_flow(tmp_path)
    spec = write_spec(tmp_path, grid={"x": [1, 2, 3]})
    first = tmp_path / "first"
    sweep(spec, first)
    assert {r["run_dir"] for r in index_rows(first)} == {
        f"s/{d.name}" for d in (first / "s").iterdir()
    }, "run_dir is not relative to the runs root"

    moved = tmp_path / "elsewhere" / "moved"
    moved.parent.mkdir()
    shutil.move(first, moved)
    frame = load_index(moved)
    assert len(frame) == 3
    assert all(Path(d).parent.parent == moved and Path(d).is_dir() for d in frame["run_dir"])

    copied = tmp_path / "copied"
    shutil.copytree(moved, copied)
    assert "3 skipped" in sweep(spec, copied)
    assert len(index_rows(copied)) == 3, "the copy's rows were doubled"
    assert len(load_index(copied)) == 3
    assert run_cli("report", copied, "--no-notebooks", cwd=tmp_path).returncode == 0


def test_an_old_index_with_absolute_paths_in_a_copied_root(tmp_path: Path) -> None:
    """Indexes written before run_dir was relative hold absolute paths of the old root."""
    write_flow(tmp_path)
    spec = write_spec(tmp_path, grid={"x": [1, 2, 3]})
    old = tmp_path / "old"
    sweep(spec, old)
    index = old / "index.csv"
    lines = index.read_text(encoding="utf-8").splitlines(keepends=True)
    index.write_text(
        lines[0] + "".join(line.replace(",s/", f",{old}/s/", 1) for line in lines[1:]),
        encoding="utf-8",
    )
    assert str(old) in index.read_text(encoding="utf-8")
    copied = tmp_path / "copied"
    shutil.copytree(old, copied)
    sweep(spec, copied)
    rows = index_rows(copied)
    assert len(rows) == 3 and all(r["run_dir"].startswith("s/") for r in rows), rows
