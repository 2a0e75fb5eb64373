"""What a run's kernels say, kept: ``<flow>_output.txt``, warnings as records, the environment.

Real kernels, real files: a flow prints, writes to stderr, logs and warns; the run directory, the
index, the status line, ``ductaflow status`` and the report show it.
"""

from __future__ import annotations

import json
import re
import threading
from importlib import metadata
from pathlib import Path

import nbformat
import pytest
from conftest import read_json, run_cli, wait_for

from ductaflow.engine import execute_run
from ductaflow.environment import ENVIRONMENT_DIR
from ductaflow.index import load_index
from ductaflow.report.fmt import STATUS_COLORS, WARNED
from ductaflow.spec import FlowRef, RunOptions, RunSpec

TALKER = """\
# %% tags=["parameters"]
alpha = 0.1

# %%
import logging
import sys
import warnings

print("one", flush=True)
print("two", file=sys.stderr, flush=True)
logging.getLogger("flow.step").warning("three %s", alpha)
print("four", flush=True)

# %%
if alpha > 0.5:
    warnings.warn("alpha is large", UserWarning)
print("five")
"""

QUIET = """\
# %% tags=["parameters"]
alpha = 0.1

# %%
print("quiet", alpha)
"""


def _flow(tmp_path: Path, text: str = TALKER, name: str = "talk.py") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _spec(tmp_path: Path, flow: Path, config: dict) -> RunSpec:
    return RunSpec(tmp_path / "runs" / "s" / "r", config, (FlowRef.from_path(flow),))


def _sweep(tmp_path: Path, flow: str = "talk.py") -> None:
    spec = {"name": "s", "flows": [flow], "grid": {"alpha": [0.2, 0.9]}}
    (tmp_path / "s.json").write_text(json.dumps(spec), encoding="utf-8")


# -- the output file -----------------------------------------------------------------------------
def test_output_file_holds_prints_stderr_and_log_records_in_order(tmp_path: Path) -> None:
    spec = _spec(tmp_path, _flow(tmp_path), {"alpha": 0.9})
    result = execute_run(spec, RunOptions(warm=False))
    assert result.ok, result.error
    text = (spec.run_dir / "talk_output.txt").read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    keys = (
        "===== cell 2 =====",
        "one",
        "two",
        "WARNING:flow.step:three 0.9",
        "four",
        "===== cell 3 =====",
        "UserWarning: alpha is large",
        "five",
        "the flow ended ok",
    )
    at = {key: next(i for i, ln in enumerate(lines) if key in ln) for key in keys}
    assert list(at.values()) == sorted(at.values()), text
    assert "===== cell 1 =====" in text and "===== injected parameters =====" not in text
    # the warning records never reach the notebook; its streams are as they were
    nb = nbformat.read(spec.run_dir / "talk_executed.ipynb", as_version=4)
    kinds = {o["output_type"] for c in nb.cells if c.cell_type == "code" for o in c.outputs}
    assert kinds == {"stream"}


def test_a_failing_cell_leaves_its_traceback_in_the_output(tmp_path: Path) -> None:
    flow = _flow(tmp_path, QUIET + "\n# %%\nprint('before')\nraise ValueError('bad alpha')\n")
    spec = _spec(tmp_path, flow, {"alpha": 1})
    result = execute_run(spec, RunOptions(warm=False))
    assert result.status == "failed"
    text = (spec.run_dir / "talk_output.txt").read_text(encoding="utf-8")
    assert "before" in text and "ValueError: bad alpha" in text
    assert "\x1b[" not in text  # colour codes stripped
    assert re.search(r"the flow ended failed in [\d.]+ s: ValueError: bad alpha =====", text)


def test_output_is_capped_with_a_note(tmp_path: Path) -> None:
    flow = _flow(tmp_path, QUIET + "\n# %%\nfor i in range(2000):\n    print('x' * 99)\n")
    spec = _spec(tmp_path, flow, {"alpha": 1})
    result = execute_run(spec, RunOptions(warm=False, output_limit=20_000))
    assert result.ok, result.error
    data = (spec.run_dir / "talk_output.txt").read_bytes()
    assert len(data) < 20_000 + 500
    assert b"[ductaflow: output truncated at 20,000 bytes" in data
    nb = nbformat.read(spec.run_dir / "talk_executed.ipynb", as_version=4)
    assert sum(len(o.get("text", "")) for o in nb.cells[-1].outputs) == 2000 * 100  # all of it


def test_the_output_file_can_be_followed_while_the_run_goes(tmp_path: Path) -> None:
    hold = tmp_path / "hold"
    flow = _flow(
        tmp_path,
        "# %%\nprint('first cell says hello', flush=True)\n\n"
        f"# %%\nimport os, time\nwhile not os.path.exists({str(hold)!r}):\n    time.sleep(0.05)\n"
        "print('released')\n",
    )
    spec = _spec(tmp_path, flow, {})
    out = spec.run_dir / "talk_output.txt"
    box: dict = {}
    thread = threading.Thread(target=lambda: box.update(r=execute_run(spec, RunOptions())))
    thread.start()
    try:
        wait_for(lambda: out.exists() and "first cell says hello" in out.read_text(), 60,
                 "the first cell's output in the output file")  # fmt: skip
        assert read_json(spec.run_dir / "status.json")["status"] == "running"
        assert "released" not in out.read_text()
    finally:
        hold.write_text("go")
        thread.join(60)
    assert box["r"].ok, box["r"].error
    assert "released" in out.read_text()


# -- warnings ------------------------------------------------------------------------------------
def test_warnings_in_status_index_summary_status_and_report(tmp_path: Path) -> None:
    _flow(tmp_path)
    _sweep(tmp_path)
    proc = run_cli("sweep", "s.json", "-j", "2", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr  # ok with warnings is ok
    assert "2 ok (2 with warnings), 0 failed" in proc.stdout, proc.stdout
    frame = load_index(tmp_path / "runs").sort_values("run")
    assert frame["status"].tolist() == ["ok", "ok"]
    assert frame["warnings"].tolist() == [1, 2]  # the log record; and the UserWarning at 0.9
    big = Path(frame["run_dir"].iloc[1])
    warnings = read_json(big / "status.json")["warnings"]
    assert warnings == [
        {"kind": "log", "message": "flow.step: three 0.9", "flow": "talk", "cell": 2,
         "category": "WARNING", "count": 1},
        {"kind": "warning", "message": "alpha is large", "flow": "talk", "cell": 3,
         "category": "UserWarning", "count": 1},
    ]  # fmt: skip

    status = run_cli("status", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert "(with warnings)" in status.stdout and "2 ok with warnings" in status.stdout

    html = (tmp_path / "runs" / "s" / "report.html").read_text(encoding="utf-8")
    assert html.count(f'data-status="{WARNED}"') == 2
    assert f"st-{WARNED}{{fill:{STATUS_COLORS[WARNED]}}}" in html
    assert 'id="status-filter"' not in html  # built by the page's script, from the rows
    assert "status-filter" in html


def test_a_quiet_flow_has_no_warnings(tmp_path: Path) -> None:
    _flow(tmp_path, QUIET)
    _sweep(tmp_path)
    proc = run_cli("sweep", "s.json", "-j", "2", "--no-progress", "--no-report", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "with warnings" not in proc.stdout
    assert load_index(tmp_path / "runs")["warnings"].tolist() == [0, 0]


def test_strict_warnings_fails_the_runs_that_warn(tmp_path: Path) -> None:
    _flow(tmp_path)
    _sweep(tmp_path)
    proc = run_cli("sweep", "s.json", "-j", "2", "--no-progress", "--no-report",
                   "--strict-warnings", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "0 ok, 2 failed" in proc.stdout
    for row in load_index(tmp_path / "runs").itertuples():
        assert row.status == "failed"
        assert row.error.startswith("StrictWarnings: the flow raised"), row.error
        assert "--strict-warnings" in row.error

    one = run_cli("run", "talk.py", "--set", "alpha=0.1", "--run-dir", "one",
                  "--strict-warnings", cwd=tmp_path)  # fmt: skip
    assert one.returncode == 1 and "StrictWarnings" in one.stdout, one.stdout + one.stderr
    plain = run_cli("run", "talk.py", "--set", "alpha=0.1", "--run-dir", "two", cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr
    assert "warning: talk, cell 2: WARNING: flow.step: three 0.1" in plain.stderr


# -- the environment -----------------------------------------------------------------------------
def test_environment_recorded_once_and_named_by_each_run(tmp_path: Path) -> None:
    _flow(tmp_path, QUIET)
    _sweep(tmp_path)
    dry = run_cli("sweep", "s.json", "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert not (tmp_path / "runs" / ENVIRONMENT_DIR).exists()  # a plan captures nothing

    proc = run_cli("sweep", "s.json", "-j", "2", "--no-progress", "--no-report", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (record,) = (tmp_path / "runs" / ENVIRONMENT_DIR).iterdir()
    env = read_json(record)
    assert env["distributions"]["nbclient"] == metadata.version("nbclient")
    assert env["python_version"] and env["platform"]
    frame = load_index(tmp_path / "runs")
    assert frame["env_hash"].tolist() == [record.stem] * 2
    assert sorted(p.name for p in (tmp_path / "runs" / "s").iterdir()) == sorted(frame["run"])
    for run_dir in frame["run_dir"]:
        assert read_json(Path(run_dir) / "status.json")["env_hash"] == record.stem

    status = run_cli("status", cwd=tmp_path)
    assert "different environments" not in status.stdout
    # one run recorded in another environment (as after an upgrade between two sweeps)
    moved = Path(frame["run_dir"].iloc[0]) / "status.json"
    data = read_json(moved)
    moved.write_text(json.dumps({**data, "env_hash": "0123456789ab"}), encoding="utf-8")
    status = run_cli("status", cwd=tmp_path)
    assert re.search(r"s: its runs ran in 2 different environments: \w+ \(1 runs\)", status.stdout)


@pytest.mark.parametrize("given", [True, False])
def test_a_single_run_names_its_environment(tmp_path: Path, given: bool) -> None:
    _flow(tmp_path, QUIET)
    args = ["--run-dir", "here"] if given else []
    proc = run_cli("run", "talk.py", *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run_dir = tmp_path / "here" if given else next((tmp_path / "runs" / "manual").iterdir())
    env_hash = read_json(run_dir / "status.json")["env_hash"]
    where = run_dir if given else tmp_path / "runs"
    assert (where / ENVIRONMENT_DIR / f"{env_hash}.json").exists()


def test_a_clean_stop_is_said_so_in_the_output(tmp_path: Path) -> None:
    flow = _flow(tmp_path, QUIET + "\n# %%\nimport sys\nsys.exit(0)\n\n# %%\nprint('never')\n")
    spec = _spec(tmp_path, flow, {"alpha": 1})
    result = execute_run(spec, RunOptions(warm=False))
    assert result.ok, result.error
    text = (spec.run_dir / "talk_output.txt").read_text(encoding="utf-8")
    assert "never" not in text and "===== cell 4 =====" not in text
    assert re.search(r"the flow ended ok in [\d.]+ s: stopped cleanly at cell 3 =====", text), text
