"""The CLI's log lines: ductaflow's logger only, -v for info, -vv for debug, nothing by default."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from helpers import FLOWS, run_cli

from ductaflow import cli


def _spec(tmp_path: Path, n: int) -> Path:
    spec = {"name": "lg", "flows": [str(FLOWS / "work.py")], "grid": {"x": list(range(n))}}
    path = tmp_path / "lg.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    return path


@pytest.mark.slow
def test_verbosity_chooses_what_is_logged(tmp_path: Path) -> None:
    spec = _spec(tmp_path, 3)
    quiet = run_cli("sweep", spec, "-j", "2", "--no-report", cwd=tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert "ductaflow:" not in quiet.stderr  # nothing to warn about, so nothing logged

    (tmp_path / "lg.json").write_text(spec.read_text().replace("[0, 1, 2]", "[0, 1, 2, 3]"))
    info = run_cli("-v", "sweep", spec, "-j", "2", "--no-report", cwd=tmp_path)
    assert info.returncode == 0, info.stderr
    assert "ductaflow: lg: 4 runs (1 new, 3 done); 1 to run" in info.stderr
    assert "ductaflow: lg: backend " in info.stderr
    assert "DEBUG" not in info.stderr

    debug = run_cli("-vv", "sweep", spec, "-j", "2", "--force", "--no-report", cwd=tmp_path)
    assert debug.returncode == 0, debug.stderr
    assert debug.stderr.count("ductaflow: DEBUG ductaflow: x=") == 4  # one line per run


def test_the_root_logger_is_left_alone(tmp_path: Path) -> None:
    root, ours = logging.getLogger(), logging.getLogger("ductaflow")
    handlers, level, propagate = list(root.handlers), ours.level, ours.propagate
    (tmp_path / "runs").mkdir()
    assert cli.main(["-vv", "status", str(tmp_path / "runs")]) == 0
    assert root.handlers == handlers  # another library's records keep their own handling
    assert (ours.level, ours.propagate, ours.handlers) == (level, propagate, [])
