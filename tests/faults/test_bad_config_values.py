"""Fault 2: config values UTF-8 or JSON cannot hold are bad input: exit 2, one line, no run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli
from faultkit import one_error_line, write_flow, write_spec

from ductaflow.config import config_hash, parse_scalar
from ductaflow.errors import ConfigError
from ductaflow.sweep import Sweep

SURROGATE_JSON = '"\\ud800"'  # JSON text for a lone surrogate
BIG = "1" * 5000  # past Python's 4,300-digit int-to-str limit


def check_refused(proc: subprocess.CompletedProcess[str], tmp_path: Path, *words: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    line = one_error_line(proc.stderr)
    for word in words:
        assert word in line, line
    assert len(line) < 400, line
    assert not (tmp_path / "runs").exists(), "a run directory was made for bad input"


@pytest.mark.parametrize(
    "text, words",
    [
        ('{"alpha": ' + SURROGATE_JSON + "}", ("bad.json", "'alpha'", "lone surrogate")),
        ('{"m": {"seed": ' + BIG + "}}", ("bad.json", "4300 digits", "as a string")),
    ],
    ids=["surrogate", "big-int"],
)
def test_a_bad_value_in_a_config_file(tmp_path: Path, text: str, words: tuple[str, ...]) -> None:
    write_flow(tmp_path)
    (tmp_path / "bad.json").write_text(text, encoding="utf-8")
    check_refused(run_cli("run", "rec.py", "--config", "bad.json", cwd=tmp_path), tmp_path, *words)


@pytest.mark.parametrize(
    "item, words",
    [
        ("alpha=" + SURROGATE_JSON, ("--set", "'alpha'", "lone surrogate")),
        ("alpha=" + BIG, ("--set", "'alpha'", "4300 digits")),
    ],
    ids=["surrogate", "big-int"],
)
def test_a_bad_value_in_set(tmp_path: Path, item: str, words: tuple[str, ...]) -> None:
    write_flow(tmp_path)
    check_refused(run_cli("run", "rec.py", "--set", item, cwd=tmp_path), tmp_path, *words)


def test_invalid_bytes_on_the_command_line(tmp_path: Path) -> None:
    """An invalid byte in argv arrives as a lone surrogate (surrogateescape)."""
    write_flow(tmp_path)
    proc = subprocess.run(
        [os.fsencode(sys.executable), b"-m", b"ductaflow", b"run", b"rec.py", b"--set", b"a=\xff"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    check_refused(proc, tmp_path, "--set", "lone surrogate")


@pytest.mark.parametrize("value", [SURROGATE_JSON, BIG], ids=["surrogate", "big-int"])
def test_a_bad_value_in_a_sweep_spec(tmp_path: Path, value: str) -> None:
    write_flow(tmp_path)
    spec = tmp_path / "s.json"
    spec.write_text(f'{{"name": "s", "flows": ["rec.py"], "grid": {{"x": [1, {value}]}}}}')
    proc = run_cli("sweep", "s.json", "--no-report", cwd=tmp_path)
    check_refused(proc, tmp_path, "s.json")


@pytest.mark.parametrize("cell", ['"""\\ud800"""', BIG], ids=["surrogate", "big-int"])
def test_a_bad_value_in_a_csv_table(tmp_path: Path, cell: str) -> None:
    write_flow(tmp_path)
    (tmp_path / "t.csv").write_text(f"x\n1\n{cell}\n", encoding="utf-8")
    proc = run_cli("sweep", "t.csv", "--flow", "rec.py", "--no-report", cwd=tmp_path)
    check_refused(proc, tmp_path, "t.csv:3", "'x'")


def test_a_csv_cell_of_many_digits_is_not_silently_a_string() -> None:
    with pytest.raises(ConfigError, match="4300 digits"):
        parse_scalar(BIG, where="t.csv:2: column 'x'")


@pytest.mark.parametrize("value", ["\ud800", 10**5000], ids=["surrogate", "big-int"])
def test_the_python_api_refuses_them_too(tmp_path: Path, value: object) -> None:
    flow = write_flow(tmp_path)
    with pytest.raises(ConfigError, match=r"'m\.a'"):
        config_hash({"m": {"a": value}})
    spec = write_spec(tmp_path)
    assert spec.exists()
    with pytest.raises(ConfigError):
        Sweep(name="s", flows=(flow,), base={"m": {"a": value}}).expand(tmp_path / "runs")
    assert not (tmp_path / "runs").exists()
