"""What a lost run becomes (``ductaflow.lifecycle``), on real run directories and real claims."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import FLOWS

from ductaflow.lifecycle import (
    UNFINISHED_ERROR,
    classify,
    earlier_attempts,
    recover_unfinished,
    settle,
    settle_killed,
    shown_status,
    wait_released,
)
from ductaflow.process import now
from ductaflow.rundir import RunLock, read_status, write_status
from ductaflow.spec import FlowRef, FlowResult, PlanState, RunResult, RunSpec


def make_spec(tmp_path: Path, name: str = "r") -> RunSpec:
    flow = FlowRef.from_path(FLOWS / "work.py")
    return RunSpec(tmp_path / "s" / name, {"x": 1}, (flow,), sweep="s", name=name)


def left_running(spec: RunSpec, started: str | None = None) -> None:
    """A run whose process died mid-run: status.json still says ``running``."""
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    ref = spec.flows[0]
    flow = FlowResult(ref.name, str(ref.path), ref.sha256, "running", ref.notebook_name)
    result = RunResult(
        spec.run_dir, "running", started or now(), None, None, spec.config_hash, (flow,),
        sweep=spec.sweep, name=spec.name,
    )  # fmt: skip
    write_status(result)


def test_classify_reads_the_record_and_the_claim(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    assert classify(spec, None) is PlanState.NEW
    left_running(spec)
    status = read_status(spec.run_dir)
    assert classify(spec, status) is PlanState.FAILED  # nobody holds it: its process is gone
    lock = RunLock(spec.run_dir)
    assert lock.acquire()
    try:
        assert classify(spec, status) is PlanState.RUNNING
        assert not wait_released(spec.run_dir, timeout=0.2)
    finally:
        lock.release()
    assert wait_released(spec.run_dir, timeout=0.2)
    ok = {**status, "status": "ok"}
    assert classify(spec, ok) is PlanState.DONE
    assert classify(spec, {**ok, "config_hash": "other"}) is PlanState.STALE
    assert str(PlanState.STALE) == "stale" and PlanState("failed") == "failed"


def test_a_lost_run_is_recorded_once_the_policy_says_so(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    since = now()
    left_running(spec)
    asked: list[Path] = []

    def not_yet(s: RunSpec) -> bool:
        asked.append(s.run_dir)
        return False

    assert settle(spec, since, "died", "DeadWorker: x", record_if=not_yet) is None
    assert asked == [spec.run_dir] and read_status(spec.run_dir)["status"] == "running"
    outcome = settle(spec, since, "died", "DeadWorker: x")
    assert outcome is not None and outcome.kind == "ran"
    assert outcome.result.status == "died" and outcome.result.error == "DeadWorker: x"
    data = read_status(spec.run_dir)
    assert data["status"] == "died" and data["flows"][0]["status"] == "died"
    # settled again: its record, not a second recording
    again = settle(spec, since, "interrupted", "Interrupted: y")
    assert again is not None and again.result.status == "died"


def test_runs_not_started_by_this_sweep_are_left_or_recorded_not_run(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    since = now()
    assert settle(spec, since, "interrupted", "Interrupted: stopped") is None
    assert not spec.run_dir.exists()
    outcome = settle_killed(spec, since, "DeadWorker: the workers running it died")
    assert outcome.result is not None and outcome.result.status == "died"
    assert [f.status for f in outcome.result.flows] == ["not-run"]
    assert read_status(spec.run_dir)["status"] == "died"


def test_a_dask_retry_recorded_interrupted_becomes_died(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    since = now()
    left_running(spec)
    assert settle(spec, since, "interrupted", "Interrupted: its worker died").result.status == (
        "interrupted"
    )
    outcome = settle_killed(spec, since, "DeadWorker: the workers running it died")
    assert outcome.result.status == "died"
    assert json.loads((spec.run_dir / "status.json").read_text())["status"] == "died"


def test_a_killed_conductors_run_is_recovered_interrupted(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    left_running(spec, started="2000-01-01T00:00:00.000+00:00")
    assert shown_status(spec.run_dir, "running", None) == ("interrupted", UNFINISHED_ERROR)
    lock = RunLock(spec.run_dir)
    assert lock.acquire()
    try:
        assert shown_status(spec.run_dir, "running", None) == ("running", None)
        assert recover_unfinished(spec.run_dir) is None  # claimed: someone runs it
    finally:
        lock.release()
    result = recover_unfinished(spec.run_dir)
    assert result is not None and result.status == "interrupted"
    assert result.error == UNFINISHED_ERROR
    assert recover_unfinished(spec.run_dir) is None  # recorded: nothing left to recover


def test_a_run_lost_mid_sweep_keeps_its_attempt_and_an_earlier_sweeps_does_not_count(
    tmp_path: Path,
) -> None:
    spec = make_spec(tmp_path)
    since = now()
    assert earlier_attempts(read_status(spec.run_dir), since) == []  # never ran
    left_running(spec)  # its worker was killed mid-run, before it recorded anything
    (lost,) = earlier_attempts(read_status(spec.run_dir), since)
    assert (lost["status"], lost["error"], lost["ended"]) == ("interrupted", UNFINISHED_ERROR, None)
    assert lost["started"] == read_status(spec.run_dir)["started"]
    # recorded by the conductor meanwhile: the attempt says how it ended
    settle(spec, since, "interrupted", "Interrupted: its worker died")
    data = read_status(spec.run_dir)
    assert [(a["status"], a["error"]) for a in earlier_attempts(data, since)] == [
        ("interrupted", "Interrupted: its worker died")
    ]
    # the same record seen by a later sweep: that sweep's attempts start afresh
    assert earlier_attempts(data, now()) == []


def test_a_run_executed_again_counts_and_logs_both_attempts(tmp_path: Path) -> None:
    from ductaflow.engine import execute_run

    spec = make_spec(tmp_path)
    since = now()
    left_running(spec)
    earlier = earlier_attempts(read_status(spec.run_dir), since)
    result = execute_run(spec, earlier=earlier)
    data = read_status(spec.run_dir)
    assert result.ok and result.attempts == data["attempts"] == 2
    assert [a["status"] for a in data["attempt_log"]] == ["interrupted", "ok"]
    last = data["attempt_log"][-1]
    assert (last["started"], last["ended"]) == (data["started"], data["finished"])
    assert last["host"] == data["host"] and "job_id" in last
