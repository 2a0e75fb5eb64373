"""When a SLURM worker stops taking runs (``ductaflow.backends.lifetime``), on a given clock.

The real thing, a worker draining before its job's end on a real Slurm, is in test_slurm.py.
"""

from __future__ import annotations

import threading

from ductaflow.backends.lifetime import JOB_END_ENV, MARGIN_ENV, RUN_ESTIMATE_ENV, WorkerLifetime


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_a_worker_takes_runs_while_the_longest_so_far_still_fits_then_drains() -> None:
    clock = Clock(1000.0)
    life = WorkerLifetime(end=1060.0, margin=5.0, clock=clock)
    assert life.admit()  # nothing timed yet: 60 s left is enough
    clock.t += 20
    life.finished(20.0)
    assert life.admit()  # 40 s left >= 20 s + 5 s
    clock.t += 20
    life.finished(20.0)
    assert not life.admit()  # 20 s left < 20 s + 5 s: it would be cut
    clock.t = 0.0  # and once draining, it stays so
    assert not life.admit() and life.draining


def test_no_end_no_drain_and_the_settings_come_from_the_environment() -> None:
    life = WorkerLifetime.from_env({})
    assert life.end is None and life.admit()
    env = {JOB_END_ENV: "5000000000", MARGIN_ENV: "30", RUN_ESTIMATE_ENV: "600"}
    life = WorkerLifetime.from_env(env)
    assert (life.end, life.margin, life.longest) == (5e9, 30.0, 600.0)
    life = WorkerLifetime.from_env({JOB_END_ENV: "not a time", MARGIN_ENV: "-1"})
    assert life.end is None and life.margin == 5.0


def test_wait_idle_returns_once_the_admitted_runs_have_ended() -> None:
    life = WorkerLifetime(end=None, margin=5.0)
    assert life.admit()
    assert not life.wait_idle(timeout=0.05)
    threading.Timer(0.1, life.finished, (1.0,)).start()
    assert life.wait_idle(timeout=30)


def test_an_estimate_longer_than_the_time_left_refuses_only_after_the_first_run() -> None:
    clock = Clock(0.0)
    life = WorkerLifetime(end=100.0, margin=5.0, estimate=300.0, clock=clock)
    assert life.admit()  # a fresh job's first run: refusing it could go on forever
    life.finished(1.0)
    assert not life.admit()  # 100 s left < 300 s expected
    late = WorkerLifetime(end=100.0, margin=5.0, clock=Clock(97.0))
    assert not late.admit()  # not even the margin is left
