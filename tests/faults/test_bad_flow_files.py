"""Fault 4: a bad flow file (binary, a syntax error) is bad input: exit 2 with one line, before
any run directory or kernel exists; ``ductaflow run`` prints no notebook path.

The full set of bad files (every format) is in ``tests/test_formats.py``; this is the fault as
the table reported it, from the CLI.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import kernels_under, run_cli
from faultkit import one_error_line

BAD = {"bin.py": bytes(range(256)), "syntax.py": b"# %%\nx = 1\n\n# %%\ny = (\n"}


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_flow_file_stops_before_any_run(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(BAD[name])
    proc = run_cli("run", name, "--run-dir", "r", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""  # no path of a notebook that is never written
    assert name in one_error_line(proc.stderr)
    (tmp_path / "s.json").write_text(json.dumps({"flows": [name], "grid": {"a": [1, 2]}}))
    proc = run_cli("sweep", "s.json", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert name in one_error_line(proc.stderr)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "r").exists()
    assert kernels_under(tmp_path) == []
