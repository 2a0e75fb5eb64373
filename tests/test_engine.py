"""The run engine, with real kernels: one flow, one config, one run directory."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from helpers import kernels_under, outputs_text, read_json, run_cli, wait_for, wait_no_kernels

import ductaflow
from ductaflow.notebook import CONFIG_TAG, ERROR_ANCHOR, ERROR_TAG, INJECTED_TAG

pytestmark = pytest.mark.slow  # kernels and processes: not in `-m "not slow"`

HOSTILE = {
    "quote": 'it\'s "quoted" \'\'\'triple\'\'\' """too"""',
    "newlines": "line1\nline2\r\n\ttabbed",
    "backslashes": "C:\\path\\n\\x00 \\u1234 \\\\",
    "unicode": "héllo ✓ 日本 \U0001f600",
    "code": "'); open('PWNED', 'w').write('x'); ('",
    "code2": '"""); import os; os.system("touch PWNED2"); ("""',
    "fstring": "{__import__('os').system('touch PWNED3')}",
    "big": 2**100,
    "negative": -(2**70),
    "float": 0.1,
    "tiny": 5e-324,
    "huge": 1.7976931348623157e308,
    "negzero": -0.0,
    "null": None,
    "yes": True,
    "empty": "",
    "nested": {"list": [1, "two", [3.5, None], {"deep": "x'y\"z"}], "depth": 4},
    "items": [{"a": 1}, [], {}],
    "my-key": "not an identifier",
    "class": "a keyword",
    "config2": {"inner": "dict only in config"},
}


def executed(run_dir: Path, stem: str) -> nbformat.NotebookNode:
    return nbformat.read(run_dir / f"{stem}_executed.ipynb", as_version=4)


def test_ok_run_records_everything(flows: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    config = {"alpha": 0.3, "name": "x", "model": {"depth": 4, "kind": "tree"}}
    result = ductaflow.run_flow(flows / "echo.py", config, run_dir)

    assert result.status == "ok", result.error
    assert result.ok and result.error is None
    assert read_json(run_dir / "CONFIG.json") == config
    out = read_json(run_dir / "out.json")
    assert Path(out["cwd"]) == run_dir  # the kernel ran in the run directory
    assert out["vars"] == {"alpha": 0.3, "name": "x"}  # dict values stay in config only

    status = read_json(run_dir / "status.json")
    assert status["status"] == "ok"
    assert status["duration_s"] > 0 and status["started"] < status["finished"]
    flow_sha = hashlib.sha256((flows / "echo.py").read_bytes()).hexdigest()
    assert status["flows"][0]["sha256"] == flow_sha
    assert len(status["config_hash"]) == 64
    assert status["ductaflow_version"] == ductaflow.__version__
    assert status["python_version"] and status["host"]
    assert status["error"] is None

    nb = executed(run_dir, "echo")
    first = nb.cells[0]
    assert first.cell_type == "markdown" and CONFIG_TAG in first.metadata["tags"]
    assert "| alpha | 0.3 |" in first.source
    assert "### model" in first.source and "| depth | 4 |" in first.source
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    params_at = next(i for i, t in enumerate(tags) if "parameters" in t)
    assert INJECTED_TAG in tags[params_at + 1]
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert any("echoed 3 keys" in o.get("text", "") for o in outputs)
    assert nb.metadata["ductaflow"]["config"] == config
    nbformat.validate(nb)


def test_injection_is_data_and_round_trips(flows: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = ductaflow.run_flow(flows / "echo.py", HOSTILE, run_dir)

    assert result.status == "ok", result.error
    out = read_json(run_dir / "out.json")
    assert out["config"] == HOSTILE
    assert repr(out["config"]["negzero"]) == "-0.0"
    expected_vars = {
        k: v
        for k, v in HOSTILE.items()
        if k.isidentifier() and k != "class" and not isinstance(v, dict)
    }
    assert out["vars"] == expected_vars
    for name in ("PWNED", "PWNED2", "PWNED3"):
        assert not (run_dir / name).exists(), "a config string ran as code"
    assert any("'my-key'" in w.message for w in result.warnings)
    assert any("'class'" in w.message for w in result.warnings)
    assert {w.kind for w in result.warnings} == {"check"}
    assert read_json(run_dir / "status.json")["warnings"] == result.to_json()["warnings"]
    table = executed(run_dir, "echo").cells[0].source
    assert "### config2" in table and "&#96;" not in table.split("code2")[0]


def test_flow_without_parameters_cell_gets_injection_at_top(flows: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = ductaflow.run_flow(flows / "noparams.py", {"alpha": [1, 2]}, run_dir)
    assert result.ok, result.error
    assert (run_dir / "alpha.txt").read_text() == "[1, 2]"
    nb = executed(run_dir, "noparams")
    assert CONFIG_TAG in nb.cells[0].metadata["tags"]
    assert INJECTED_TAG in nb.cells[1].metadata["tags"]


def test_raising_flow_is_failed_with_error_visible(flows: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = ductaflow.run_flow(flows / "raises.py", {}, run_dir)

    assert result.status == "failed"
    assert result.error == "ZeroDivisionError: division by zero"
    assert "x = 1 / 0" in result.traceback and "\x1b[" not in result.traceback
    assert result.flows[0].failed_cell == 2
    status = read_json(run_dir / "status.json")
    assert status["status"] == "failed" and status["error"] == result.error

    nb = executed(run_dir, "raises")
    assert CONFIG_TAG in nb.cells[0].metadata["tags"]
    marker = nb.cells[1]
    assert ERROR_TAG in marker.metadata["tags"]
    assert "cell 2" in marker.source and "ZeroDivisionError" in marker.source
    failing = next(c for c in nb.cells if c.cell_type == "code" and "1 / 0" in c.source)
    assert failing.outputs[-1]["output_type"] == "error"
    assert failing.outputs[-1]["ename"] == "ZeroDivisionError"
    above = nb.cells[nb.cells.index(failing) - 1]
    assert f'id="{ERROR_ANCHOR}"' in above.source
    never = next(c for c in nb.cells if c.cell_type == "code" and "never" in c.source)
    assert never.outputs == [] and never.execution_count is None


def test_cell_timeout_is_recorded_as_timeout(flows: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    # the cell sleeps past pytest's own timeout: only --timeout can end this run in time
    result = ductaflow.run_flow(flows / "hang.py", {"sleep": 600}, run_dir, timeout=2)
    assert result.status == "timeout"
    assert "--timeout 2" in result.error
    nb = executed(run_dir, "hang")
    hung = next(c for c in nb.cells if c.cell_type == "code" and "time.sleep" in c.source)
    assert hung.outputs[-1]["output_type"] == "error"
    assert "timeout" in nb.cells[1].source and ERROR_TAG in nb.cells[1].metadata["tags"]
    started = next(c for c in nb.cells if c.cell_type == "code" and "started" in c.source)
    assert "started" in started.outputs[0]["text"]  # cells before the timeout kept their output


def test_run_timeout_bounds_the_whole_run(flows: Path, tmp_path: Path) -> None:
    # the cell sleeps past pytest's own timeout: only --run-timeout can end this run in time
    result = ductaflow.run_flow(flows / "hang.py", {"sleep": 600}, tmp_path / "r", run_timeout=4)
    assert result.status == "timeout"
    assert "--run-timeout 4" in result.error
    nb = executed(tmp_path / "r", "hang")
    never = next(c for c in nb.cells if c.cell_type == "code" and "never" in c.source)
    assert never.outputs == [] and never.execution_count is None


@pytest.mark.parametrize(
    ("flow", "expected"),
    [("exit.py", "exited with code 1"), ("sigkill.py", "killed by SIGKILL")],
)
def test_dead_kernel_is_recorded_as_died(
    flows: Path, tmp_path: Path, flow: str, expected: str
) -> None:
    run_dir = tmp_path / "run"
    result = ductaflow.run_flow(flows / flow, {}, run_dir)
    assert result.status == "died"
    assert expected in result.error
    stem = Path(flow).stem
    nb = executed(run_dir, stem)
    assert ERROR_TAG in nb.cells[1].metadata["tags"] and "died" in nb.cells[1].source
    assert read_json(run_dir / "status.json")["status"] == "died"
    assert not wait_no_kernels(run_dir)


def start_hanging_run(flows: Path, run_dir: Path) -> tuple[subprocess.Popen[str], Path]:
    """``ductaflow run hang.py`` in a subprocess, once its first cell has printed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ductaflow", "run", str(flows / "hang.py"), "--run-dir", run_dir],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    nb_path = run_dir / "hang_executed.ipynb"
    wait_for(lambda: "started" in outputs_text(nb_path), what="the first cell to run")
    return proc, nb_path


def test_kernel_killed_from_outside_is_died(flows: Path, tmp_path: Path) -> None:
    """SIGKILL of the kernel process by someone else (an OOM kill looks like this)."""
    run_dir = tmp_path / "run"
    proc, _ = start_hanging_run(flows, run_dir)
    for pid in kernels_under(run_dir):
        os.kill(pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=120)  # a deadline, not a speed
    assert proc.returncode == 1, err
    assert out.startswith("died: ")
    assert "killed by SIGKILL" in read_json(run_dir / "status.json")["error"]


def test_ctrl_c_records_interrupted_and_saves_notebook(flows: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc, nb_path = start_hanging_run(flows, run_dir)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)  # a deadline, not a speed
    assert proc.returncode == 1, err
    assert out.startswith("interrupted: ")
    status = read_json(run_dir / "status.json")
    assert status["status"] == "interrupted" and "SIGINT" in status["error"]
    nb = nbformat.read(nb_path, as_version=4)
    assert ERROR_TAG in nb.cells[1].metadata["tags"]
    assert "started" in outputs_text(nb_path)
    assert not wait_no_kernels(run_dir)


def test_notebook_is_saved_after_every_cell(flows: Path, tmp_path: Path) -> None:
    """A run killed midway (SIGKILL, no chance to clean up) keeps what it did."""
    run_dir = tmp_path / "run"
    proc, nb_path = start_hanging_run(flows, run_dir)
    proc.kill()
    proc.wait(timeout=60)
    nb = nbformat.read(nb_path, as_version=4)
    started = next(c for c in nb.cells if c.cell_type == "code" and "started" in c.source)
    assert "started" in started.outputs[0]["text"]
    assert read_json(run_dir / "status.json")["status"] == "running"
    assert not wait_no_kernels(run_dir), "the kernel outlived its killed owner"


def test_cli_run_with_config_and_sets(flows: Path, tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text('{"alpha": 0.1, "model": {"depth": 2, "kind": "x"}}')
    proc = run_cli(
        "run", flows / "echo.py", "--config", "c.json", "--set", "alpha=0.3",
        "--set", "model.depth=4", "--set", "name=abc", "--set", "flag=true",
        "--set", 'list=[1, "a"]', "--run-dir", "runs/manual/try", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok: runs/manual/try")
    config = read_json(tmp_path / "runs/manual/try/CONFIG.json")
    assert config == {
        "alpha": 0.3,
        "model": {"depth": 4, "kind": "x"},
        "name": "abc",
        "flag": True,
        "list": [1, "a"],
    }


def test_cli_default_run_dir_and_failure_exit_code(flows: Path, tmp_path: Path) -> None:
    proc = run_cli("run", flows / "raises.py", cwd=tmp_path)
    assert proc.returncode == 1
    assert "failed: " in proc.stdout and "ZeroDivisionError: division by zero" in proc.stdout
    (run_dir,) = (tmp_path / "runs" / "manual").iterdir()
    assert run_dir.name.startswith("raises-")
    assert (run_dir / "raises_executed.ipynb").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "missing.py"], "flow file not found"),
        (["run", "FLOW", "--config", "bad.json"], "bad.json:2:16: invalid JSON"),
        (["run", "FLOW", "--config", "list.json"], "must be a JSON object"),
        (["run", "FLOW", "--config", "nope.json"], "config file not found"),
        (["run", "FLOW", "--set", "alpha"], "expected key=value"),
        (["run", "FLOW", "--set", "a..b=1"], "is not a config key"),
        (["run", "FLOW", "--kernel", "no-such-kernel"], "no such kernelspec"),
    ],
)
def test_bad_input_is_one_line_exit_2_before_any_kernel(
    flows: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "bad.json").write_text('{\n  "alpha": 0.1,,\n}')
    (tmp_path / "list.json").write_text("[1, 2]")
    args = [str(flows / "echo.py") if a == "FLOW" else a for a in args]
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_python_dash_m_and_console_script_agree(flows: Path, tmp_path: Path) -> None:
    exe = shutil.which("ductaflow", path=os.path.dirname(sys.executable))
    assert exe, "the ductaflow console script is installed next to python"
    proc = subprocess.run(
        [exe, "run", str(flows / "echo.py"), "--set", "a=1", "--run-dir", "r"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert read_json(tmp_path / "r/out.json")["vars"] == {"a": 1}


def test_script_mode_sets_the_same_variables(flows: Path, tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text('{"alpha": 2, "model": {"depth": 1}, "my-key": 1}')
    proc = subprocess.run(
        [sys.executable, str(flows / "echo.py"), "--config", "c.json", "--set", "s=it's"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = read_json(tmp_path / "out.json")
    assert out["config"] == {"alpha": 2, "model": {"depth": 1}, "my-key": 1, "s": "it's"}
    assert out["vars"] == {"alpha": 2, "s": "it's"}
    assert out["env_run_dir"] is None
    bad = subprocess.run(
        [sys.executable, str(flows / "echo.py"), "--config", "missing.json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2 and "config file not found" in bad.stderr


def test_parallel_kernel_starts_do_not_collide(flows: Path, tmp_path: Path) -> None:
    """Eight kernels starting at once (threads share one process, the hardest case)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(i: int) -> str:
        return ductaflow.run_flow(flows / "echo.py", {"i": i}, tmp_path / f"r{i}").status

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(one, range(8)))
    assert statuses == ["ok"] * 8
    for i in range(8):
        assert read_json(tmp_path / f"r{i}/out.json")["vars"] == {"i": i}


def test_kernel_option_uses_a_registered_kernelspec(flows: Path, tmp_path: Path) -> None:
    spec_dir = tmp_path / "jupyter" / "kernels" / "other-python"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Other",
                "language": "python",
                "env": {"FROM_KERNELSPEC": "yes"},
            }
        )
    )
    env = {**os.environ, "JUPYTER_PATH": str(tmp_path / "jupyter")}
    probe = tmp_path / "probe.py"
    probe.write_text(
        "# %%\nimport os\nopen('env.txt', 'w').write(os.environ.get('FROM_KERNELSPEC', 'no'))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "ductaflow", "run", str(probe), "--kernel", "other-python",
         "--run-dir", "k"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "k" / "env.txt").read_text() == "yes"
    default = ductaflow.run_flow(probe, {}, tmp_path / "d")
    assert default.ok and (tmp_path / "d" / "env.txt").read_text() == "no"
