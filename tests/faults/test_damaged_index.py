"""Fault 6: a damaged ``runs/index.csv`` is detected, reported in one line and repaired.

One runs root of two sweeps (3 runs each, real kernels) is made once; each case damages a copy.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import run_cli
from faultkit import index_rows, write_flow, write_spec

from ductaflow.index import load_index, parse_index


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("made")
    write_flow(base)
    for name in ("a", "b"):
        write_spec(base, name=name, grid={"x": [1, 2, 3]})
        spec = f"{name}.json"
        proc = run_cli("sweep", spec, "-j", "3", "--no-report", "--no-progress", cwd=base)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(index_rows(base / "runs")) == 6
    return base


def _cut_rows(path: Path) -> None:  # a file cut at a line end: sound, but rows are lost
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:4]))


def _extra_field(path: Path) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines) + lines[1].rstrip(b"\n") + b",extra\n")


def _directory(path: Path) -> None:
    path.unlink()
    path.mkdir()
    (path / "keep.txt").write_text("whatever was here")


def _lock_directory(path: Path) -> None:
    lock = path.parent / ".index.lock"
    lock.unlink(missing_ok=True)
    lock.mkdir()


DAMAGES: dict[str, Callable[[Path], None]] = {
    "invalid-byte": lambda p: p.write_bytes(p.read_bytes()[:300] + b"\xff" + p.read_bytes()[300:]),
    "unterminated-quote": lambda p: p.write_bytes(p.read_bytes() + b's,"broken\n'),
    "empty": lambda p: p.write_bytes(b""),
    "no-header": lambda p: p.write_bytes(b"".join(p.read_bytes().splitlines(True)[1:])),
    "half-truncated": lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
    "rows-lost": _cut_rows,
    "extra-field": _extra_field,
    "a-directory": _directory,
    "lock-a-directory": _lock_directory,
}


def damaged_copy(made: Path, tmp_path: Path, damage: str) -> Path:
    root = tmp_path / "runs"
    shutil.copytree(made / "runs", root)
    DAMAGES[damage](root / "index.csv")
    return root


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_load_index_reports_and_repairs(
    made: Path, tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    root = damaged_copy(made, tmp_path, damage)
    with caplog.at_level(logging.WARNING, logger="ductaflow"):
        frame = load_index(root)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert len(frame) == 6 and frame["run_dir"].is_unique
    assert set(frame["status"]) == {"ok"}
    assert all(Path(d).is_dir() for d in frame["run_dir"])
    rows, problem = parse_index((root / "index.csv").read_text(encoding="utf-8"))
    assert problem is None and len(rows) == 6, "the repair was not written back"


#: the damages that broke later sweeps and reports (the rest differ only in how they are read)
CLI_DAMAGES = ["empty", "half-truncated", "rows-lost", "extra-field", "a-directory"]


@pytest.mark.parametrize("damage", CLI_DAMAGES)
def test_sweep_and_report_repair_it(made: Path, tmp_path: Path, damage: str) -> None:
    root = damaged_copy(made, tmp_path, damage)
    spec = made / "a.json"
    proc = run_cli("sweep", spec, "--runs-root", root, "--no-report", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "3 skipped" in proc.stdout, proc.stdout
    rows = index_rows(root)
    assert sorted(r["sweep"] for r in rows) == ["a"] * 3 + ["b"] * 3, "another sweep's runs lost"
    assert {r["status"] for r in rows} == {"ok"}
    proc = run_cli("report", root, "--no-notebooks", cwd=tmp_path)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
