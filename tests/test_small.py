"""The small end of scale: a sweep's zygote boots while the sweep is planned, and is gone when
the sweep does not need it; real zygotes, kernels and sweeps."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import pytest

from ductaflow.engine import execute_run
from ductaflow.executor import SweepOptions, execute_sweep
from ductaflow.spec import FlowRef, RunOptions, RunSpec
from ductaflow.sweep import Sweep
from ductaflow.warm import WarmStarter, ZygoteRegistry, default_registry

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not sys.platform.startswith("linux"), reason="kernels are forked on Linux only"
    ),
]

#: Writes the kernel's pid and its parent's (the zygote that forked it).
PIDS = """# %% tags=["parameters"]
i = 0
# %%
import os, pathlib
pathlib.Path("pids").write_text(f"{os.getpid()} {os.getppid()}")
"""


def zygotes_of(pid: int) -> list[int]:
    """Live zygote processes whose parent is ``pid`` (booting ones too)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == pid and state != "Z" and b"the ductaflow zygote" in cmdline:
            found.append(int(entry))
    return found


def write_flow(directory: Path) -> FlowRef:
    path = directory / "flow.py"
    path.write_text(PIDS, encoding="utf-8")
    return FlowRef.from_path(path)


def test_a_discarded_prestart_is_killed_while_it_boots_and_leaves_warm_kernels_on(
    tmp_path: Path,
) -> None:
    reg = ZygoteRegistry()
    try:
        thread = reg.prestart()
        reg.discard(thread)  # at once: the zygote is still importing ipykernel
        assert not thread.is_alive()
        assert reg.zygote_pids == []
        assert zygotes_of(os.getpid()) == []
        # a discard is no failure: the next kernel is still forked from a (new) zygote
        spec = RunSpec(run_dir=tmp_path / "r", config={}, flows=(write_flow(tmp_path),))
        result = execute_run(spec, RunOptions(), starter=WarmStarter(registry=reg))
        assert result.status == "ok", result.error
        (zygote,) = reg.zygote_pids
        assert int((tmp_path / "r" / "pids").read_text().split()[1]) == zygote
    finally:
        reg.close()


def test_discard_closes_an_unused_zygote_and_keeps_a_used_one(tmp_path: Path) -> None:
    reg = ZygoteRegistry()
    try:
        thread = reg.prestart()
        thread.join(60)
        (booted,) = reg.zygote_pids
        reg.discard(thread)  # booted, never forked a kernel: closed
        assert reg.zygote_pids == [] and booted not in zygotes_of(os.getpid())
        used = reg.prestart()
        spec = RunSpec(run_dir=tmp_path / "r", config={}, flows=(write_flow(tmp_path),))
        result = execute_run(spec, RunOptions(), starter=WarmStarter(registry=reg))
        assert result.status == "ok", result.error
        reg.discard(used)  # it forked the run's kernel: kept warm for the next one
        (zygote,) = reg.zygote_pids
        assert int((tmp_path / "r" / "pids").read_text().split()[1]) == zygote
    finally:
        reg.close()


def sweep_of(tmp_path: Path, runs: int) -> Sweep:
    write_flow(tmp_path)
    return Sweep(name="s", flows=(tmp_path / "flow.py",), grid={"i": list(range(runs))})


def test_a_warm_sweep_forks_its_kernels_from_the_zygote_it_prestarted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    default_registry().close()  # what other tests of this process left warm
    with caplog.at_level(logging.DEBUG, logger="ductaflow"):
        report = execute_sweep(
            sweep_of(tmp_path, 3), SweepOptions(tmp_path / "runs", 2, progress=False)
        )
    assert report.ok
    (zygote,) = default_registry().zygote_pids
    parents = {int(p.read_text().split()[1]) for p in (tmp_path / "runs" / "s").glob("*/pids")}
    assert parents == {zygote}
    # it was booting before the sweep was planned (the plan is logged after the expansion)
    events = [r.getMessage() for r in caplog.records]
    prestart = next(i for i, m in enumerate(events) if "prestart" in m)
    planned = next(i for i, m in enumerate(events) if "3 to run" in m)
    assert prestart < planned


@pytest.mark.parametrize("case", ["all done", "one run per worker", "loky"])
def test_a_sweep_that_needs_no_zygote_leaves_none(tmp_path: Path, case: str) -> None:
    default_registry().close()
    runs = 2 if case == "one run per worker" else 3
    backend = "loky" if case == "loky" else None
    options = SweepOptions(tmp_path / "runs", 2, progress=False, backend=backend)
    if case == "all done":
        execute_sweep(sweep_of(tmp_path, runs), SweepOptions(tmp_path / "runs", 2, progress=False))
        default_registry().close()
    report = execute_sweep(sweep_of(tmp_path, runs), options)
    assert report.ok
    assert default_registry().zygote_pids == []
    assert zygotes_of(os.getpid()) == []
    rows = [json.loads(p.read_text()) for p in (tmp_path / "runs" / "s").glob("*/status.json")]
    assert len(rows) == runs and all(r["status"] == "ok" for r in rows)
