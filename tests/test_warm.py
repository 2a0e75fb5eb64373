"""Warm kernels, forked from a zygote, with real kernels: isolation, failures and lifetimes."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pickle
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from helpers import FLOWS, kernels_under, wait_for, wait_no_kernels

from ductaflow.engine import execute_run
from ductaflow.errors import ConfigError
from ductaflow.kernel import StandardStarter, open_kernel
from ductaflow.spec import FlowRef, RunOptions, RunResult, RunSpec
from ductaflow.warm import WarmStarter, ZygoteRegistry, make_starter

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not sys.platform.startswith("linux"), reason="kernels are forked on Linux only"
    ),
]

#: The environment the engine gives a kernel, for tests that start one without the engine.
KERNEL_ENV = {**os.environ, "PYDEVD_DISABLE_FILE_VALIDATION": "1"}


@pytest.fixture(scope="module")
def registry() -> Iterator[ZygoteRegistry]:
    """One registry (so one zygote per preload list) for the tests that only run flows."""
    reg = ZygoteRegistry()
    yield reg
    reg.close()


def flow(name: str) -> FlowRef:
    """A flow of ``tests/flows/``."""
    return FlowRef.from_path(FLOWS / name)


def run(run_dir: Path, ref: FlowRef, starter: Any, timeout: float = 30, **config: Any) -> RunResult:
    spec = RunSpec(run_dir=run_dir, config=config, flows=(ref,))
    return execute_run(spec, RunOptions(timeout=timeout), starter=starter)


def outputs(result: RunResult) -> list[str]:
    """The text of each output of the run's notebook, in order."""
    nb = nbformat.read(result.notebooks[0], as_version=4)
    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            texts.append(out.get("text") or out.get("data", {}).get("text/plain", ""))
    return texts


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie, dead but not reaped yet, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_each_run_has_its_own_process_and_clean_state(
    tmp_path: Path, registry: ZygoteRegistry
) -> None:
    ref = flow("state.py")
    starter = WarmStarter(registry=registry)
    seen = []
    for i in range(2):
        result = run(tmp_path / f"r{i}", ref, starter)
        assert result.status == "ok", result.error
        seen.append(json.loads(outputs(result)[0]))
    for i, state in enumerate(seen):
        assert Path(state["cwd"]) == tmp_path / f"r{i}"
        assert state["var"] is False and state["attr"] is False  # nothing left by the run before
        assert state["ppid"] in registry.zygote_pids  # forked, not started the standard way
    assert seen[0]["pid"] != seen[1]["pid"]
    assert not alive(seen[0]["pid"]) and not alive(seen[1]["pid"])


def test_runs_draw_different_random_numbers(tmp_path: Path, registry: ZygoteRegistry) -> None:
    ref = flow("draws.py")
    starter = WarmStarter(["numpy.random"], registry=registry)  # numpy loads it lazily
    draws = []
    for i in range(2):
        result = run(tmp_path / f"r{i}", ref, starter)
        assert result.status == "ok", result.error
        preloaded, py_random, np_random = outputs(result)[0].split()
        assert preloaded == "True"  # numpy came with the zygote
        draws.append((py_random, np_random))
    assert draws[0][0] != draws[1][0]
    assert draws[0][1] != draws[1][1]


def test_dead_kernel_and_cell_timeout_are_recorded(
    tmp_path: Path, registry: ZygoteRegistry
) -> None:
    starter = WarmStarter(registry=registry)
    died = run(tmp_path / "died", flow("dies.py"), starter)
    assert died.status == "died"
    assert "the kernel exited with code 1" in (died.error or "")
    child = int((tmp_path / "died" / "child").read_text())
    wait_for(lambda: not alive(child), 60, "what the dead kernel started to be killed too")

    # past pytest's own timeout: only the cell timeout can end this run in time
    slow = run(tmp_path / "slow", flow("hang.py"), starter, timeout=1, sleep=600)
    assert slow.status == "timeout"
    assert not wait_no_kernels(tmp_path)


def test_interrupt_reaches_the_cell(tmp_path: Path, registry: ZygoteRegistry) -> None:
    async def interrupted() -> tuple[dict[str, Any], dict[str, Any]]:
        kernel = await open_kernel(WarmStarter(registry=registry), tmp_path, KERNEL_ENV)
        try:
            kc = kernel.kc
            kc.execute("import time\nprint('sleeping', flush=True)\ntime.sleep(60)")
            while True:
                msg = await kc.get_iopub_msg(timeout=20)
                if msg["msg_type"] == "stream" and "sleeping" in msg["content"]["text"]:
                    break
            await kernel.km.interrupt_kernel()
            first = (await kc.get_shell_msg(timeout=20))["content"]
            for _ in range(20):  # requests sent right after an error are aborted for a while
                await asyncio.sleep(0.1)
                kc.execute("1 + 1")
                after = (await kc.get_shell_msg(timeout=20))["content"]
                if after["status"] != "aborted":
                    break
            return first, after
        finally:
            await kernel.stop()

    first, after = asyncio.run(interrupted())
    assert first["status"] == "error" and first["ename"] == "KeyboardInterrupt"
    assert after["status"] == "ok"  # the kernel lived through it


def test_no_process_is_left_after_runs(tmp_path: Path) -> None:
    reg = ZygoteRegistry()
    starter = WarmStarter(registry=reg)
    ref = flow("pids.py")
    kernels = []
    for i in range(4):
        result = run(tmp_path / f"r{i}", ref, starter)
        assert result.status == "ok", result.error
        kernels.append(int((tmp_path / f"r{i}" / "pids").read_text().split()[0]))
    zygotes = reg.zygote_pids
    assert len(zygotes) == 1
    assert not any(alive(pid) for pid in kernels)
    reg.close()
    assert not alive(zygotes[0])
    assert not kernels_under(tmp_path)


def test_a_killed_zygote_is_replaced(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    reg = ZygoteRegistry()
    starter = WarmStarter(registry=reg)
    ref = flow("pids.py")
    try:
        assert run(tmp_path / "r1", ref, starter).status == "ok"
        (old,) = reg.zygote_pids
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: not alive(old), 60, "the zygote to die")
        with caplog.at_level(logging.WARNING, logger="ductaflow"):
            result = run(tmp_path / "r2", ref, starter)
        assert result.status == "ok", result.error
        (new,) = reg.zygote_pids
        assert new != old
        assert int((tmp_path / "r2" / "pids").read_text().split()[1]) == new
        assert "was killed by SIGKILL; starting a new zygote" in caplog.text
    finally:
        reg.close()


def test_a_zygote_killed_mid_run_takes_its_kernel_along(tmp_path: Path) -> None:
    reg = ZygoteRegistry()
    run_dir = tmp_path / "r"
    pids_file = run_dir / "pids"

    def kill_zygote() -> None:
        wait_for(pids_file.exists, 60, "the kernel to start")
        os.kill(int(pids_file.read_text().split()[1]), signal.SIGKILL)

    killer = threading.Thread(target=kill_zygote)
    killer.start()
    try:
        result = run(run_dir, flow("pids.py"), WarmStarter(registry=reg), sleep=60)
    finally:
        killer.join()
        reg.close()
    assert result.status == "died"
    assert "the kernel was killed by SIGKILL" in (result.error or "")
    # killed at once by the parent-death signal, before ipykernel's parent poller noticed
    assert "Parent appears to have exited" not in (result.traceback or "")
    kernel = int(pids_file.read_text().split()[0])
    wait_for(lambda: not alive(kernel), 60, "the kernel to die")


OWNER = """
import sys
from pathlib import Path
from ductaflow.engine import execute_run
from ductaflow.spec import FlowRef, RunSpec
from ductaflow.warm import WarmStarter
flows = (FlowRef.from_path(sys.argv[2]),)
spec = RunSpec(run_dir=Path(sys.argv[1]), config={"sleep": 60}, flows=flows)
execute_run(spec, starter=WarmStarter())
"""


def test_kernels_and_zygote_die_with_their_owner(tmp_path: Path) -> None:
    run_dir = tmp_path / "r"
    ref = flow("pids.py")
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(run_dir), str(ref.path)])
    try:
        wait_for((run_dir / "pids").exists, 60, "the kernel to start")
    finally:
        owner.kill()
        owner.wait()
    kernel, zygote = map(int, (run_dir / "pids").read_text().split())
    wait_for(lambda: not alive(kernel) and not alive(zygote), 60, "kernel and zygote to die")


def test_warm_and_standard_kernels_give_the_same_notebook(tmp_path: Path) -> None:
    ref = flow("same.py")
    run_dir = tmp_path / "r"
    reg = ZygoteRegistry()
    notebooks = {}
    try:
        for name, starter in (("standard", StandardStarter()), ("warm", WarmStarter(registry=reg))):
            result = run(run_dir, ref, starter, alpha=3)
            assert result.status == "ok", result.error
            notebooks[name] = nbformat.read(result.notebooks[0], as_version=4)
            shutil.move(result.notebooks[0], tmp_path / f"{name}.ipynb")
    finally:
        reg.close()

    def cells(nb: nbformat.NotebookNode) -> list[tuple[Any, ...]]:
        return [(c.source, c.get("execution_count"), c.get("outputs")) for c in nb.cells]

    assert cells(notebooks["warm"]) == cells(notebooks["standard"])
    (shown,) = [c for c in notebooks["warm"].cells if "print(os.getcwd())" in c.source]
    printed = "".join(shown.outputs[0].text)
    assert "to stderr" in "".join(o.get("text", "") for o in shown.outputs)
    assert str(run_dir) in printed


def test_a_warm_sweep_and_a_standard_one_give_the_same_rows_and_notebooks(tmp_path: Path) -> None:
    """Warm runs (threads of the sweep, one zygote) and standard runs (loky workers): the same
    index rows but for times, the same notebooks but for timing metadata."""
    from ductaflow.executor import SweepOptions, execute_sweep
    from ductaflow.index import load_index
    from ductaflow.sweep import Sweep

    flow = Path(__file__).parent / "flows" / "work.py"
    table = ({"x": 1}, {"x": 2, "fail": True}, {"x": 3}, {"x": 4})
    rows, notebooks = {}, {}
    for mode, warm in (("warm", True), ("standard", False)):
        sweep = Sweep(name="same", flows=(flow,), table=table)
        report = execute_sweep(
            sweep, SweepOptions(tmp_path / mode, 2, run=RunOptions(warm=warm), progress=False)
        )
        assert report.counts()["ok"] == 3 and report.counts()["failed"] == 1
        frame = load_index(tmp_path / mode).sort_values("run").reset_index(drop=True)
        timing = [c for c in frame.columns if c in ("started", "finished", "run_dir")
                  or c.endswith("duration_s")]  # fmt: skip
        rows[mode] = frame.drop(columns=timing)
        notebooks[mode] = {
            run: [
                (c.source, c.get("outputs"))
                for c in nbformat.read(
                    tmp_path / mode / "same" / run / "work_executed.ipynb", 4
                ).cells
            ]
            for run in frame["run"]
        }
    assert len(rows["warm"]) == 4 and "result.double" in rows["warm"].columns
    assert rows["warm"].equals(rows["standard"]), (rows["warm"], rows["standard"])
    assert notebooks["warm"] == notebooks["standard"]


def test_preloads_that_fail_or_start_threads_are_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    modules = tmp_path / "mods"
    modules.mkdir()
    (modules / "df_threads.py").write_text(
        "import threading, time\n"
        "threading.Thread(target=time.sleep, args=(60,), daemon=True, name='df-sleep').start()\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(modules))
    reg = ZygoteRegistry()
    starter = WarmStarter(["df_threads", "df_no_such_module", "csv"], registry=reg)
    try:
        with caplog.at_level(logging.WARNING, logger="ductaflow"):
            result = run(tmp_path / "r", flow("preloaded.py"), starter)
        assert result.status == "ok", result.error
        assert outputs(result)[0].strip() == "[False, True]"
        assert len(reg.zygote_pids) == 1
    finally:
        reg.close()
    assert "--preload df_threads: importing it starts threads (df-sleep)" in caplog.text
    assert "--preload df_no_such_module: cannot be imported" in caplog.text


def test_a_zygote_that_cannot_start_leaves_kernels_to_the_standard_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    modules = tmp_path / "mods"
    modules.mkdir()
    (modules / "df_crash.py").write_text("import os\nos._exit(3)\n")
    monkeypatch.setenv("PYTHONPATH", str(modules))
    reg = ZygoteRegistry()
    ref = flow("pids.py")
    try:
        with caplog.at_level(logging.WARNING, logger="ductaflow"):
            for i in range(2):
                result = run(tmp_path / f"r{i}", ref, WarmStarter(["df_crash"], registry=reg))
                assert result.status == "ok", result.error
                parent = int((tmp_path / f"r{i}" / "pids").read_text().split()[1])
                assert parent == os.getpid()  # started by this process, the standard way
        assert reg.zygote_pids == []
    finally:
        reg.close()
    assert caplog.text.count("warm kernels unavailable") == 1
    assert "exited with code 3" in caplog.text


def test_make_starter_falls_back_and_says_why_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    warm = make_starter(None, True, ["numpy"])
    assert isinstance(warm, WarmStarter) and warm.preload == ("numpy",)
    assert type(make_starter(None, False, ["numpy"])) is StandardStarter

    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    for name, env in (("df-same", {}), ("df-other", {"DF_SETTING": "1"})):
        spec = {"argv": argv, "display_name": name, "language": "python", "env": env}
        (tmp_path / "kernels" / name).mkdir(parents=True)
        (tmp_path / "kernels" / name / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    assert isinstance(make_starter("df-same", True, ()), WarmStarter)
    with caplog.at_level(logging.INFO, logger="ductaflow"):
        starters = [make_starter("df-other", True, ()) for _ in range(2)]
    assert all(type(s) is StandardStarter and s.kernel_name == "df-other" for s in starters)
    assert caplog.text.count("--kernel 'df-other' is not this Python") == 1


def test_warm_starter_pickles_and_checks_names() -> None:
    starter = pickle.loads(
        pickle.dumps(WarmStarter(["pandas", "numpy"], registry=ZygoteRegistry()))
    )
    assert starter.preload == ("pandas", "numpy") and starter.registry is None
    with pytest.raises(ConfigError, match="not a module name"):
        WarmStarter(["numpy; import os"])


STDLIB_ONLY = """
import json, sys
before = set(sys.modules)  # the interpreter's start-up (site, .pth files) is not ours
import ductaflow.{module}
new = set(sys.modules) - before
ours = sorted(m for m in new if m.split(".")[0] == "ductaflow")
others = sorted(m for m in new if m.split(".")[0] not in {{*sys.stdlib_module_names, "ductaflow"}})
print(json.dumps({{"ours": ours, "others": others}}))
"""


#: what the registry's module brings (the zygote's, and the error hierarchy)
ZYGOTES_OWNER = ["ductaflow.process", "ductaflow.zygote", "ductaflow.zygotes"]


@pytest.mark.parametrize(
    ("module", "allowed"),
    [
        ("zygote", ["ductaflow", "ductaflow.process", "ductaflow.zygote"]),
        ("zygotes", ["ductaflow", *ZYGOTES_OWNER]),
    ],
)
def test_the_zygote_and_its_owner_import_only_the_standard_library(
    module: str, allowed: list[str]
) -> None:
    """The zygote imports its own module before anything else: it must bring nothing a kernel
    would not import anyway (and the registry needs no jupyter to own zygotes)."""
    proc = subprocess.run(
        [sys.executable, "-c", STDLIB_ONLY.format(module=module)],
        capture_output=True, text=True, check=True,
        cwd=Path(__file__).parent.parent,
    )  # fmt: skip
    seen = json.loads(proc.stdout)
    assert seen["others"] == []
    assert seen["ours"] == allowed


def test_a_prestarted_zygote_serves_the_first_run(tmp_path: Path) -> None:
    """``prestart`` returns at once; the zygote it boots is the one the engine's first kernel is
    forked from (same key: the engine's kernel environment), not a second one."""
    reg = ZygoteRegistry()
    ref = flow("pids.py")
    starter = WarmStarter(registry=reg)
    try:
        thread = reg.prestart()
        assert thread.is_alive()  # returned while the zygote still boots
        thread.join(60)
        (zygote,) = reg.zygote_pids
        result = run(tmp_path / "r", ref, starter)
        assert result.status == "ok", result.error
        assert int((tmp_path / "r" / "pids").read_text().split()[1]) == zygote
        assert reg.zygote_pids == [zygote]
        assert result.flows[0].kernel_start_s is not None
    finally:
        reg.close()


def test_a_run_that_starts_while_the_zygote_boots_waits_for_it(tmp_path: Path) -> None:
    reg = ZygoteRegistry()
    ref = flow("pids.py")
    starter = WarmStarter(registry=reg)
    try:
        starter.prestart()  # the run below begins while the zygote is still importing
        results = [run(tmp_path / f"r{i}", ref, starter) for i in range(2)]
        assert all(r.status == "ok" for r in results), [r.error for r in results]
        (zygote,) = reg.zygote_pids
        parents = {int((tmp_path / f"r{i}" / "pids").read_text().split()[1]) for i in range(2)}
        assert parents == {zygote}
    finally:
        reg.close()
    StandardStarter().prestart()  # the seam's default: nothing to start ahead


def test_a_prestart_that_fails_leaves_runs_to_the_standard_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    modules = tmp_path / "mods"
    modules.mkdir()
    (modules / "df_crash.py").write_text("import os\nos._exit(3)\n")
    monkeypatch.setenv("PYTHONPATH", str(modules))
    reg = ZygoteRegistry()
    starter = WarmStarter(["df_crash"], registry=reg)
    ref = flow("pids.py")
    try:
        reg.prestart(preload=["df_crash"]).join(60)
        with caplog.at_level(logging.WARNING, logger="ductaflow"):
            result = run(tmp_path / "r", ref, starter)
        assert result.status == "ok", result.error
        assert int((tmp_path / "r" / "pids").read_text().split()[1]) == os.getpid()
        assert reg.zygote_pids == []
    finally:
        reg.close()
    assert caplog.text.count("warm kernels unavailable") == 1
    assert "exited with code 3" in caplog.text
