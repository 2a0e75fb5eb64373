"""The sweep's promises on every backend (the ``backend`` fixture in conftest.py): its kernel
mode, the index growing as runs finish, Ctrl-C and SIGTERM, resuming truly interrupted runs
with the same configs, retries and ``--only failed``.

Every wait is an event: runs of ``tests/flows/hold.py`` announce themselves in a hold directory
and wait there until the test releases them.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from helpers import Backend, RunsRoot, conductor, release, started, wait_no_kernels, write_spec

pytestmark = pytest.mark.slow


def hold_spec(tmp_path: Path, n: int, **base: object) -> tuple[Path, RunsRoot]:
    hold = tmp_path / "hold"
    hold.mkdir()
    write_spec(tmp_path, "hold.py", grid={"x": list(range(n))}, base={"hold": str(hold), **base})
    return hold, RunsRoot(tmp_path / "runs")


def ok_rows(root: RunsRoot) -> set[str]:
    return {r["run_dir"] for r in root.rows() if r["status"] == "ok"}


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_interrupted_runs_resume_with_the_same_configs(
    tmp_path: Path, backend: Backend, stop: str
) -> None:
    """6 runs at -j 2: two finish (and are in the index while the sweep goes on), two are
    stopped in their flow (on Dask, Ctrl-C recorded as SIGINT), two never start. The next
    sweep, same spec, reruns exactly the four that did not finish, in their own directories,
    and skips the two that did."""
    hold, root = hold_spec(tmp_path, 6)
    env = backend.environ
    with conductor("spec.json", *backend.args(), cwd=tmp_path, env=env) as c:
        first = c.until(lambda: len(started(hold)) >= 2 and started(hold), what="two runs held")
        for x in first:
            release(hold, x)

        def appended() -> bool:
            dirs = root.by("x")
            return all(x in dirs for x in first) and {str(dirs[x]) for x in first} <= ok_rows(root)

        # the index grows as runs finish: both rows are there while the conductor still runs
        c.until(appended, what="the finished runs' rows appended")
        assert c.alive(), c.output()
        held = c.until(
            lambda: len(started(hold) - first) >= 2 and started(hold) - first, what="two more held"
        )
        if stop == "ctrl-c":
            c.signal_group(signal.SIGINT)  # what Ctrl-C in a terminal does
        else:
            c.signal(signal.SIGTERM)  # kill PID
        assert c.wait() == 1, c.output()
        assert "s: interrupted:" in c.out, c.output()
        assert not wait_no_kernels(tmp_path), "a kernel outlived the stopped sweep"
        by_x = root.by("x")
        statuses = {x: root.status(d).get("status") for x, d in by_x.items()}
        for x in first:
            assert statuses[x] == "ok"
        for x in held:
            assert statuses[x] == "interrupted", statuses
            error = root.status(by_x[x])["error"]
            assert error.startswith("Interrupted: "), error
            if stop == "ctrl-c" and backend.id in ("dask-local", "slurm"):
                # Ctrl-C reaches the Dask workers' run processes (fault 9e of issue 15)
                assert error == "Interrupted: the run was stopped by SIGINT"
            assert root.executions(by_x[x]) == 1
        assert set(statuses.values()) == {"ok", "interrupted"}, statuses
        indexed = {r["run_dir"]: r["status"] for r in root.rows()}
        assert indexed == {str(d): statuses[x] for x, d in by_x.items()}
    backend.assert_mode(root, c.pid, [by_x[x] for x in first])

    release(hold)
    with conductor("spec.json", *backend.args(), cwd=tmp_path, env=env) as again:
        assert again.wait() == 0, again.output()
        assert "s: ok: 4 ok, 0 failed, 0 timeout, 0 died, 0 interrupted, 2 skipped" in again.out
    assert root.by("x").keys() == set(range(6))
    assert {x: d for x, d in root.by("x").items() if x in by_x} == by_x, "new directories"
    for x, d in root.by("x").items():
        assert root.executions(d) == (1 if x in first else 2 if x in held else 1), x
    assert ok_rows(root) == {str(d) for d in root.by("x").values()}
    backend.assert_mode(root, again.pid, [d for x, d in root.by("x").items() if x not in first])


def test_retries_then_only_failed(tmp_path: Path, backend: Backend) -> None:
    """--retries 1: a run failing once passes on its second attempt; one failing every time is
    failed after two. --only failed then reruns that one alone."""
    gate = tmp_path / "gate"
    write_spec(
        tmp_path, "hold.py",
        table=[{"x": 0}, {"x": 1, "flaky": True}, {"x": 2, "fail_until": str(gate)}],
    )  # fmt: skip
    root = RunsRoot(tmp_path / "runs")
    env = backend.environ
    with conductor("spec.json", *backend.args("--retries", "1"), cwd=tmp_path, env=env) as c:
        assert c.wait() == 1, c.output()
    by_x = root.by("x")
    status = {x: root.status(d) for x, d in by_x.items()}
    assert {x: s["status"] for x, s in status.items()} == {0: "ok", 1: "ok", 2: "failed"}
    assert {x: s["attempts"] for x, s in status.items()} == {0: 1, 1: 2, 2: 2}
    assert {x: root.executions(d) for x, d in by_x.items()} == {0: 1, 1: 2, 2: 2}
    assert f"fails until {gate} exists" in status[2]["error"]
    backend.assert_mode(root, c.pid, [by_x[0], by_x[1]])

    gate.touch()
    with conductor("spec.json", *backend.args("--only", "failed"), cwd=tmp_path, env=env) as c:
        assert c.wait() == 0, c.output()
        assert "s: ok: 1 ok, 0 failed, 0 timeout, 0 died, 0 interrupted, 2 skipped" in c.out
    assert {x: root.executions(d) for x, d in by_x.items()} == {0: 1, 1: 2, 2: 3}
    assert {r["status"] for r in root.rows()} == {"ok"} and len(root.rows()) == 3
