"""Helpers of the fault tests: a flow that records what it is told, specs, a small tmpfs."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

FLOWS = Path(__file__).parent.parent / "flows"

#: A flow that records ``value`` under ``name`` and can write ``size`` bytes to a file.
RECORD_FLOW = """\
# %% tags=["parameters"]
x = 0
size = 0
weird = False
import ductaflow

ductaflow.parameters(globals())

# %%
if size:
    with open("blob.bin", "wb") as fh:
        fh.write(b"\\0" * size)
ductaflow.record("x", x)
if weird:
    ductaflow.record("weird", "\\ud800")
"""


def write_flow(where: Path, name: str = "rec.py", text: str = RECORD_FLOW) -> Path:
    path = where / name
    path.write_text(text, encoding="utf-8")
    return path


def copy_flow(where: Path, name: str) -> Path:
    return Path(shutil.copy(FLOWS / name, where / name))


def write_spec(where: Path, name: str = "s", flow: str = "rec.py", **blocks: object) -> Path:
    path = where / f"{name}.json"
    path.write_text(json.dumps({"name": name, "flows": [flow], **blocks}), encoding="utf-8")
    return path


def index_rows(root: Path) -> list[dict[str, str]]:
    with open(root / "index.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def one_error_line(stderr: str) -> str:
    """The stderr of a command that must end in exactly one error line and no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("ductaflow: error:")]
    assert len(lines) == 1, stderr
    return lines[0]


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "4m") -> Iterator[Path]:
    """A real, small tmpfs at ``path`` (root only), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True, text=True,
    )  # fmt: skip
    if proc.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def remount_read_only(path: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
