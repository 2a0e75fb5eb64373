"""``ductaflow rerun``: a recorded run again, in place, from its directory; and a runs root that
moves with its index and report."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest
from conftest import read_json, run_cli, wait_for, wait_no_kernels

from ductaflow.index import INDEX_FILE, load_index
from ductaflow.rerun import quote_columns

BROKEN = 'assert x != 3, "x=3 breaks this flow"'
FLOW = f"""\
# %% tags=["parameters"]
x = 0
import ductaflow

ductaflow.parameters(globals())

# %%
{BROKEN}
ductaflow.record("double", x * 2)
"""


def sweep_in(project: Path) -> Path:
    """A sweep of three runs in ``project``, x=3 failed; its report written."""
    (project / "flows").mkdir()
    (project / "flows" / "double.py").write_text(FLOW)
    spec = {"name": "s", "flows": ["flows/double.py"], "grid": {"x": [1, 2, 3]}}
    (project / "sweep.json").write_text(json.dumps(spec))
    proc = run_cli("sweep", "sweep.json", "-j", "2", "--no-progress", cwd=project)
    assert proc.returncode == 1, proc.stderr
    return project


@pytest.fixture
def swept(tmp_path: Path) -> Path:
    """The project folder of a fresh sweep (``sweep_in``), for a test to change."""
    return sweep_in(tmp_path)


@pytest.fixture(scope="module")
def swept_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One sweep shared by the tests that must leave it as it is."""
    return sweep_in(tmp_path_factory.mktemp("swept"))


def run_of(project: Path, x: int) -> Path:
    (found,) = (project / "runs" / "s").glob(f"x={x}-*")
    return found


def rows(project: Path) -> dict[str, dict]:
    """The index as a DataFrame's records, by run name."""
    frame = load_index(project / "runs")
    return {row["run"]: row for row in frame.to_dict("records")}


def test_a_failed_run_reruns_ok_after_the_flow_is_fixed(swept: Path) -> None:
    bad, good = run_of(swept, 3), run_of(swept, 1)
    before = read_json(bad / "status.json")
    assert before["status"] == "failed" and "x=3 breaks" in before["error"]
    good_started = read_json(good / "status.json")["started"]
    # the fix
    flow = swept / "flows" / "double.py"
    flow.write_text(flow.read_text().replace(BROKEN, "pass"))
    proc = run_cli("rerun", bad.relative_to(swept), "--no-progress", cwd=swept)
    assert proc.returncode == 0, proc.stderr
    assert f"ok: {bad} (attempt 2)" in proc.stdout
    assert "rerun: ok: 1 ok, 0 failed" in proc.stdout
    # the warning names the flow that changed
    assert re.search(rf"{re.escape(str(flow))} changed since this run executed it", proc.stderr)
    after = read_json(bad / "status.json")
    assert after["status"] == "ok" and after["attempts"] == 2
    assert after["started"] > before["started"]
    earlier, last = after["attempt_log"]  # every attempt, this one included
    assert earlier == {
        "started": before["started"], "ended": before["finished"], "host": before["host"],
        "job_id": before.get("job_id"), "status": "failed", "error": before["error"],
    }  # fmt: skip
    assert last["started"] == after["started"] and last["status"] == "ok"
    assert last["ended"] == after["finished"] and last["error"] is None
    assert read_json(bad / "results.json") == {"double": 6}
    index = rows(swept)
    assert index[bad.name]["status"] == "ok" and index[bad.name]["attempts"] == 2
    assert index[bad.name]["result.double"] == 6
    assert index[good.name]["attempts"] == 1  # the others are left alone
    assert read_json(good / "status.json")["started"] == good_started
    # the sweep's report was rewritten: the error is gone from it
    assert "x=3 breaks" not in (swept / "runs" / "s" / "report.html").read_text()
    # a second rerun appends a second attempt
    proc = run_cli("rerun", bad, "--no-progress", cwd=swept)
    assert proc.returncode == 0, proc.stderr
    assert "changed since" not in proc.stderr  # the flow is as the last attempt ran it
    status = read_json(bad / "status.json")
    assert status["attempts"] == 3
    assert [e["status"] for e in status["attempt_log"]] == ["failed", "ok", "ok"]


def test_a_run_that_fails_again_exits_1_and_counts_the_attempt(swept: Path) -> None:
    bad = run_of(swept, 3)
    proc = run_cli("rerun", bad, "--no-progress", cwd=swept)
    assert proc.returncode == 1, proc.stderr
    assert f"failed: {bad} (attempt 2): AssertionError: x=3 breaks this flow" in proc.stdout
    status = read_json(bad / "status.json")
    assert status["attempts"] == 2
    assert [e["status"] for e in status["attempt_log"]] == ["failed", "failed"]
    assert rows(swept)[bad.name]["attempts"] == 2
    # the retries of a sweep count too (a sweep records the attempts of its own execution)
    proc = run_cli("sweep", "sweep.json", "--retries", "1", "--no-progress", "--no-report",
                   cwd=swept)  # fmt: skip
    assert proc.returncode == 1 and read_json(bad / "status.json")["attempts"] == 2
    proc = run_cli("rerun", bad, "--no-progress", cwd=swept)
    assert f"failed: {bad} (attempt 3)" in proc.stdout
    status = read_json(bad / "status.json")
    assert status["attempts"] == 3 and rows(swept)[bad.name]["attempts"] == 3
    assert status["attempt_log"][-1]["started"] == status["started"]


def test_where_selects_runs_by_a_query_over_the_index(swept: Path) -> None:
    started = {x: read_json(run_of(swept, x) / "status.json")["started"] for x in (1, 2, 3)}
    proc = run_cli(
        "rerun", "--where", "param.x >= 2 and status == 'ok'", "--no-progress", cwd=swept
    )
    assert proc.returncode == 0, proc.stderr
    assert f"ok: {run_of(swept, 2)} (attempt 2)" in proc.stdout
    again = {x: read_json(run_of(swept, x) / "status.json")["started"] for x in (1, 2, 3)}
    assert [again[x] != started[x] for x in (1, 2, 3)] == [False, True, False]
    # --only failed keeps the ok ones out, whatever selects them
    proc = run_cli("rerun", "--where", "param.x > 0", "--only", "failed", "--no-progress",
                   cwd=swept)  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert [line.split(":")[0] for line in proc.stdout.splitlines()[:-1]] == ["failed"]
    proc = run_cli("rerun", run_of(swept, 1), "--only", "failed", cwd=swept)
    assert proc.returncode == 0 and "nothing to rerun" in proc.stdout
    proc = run_cli("rerun", "--where", "param.x > 10", cwd=swept)
    assert proc.returncode == 0 and "no run matches" in proc.stdout


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--where", "param.x >"], "SyntaxError"),
        (["--where", "param.y > 1"], "no column 'param.y'"),
        (["--where", "x > 1"], "UndefinedVariableError"),
        (["--where", "param.x > 1", "runs/s"], "one of the two"),
        ([], "one of the two"),
        (["runs/s"], "no readable status.json"),
        (["--where", "param.x > 1", "--root", "nowhere"], "no runs recorded"),
    ],
)
def test_bad_input_is_exit_2_in_one_line(swept_once: Path, args: list[str], said: str) -> None:
    swept = swept_once
    before = {p: p.read_text() for p in (swept / "runs" / "s").glob("*/status.json")}
    proc = run_cli("rerun", *args, cwd=swept)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and said in proc.stderr, proc.stderr
    assert before == {p: p.read_text() for p in before}  # nothing ran


def test_a_gone_flow_is_exit_2_naming_it(swept: Path) -> None:
    (swept / "flows" / "double.py").rename(swept / "flows" / "moved.py")
    proc = run_cli("rerun", run_of(swept, 3), cwd=swept)
    assert proc.returncode == 2
    assert "cannot rerun" in proc.stderr and "double.py" in proc.stderr


def test_quote_columns() -> None:
    columns = ["status", "param.a", "param.a.b", "result.r", "flow.f.duration_s"]
    assert quote_columns("param.a.b > 1 and param.a < 2", columns) == (
        "`param.a.b` > 1 and `param.a` < 2"
    )
    # quoted text and names already in backticks are left alone; methods still work
    assert quote_columns("status == 'param.a' and `param.a` > 0", columns) == (
        "status == 'param.a' and `param.a` > 0"
    )
    assert quote_columns("result.r.isna() | flow.f.duration_s > 1", columns) == (
        "`result.r`.isna() | `flow.f.duration_s` > 1"
    )
    # an unknown prefixed name is quoted too, so it is reported by its name
    assert quote_columns("param.zz > 1", columns) == "`param.zz` > 1"


def test_a_moved_runs_root_loads_with_its_report_links(swept: Path, tmp_path_factory) -> None:
    root = swept / "runs"
    text = (root / INDEX_FILE).read_text()
    assert str(root) not in text  # run_dir is recorded relative to the runs root
    report = root / "s" / "report.html"
    moved = tmp_path_factory.mktemp("elsewhere") / "runs-moved"
    shutil.move(root, moved)
    frame = load_index(moved)
    assert len(frame) == 3
    assert all(Path(d).parent == moved / "s" and Path(d).is_dir() for d in frame["run_dir"])
    assert (moved / INDEX_FILE).read_text() == text  # nothing needed repair
    # the report written before the move still finds every run's files
    page = (moved / "s" / report.name).read_text()
    hrefs = [unquote(h) for h in re.findall(r'href="([^"#]+)', page)]
    files = [h for h in hrefs if h.endswith((".ipynb", ".html", ".json", ".csv"))]
    assert len(files) >= 6 and all(((moved / "s") / h).exists() for h in files), files
    # and a run in it reruns where it now is
    (bad,) = (moved / "s").glob("x=3-*")
    proc = run_cli("rerun", bad, "--no-progress", cwd=moved)
    assert proc.returncode == 1 and f"failed: {bad} (attempt 2)" in proc.stdout
    assert load_index(moved).set_index("run").loc[bad.name, "attempts"] == 2


def test_a_run_of_ductaflow_run_reruns_where_it_is_without_an_index(tmp_path: Path) -> None:
    (tmp_path / "double.py").write_text(FLOW)
    proc = run_cli("run", "double.py", "--set", "x=3", "--run-dir", "out/r1", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    (tmp_path / "double.py").write_text(FLOW.replace(BROKEN, "pass"))
    proc = run_cli("rerun", "out/r1", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"ok: {tmp_path / 'out' / 'r1'} (attempt 2)" in proc.stdout
    assert read_json(tmp_path / "out" / "r1" / "results.json") == {"double": 6}
    # no runs root: nothing indexed above the run directory
    assert not list(tmp_path.rglob(INDEX_FILE)) and not (tmp_path.parent / INDEX_FILE).exists()


def test_ctrl_c_stops_a_rerun_and_records_the_attempt(tmp_path: Path) -> None:
    hold, began = tmp_path / "hold", tmp_path / "began"
    slow = FLOW.replace(
        BROKEN,
        f"import os, time\nif os.path.exists({str(hold)!r}):\n"
        f"    open({str(began)!r}, 'w').close()\n    time.sleep(120)",
    )
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "double.py").write_text(slow)
    spec = {"name": "s", "flows": ["flows/double.py"], "grid": {"x": [1]}}
    (tmp_path / "sweep.json").write_text(json.dumps(spec))
    assert run_cli("sweep", "sweep.json", "--no-progress", cwd=tmp_path).returncode == 0
    run_dir = run_of(tmp_path, 1)
    hold.touch()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ductaflow", "rerun", str(run_dir), "--no-progress"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # its own process group, like a shell job
    )  # fmt: skip
    wait_for(began.exists, seconds=60, what="the rerun to start")
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert "ductaflow: interrupted" in err and f"interrupted: {run_dir} (attempt 2)" in out
    status = read_json(run_dir / "status.json")
    assert status["status"] == "interrupted" and status["attempts"] == 2
    assert [e["status"] for e in status["attempt_log"]] == ["ok", "interrupted"]
    row = rows(tmp_path)[run_dir.name]
    assert row["status"] == "interrupted" and row["attempts"] == 2
    assert not wait_no_kernels(tmp_path)
