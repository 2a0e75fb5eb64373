"""Fixtures: the test flows, the backend every backend test runs on, and the check that no
kernel outlives the suite. Shared code is in ``helpers.py`` (these names are re-exported for
the files that still import them from here)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import (  # noqa: F401  (re-exported)
    BACKENDS,
    FLOWS,
    REPO,
    Backend,
    kernels_under,
    outputs_text,
    read_json,
    run_cli,
    slurm_up,
    wait_for,
    wait_no_kernels,
)


def pytest_configure(config: pytest.Config) -> None:
    """The Ctrl-C tests play a terminal's foreground job. Started in the background (``cmd &``
    in a script, ``nohup``), the suite would inherit SIGINT ignored, and so would every
    conductor it starts, which then rightly ignores Ctrl-C; give children the default."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that need Dask, Slurm or a browser are slow too, and so is the fault table (it
    runs real sweeps on damaged roots): none of them is in ``-m "not slow"``."""
    faults = Path(__file__).parent / "faults"
    for item in items:
        if item.get_closest_marker("slurm"):  # one Slurm node: its tests one after another
            item.add_marker(pytest.mark.xdist_group("slurm"))
        if any(item.get_closest_marker(m) for m in ("distributed", "slurm", "browser")):
            item.add_marker(pytest.mark.slow)
        elif faults in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.slow)
    # slow tests first: with two test processes (xdist hands out tests in this order), the
    # suite ends on quick tests, not with one process idle while the other finishes a long one
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


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


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    """Every backend a sweep can run on here, as joblib's tests parametrize theirs."""
    value: Backend = request.param
    if value.id == "slurm" and (why := slurm_up()):
        pytest.skip(why)
    return value
