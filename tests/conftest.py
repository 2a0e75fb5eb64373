"""Fixtures: the test flows, the backend every backend test runs on, and the check that no
kernel outlives the suite. Shared code is in ``helpers.py`` (these names are re-exported for
the files that still import them from here)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import (  # noqa: F401  (re-exported)
    FLOWS,
    REPO,
    RunsRoot,
    kernels_under,
    outputs_text,
    read_json,
    run_cli,
    wait_for,
    wait_no_kernels,
)

SLURM_CONF = "/tmp/ductaflow-slurm/slurm.conf"


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


@dataclass(frozen=True)
class Backend:
    """One way a sweep executes, and how to tell from its run records that it really did.

    ``warm``: kernels forked from a zygote (the flow records its kernel's parent); ``threads``:
    runs driven from the conductor's own threads (``status.json`` ``pid`` is the conductor).
    A sweep of no more runs than ``-j`` starts standard kernels whatever was asked
    (``executor.execute_sweep``), so backend tests run more runs than ``JOBS``.
    """

    id: str
    flags: tuple[str, ...]
    warm: bool
    threads: bool
    env: tuple[tuple[str, str], ...] = ()

    JOBS = 2

    def args(self, *extra: str) -> tuple[str, ...]:
        return ("-j", str(self.JOBS), "--no-progress", *self.flags, *extra)

    @property
    def environ(self) -> dict[str, str]:
        return dict(self.env)

    def assert_mode(self, root: RunsRoot, conductor_pid: int, runs: list[Path]) -> None:
        """Each run in ``runs`` ran the way this backend promises (from its own records)."""
        assert runs, "no run to check the kernel mode of"
        for run_dir in runs:
            status = root.status(run_dir)
            results = root.results(run_dir)
            assert status.get("status") == "ok", (run_dir, status.get("status"))
            flows = status["flows"]
            assert all(f["kernel_start_s"] is not None for f in flows), flows
            if self.threads:
                assert status["pid"] == conductor_pid, f"{self.id}: run not on a conductor thread"
            else:
                assert status["pid"] != conductor_pid, f"{self.id}: run in the conductor"
            assert results["forked"] is self.warm, f"{self.id}: forked={results['forked']}"
            if not self.warm:  # a standard kernel is the worker's own child
                assert results["kernel_ppid"] == status["pid"], (self.id, status, results)


def slurm_up() -> str | None:
    """None when the single-node Slurm of tests/slurm/start.sh is up, else why not."""
    if not Path(SLURM_CONF).exists():
        return f"no {SLURM_CONF}: tests/slurm/start.sh has not run"
    try:
        proc = subprocess.run(
            [str(REPO / "tests" / "slurm" / "start.sh"), "status"],
            capture_output=True, text=True, timeout=30,
            env={**os.environ, "SLURM_CONF": SLURM_CONF},
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"tests/slurm/start.sh status: {exc}"
    if proc.returncode != 0:
        return f"Slurm is down (tests/slurm/start.sh status: exit {proc.returncode})"
    return None


BACKENDS = [
    pytest.param(Backend("warm-threads", (), warm=True, threads=True), id="warm-threads"),
    pytest.param(
        Backend("standard-loky", ("--no-warm", "--backend", "loky"), warm=False, threads=False),
        id="standard-loky",
    ),
    pytest.param(
        Backend("warm-loky", ("--backend", "loky"), warm=True, threads=False), id="warm-loky"
    ),
    pytest.param(
        Backend("dask-local", ("--backend", "dask-local"), warm=True, threads=False),
        id="dask-local",
        marks=pytest.mark.distributed,
    ),
    pytest.param(
        Backend(
            "slurm",
            ("--backend", "slurm", "--slurm-time", "20"),
            warm=True,
            threads=False,
            env=(("SLURM_CONF", SLURM_CONF),),
        ),
        id="slurm",
        marks=[pytest.mark.distributed, pytest.mark.slurm],
    ),
]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    """Every backend a sweep can run on here, as joblib's tests parametrize theirs."""
    value: Backend = request.param
    if value.id == "slurm" and (why := slurm_up()):
        pytest.skip(why)
    return value
