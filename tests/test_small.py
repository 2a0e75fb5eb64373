"""The small end of scale: a sweep's zygote boots while the sweep is planned, and is gone when
the sweep does not need it; each run's kernel is forked while the run before it executes, and
one that no run adopts is killed. Real zygotes, kernels, sweeps and signals; events, no clocks."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import tempfile
from pathlib import Path

import pytest
from helpers import (
    conductor,
    kernels_under,
    read_json,
    release,
    run_cli,
    started,
    wait_for,
    wait_no_kernels,
    write_spec,
)

from ductaflow.engine import execute_run
from ductaflow.executor import SweepOptions, execute_sweep
from ductaflow.spec import FlowRef, RunOptions, RunSpec
from ductaflow.sweep import Sweep
from ductaflow.task import start_ahead
from ductaflow.warm import KernelsAhead, WarmStarter, ZygoteRegistry, default_registry

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
    others = set(zygotes_of(os.getpid()))  # other tests' registries in this process
    try:
        thread = reg.prestart()
        reg.discard(thread)  # at once: the zygote is still importing ipykernel
        assert not thread.is_alive()
        assert reg.zygote_pids == []
        assert set(zygotes_of(os.getpid())) <= others
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
    others = set(zygotes_of(os.getpid()))  # other tests' registries in this process
    runs = 2 if case == "one run per worker" else 3
    backend = "loky" if case == "loky" else None
    options = SweepOptions(tmp_path / "runs", 2, progress=False, backend=backend)
    if case == "all done":
        execute_sweep(sweep_of(tmp_path, runs), SweepOptions(tmp_path / "runs", 2, progress=False))
        default_registry().close()
    report = execute_sweep(sweep_of(tmp_path, runs), options)
    assert report.ok
    assert default_registry().zygote_pids == []
    assert set(zygotes_of(os.getpid())) <= others
    rows = [json.loads(p.read_text()) for p in (tmp_path / "runs" / "s").glob("*/status.json")]
    assert len(rows) == runs and all(r["status"] == "ok" for r in rows)


def held_sweep(tmp_path: Path, runs: int = 4) -> tuple[Path, Path]:
    """A spec of ``runs`` hold.py runs (each waits for a release), and its hold directory."""
    hold = tmp_path / "hold"
    hold.mkdir()
    write_spec(tmp_path, "hold.py", grid={"x": list(range(runs))}, base={"hold": str(hold)})
    return tmp_path / "spec.json", hold


def run_dir_of(tmp_path: Path, x: int) -> Path | None:
    found = list((tmp_path / "runs" / "s").glob(f"x={x}-*"))
    return found[0] if found else None


def ahead_kernels(tmp_path: Path, xs: list[int]) -> dict[int, int] | None:
    """The kernel running in the directory of each run ``xs``, once each has one."""
    pids = {}
    for x in xs:
        run_dir = run_dir_of(tmp_path, x)
        found = kernels_under(run_dir) if run_dir is not None else []
        if len(found) != 1:
            return None
        pids[x] = found[0]
    return pids


def test_the_next_runs_kernels_are_forked_while_the_runs_before_them_execute(
    tmp_path: Path,
) -> None:
    """Runs 0 and 1 hold (-j 2): runs 2 and 3 already have their kernels, in their own
    directories, and those are the kernels they then execute in (their flows record the pid)."""
    spec, hold = held_sweep(tmp_path)
    with conductor(spec, "-j", "2", "--no-progress", cwd=tmp_path) as c:
        c.until(lambda: started(hold) == {0, 1}, what="runs 0 and 1 held")
        forked = c.until(lambda: ahead_kernels(tmp_path, [2, 3]), what="kernels of runs 2, 3")
        assert started(hold) == {0, 1}  # forked, not running: their flows have not begun
        for x in (2, 3):
            assert not (run_dir_of(tmp_path, x) / "status.json").exists()  # type: ignore[operator]
        release(hold)
        assert c.wait() == 0, c.output()
    for x, pid in forked.items():
        run_dir = run_dir_of(tmp_path, x)
        assert run_dir is not None
        assert (run_dir / "executions.log").read_text().split() == [str(pid)]
        assert read_json(run_dir / "status.json")["status"] == "ok"
    assert wait_no_kernels(tmp_path) == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_kernels_forked_ahead_die_with_a_stopped_sweep(tmp_path: Path, signum: int) -> None:
    """Stopped while runs 2 and 3 wait with their kernels forked: those kernels are killed,
    their (empty) directories removed, nothing of them left; runs 0 and 1 are interrupted."""
    spec, hold = held_sweep(tmp_path)
    with conductor(spec, "-j", "2", "--no-progress", cwd=tmp_path) as c:
        c.until(lambda: started(hold) == {0, 1}, what="runs 0 and 1 held")
        c.until(lambda: ahead_kernels(tmp_path, [2, 3]), what="kernels of runs 2, 3")
        if signum == signal.SIGINT:
            c.signal_group(signum)  # Ctrl-C in a terminal
        else:
            c.signal(signum)
        assert c.wait() != 0
    assert wait_no_kernels(tmp_path) == []
    assert run_dir_of(tmp_path, 2) is None and run_dir_of(tmp_path, 3) is None
    for x in (0, 1):
        run_dir = run_dir_of(tmp_path, x)
        assert run_dir is not None
        assert read_json(run_dir / "status.json")["status"] == "interrupted"
    scratch = list(Path(tempfile.gettempdir()).glob(f"ductaflow-{os.getuid()}/{c.pid}-*"))
    assert scratch == []


def test_a_kernel_forked_ahead_for_a_run_that_does_not_run_is_killed(tmp_path: Path) -> None:
    """In-process: a kernel forked ahead and never adopted is killed by ``drop`` (its run
    ended without it) and by ``close`` (the sweep ended), and forked only once per run."""
    reg = ZygoteRegistry()
    reg.prestart().join(60)
    ahead = KernelsAhead(registry=reg)
    ref = write_flow(tmp_path)
    try:
        specs = [RunSpec(run_dir=tmp_path / f"r{i}", config={}, flows=(ref,)) for i in range(2)]
        assert all(start_ahead(spec, RunOptions(), ahead) for spec in specs)
        assert start_ahead(specs[0], RunOptions(), ahead)  # already: not forked again
        pids = wait_for(lambda: ahead_under(tmp_path, specs), what="two kernels forked")
        ahead.drop(specs[0].run_dir)
        assert not kernels_under(specs[0].run_dir) and not specs[0].run_dir.exists()
        assert kernels_under(specs[1].run_dir) == [pids[1]]
        ahead.close()
        assert not kernels_under(tmp_path) and not specs[1].run_dir.exists()
        assert start_ahead(specs[1], RunOptions(), ahead)  # closed: it forks no more
        assert not kernels_under(tmp_path)
    finally:
        ahead.close()
        reg.close()


def ahead_under(tmp_path: Path, specs: list[RunSpec]) -> list[int] | None:
    found = [kernels_under(s.run_dir) if s.run_dir.exists() else [] for s in specs]
    return [f[0] for f in found] if all(len(f) == 1 for f in found) else None


def test_the_cli_begins_the_zygote_before_its_imports_and_the_sweep_uses_that_one(
    tmp_path: Path,
) -> None:
    """``ductaflow sweep`` prestarts before it imports the executor; the sweep finds that boot
    (one prestart in the log, not two) and forks every kernel from that one zygote."""
    write_spec(tmp_path, "hold.py", grid={"x": [0, 1, 2]})
    proc = run_cli("-vv", "sweep", "spec.json", "-j", "2", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("prestarting a zygote") == 1
    records = [read_json(p) for p in (tmp_path / "runs" / "s").glob("*/results.json")]
    assert len(records) == 3 and all(r["forked"] for r in records)
    assert len({r["kernel_ppid"] for r in records}) == 1


def test_a_cli_sweep_with_nothing_to_run_kills_the_zygote_it_began(tmp_path: Path) -> None:
    write_spec(tmp_path, "hold.py", grid={"x": [0, 1, 2]})
    assert run_cli("sweep", "spec.json", "-j", "2", cwd=tmp_path).returncode == 0
    again = run_cli("-vv", "sweep", "spec.json", "-j", "2", "--no-progress", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "3 skipped" in again.stdout
    # killed while it booted, or closed had it booted: not left to exit with the process
    assert "the zygote is not needed" in again.stderr
