"""Shared fixtures: test flows, a CLI runner, and the check that no kernel outlives the suite."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

FLOWS = Path(__file__).parent / "flows"
REPO = Path(__file__).parent.parent


def kernels_under(base: Path) -> list[int]:
    """Pids of live kernel processes whose working directory is under ``base``."""
    pids = []
    base = base.resolve()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            if b"ipykernel" not in cmdline:
                continue
            stat = Path(f"/proc/{entry}/stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] == "Z":
                continue  # a zombie is dead, waiting for its parent to reap it
            cwd = Path(os.readlink(f"/proc/{entry}/cwd"))
        except OSError:
            continue
        if cwd == base or base in cwd.parents:
            pids.append(int(entry))
    return pids


def wait_no_kernels(base: Path, seconds: float = 8.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while (pids := kernels_under(base)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return pids


def pytest_configure(config: pytest.Config) -> None:
    """The Ctrl-C tests play a terminal's foreground job. Started in the background (``cmd &``
    in a script, ``nohup``), the suite would inherit SIGINT ignored, and so would every
    conductor it starts, which then rightly ignores Ctrl-C; give children the default."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session", autouse=True)
def no_kernel_left(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the whole suite, no kernel process started by a test is alive."""
    yield
    base = tmp_path_factory.getbasetemp()
    left = wait_no_kernels(base)
    assert not left, f"kernel processes left alive after the suite: {left}"


@pytest.fixture
def flows() -> Path:
    return FLOWS


def run_cli(*args: str | Path, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``python -m ductaflow ARGS`` in ``cwd``, as a user would run it."""
    return subprocess.run(
        [sys.executable, "-m", "ductaflow", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def wait_for(predicate, seconds: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def outputs_text(nb_path: Path) -> str:
    """All stream and text outputs of a saved notebook ('' while it does not exist)."""
    try:
        nb = json.loads(nb_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    parts = []
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            text = out.get("text", "")
            parts.append("".join(text) if isinstance(text, list) else text)
    return "".join(parts)
