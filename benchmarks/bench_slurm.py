"""A sweep of short runs on a real Slurm, warm kernels against standard ones, as a user runs it.

    tests/slurm/start.sh && export SLURM_CONF=/tmp/ductaflow-slurm/slurm.conf
    python benchmarks/bench_slurm.py [--runs 20] [-j 2] [--rounds 1]

Each round runs ``ductaflow sweep --backend slurm -j J`` twice in fresh directories, once with
warm kernels and once with ``--no-warm``. Figures per sweep: the CLI's wall time (Python start,
cluster, jobs, runs, report); from the first job's submission (Slurm's ``SubmitTime``, whole
seconds) to the job starting and to the first run starting (``status.json``); runs/s from the
first run's start to the last run's end; and ``kernel_start_s`` of each worker's first run and of
its later runs (a worker is a Slurm job: the flow writes ``SLURM_JOB_ID``).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

FLOW = """\
# %% tags=["parameters"]
x = 0
import ductaflow

ductaflow.parameters(globals())

# %%
import os

with open("job.txt", "w") as fh:
    fh.write(os.environ.get("SLURM_JOB_ID", ""))
ductaflow.record("double", 2 * x)
"""


def _stamp(text: str) -> float:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:  # Slurm prints local time
        moment = moment.astimezone()
    return moment.astimezone(timezone.utc).timestamp()


def _job_times(job: str) -> tuple[float, float]:
    out = subprocess.run(
        ["scontrol", "show", "job", job], capture_output=True, text=True, check=True
    ).stdout
    submit = re.search(r"SubmitTime=(\S+)", out)
    start = re.search(r"StartTime=(\S+)", out)
    assert submit and start, out
    return _stamp(submit.group(1)), _stamp(start.group(1))


def one_sweep(base: Path, runs: int, jobs: int, warm: bool) -> dict[str, float]:
    where = base / f"{'warm' if warm else 'standard'}-{time.monotonic_ns()}"
    where.mkdir()
    (where / "flow.py").write_text(FLOW)
    spec = {"name": "b", "flows": ["flow.py"], "grid": {"x": list(range(runs))}}
    (where / "spec.json").write_text(json.dumps(spec))
    cmd = [sys.executable, "-m", "ductaflow", "sweep", "spec.json", "--backend", "slurm"]
    cmd += ["-j", str(jobs), "--no-progress"] + ([] if warm else ["--no-warm"])
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=where, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stdout + proc.stderr
    statuses = [json.loads(p.read_text()) for p in where.glob("runs/b/*/status.json")]
    assert len(statuses) == runs
    by_job: dict[str, list[dict]] = defaultdict(list)
    for status in statuses:
        job = (Path(status["run_dir"]) / "job.txt").read_text()
        by_job[job].append(status)
    assert "" not in by_job, "a run did not execute in a Slurm job"
    submits, starts = zip(*(_job_times(job) for job in by_job), strict=True)
    first = min(_stamp(s["started"]) for s in statuses)
    last = max(_stamp(s["finished"]) for s in statuses)
    firsts, laters = [], []
    for job_runs in by_job.values():
        job_runs.sort(key=lambda s: s["started"])
        firsts.append(job_runs[0]["flows"][0]["kernel_start_s"])
        laters += [s["flows"][0]["kernel_start_s"] for s in job_runs[1:]]
    return {
        "wall_s": wall,
        "submit_to_job_start_s": min(starts) - min(submits),
        "submit_to_first_run_s": first - min(submits),
        "runs_per_s": runs / (last - first),
        "runs_per_s_wall": runs / wall,
        "workers": len(by_job),
        "kernel_first_s": statistics.median(firsts),
        "kernel_later_s": statistics.median(laters) if laters else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("-j", "--jobs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {"warm": [], "standard": []}
    with tempfile.TemporaryDirectory(prefix="df-bench-slurm-") as tmp:
        for _ in range(args.rounds):
            for kind in results:
                results[kind].append(one_sweep(Path(tmp), args.runs, args.jobs, kind == "warm"))
    keys = list(results["warm"][0])
    print(f"{args.runs} runs, -j {args.jobs}, {args.rounds} round(s), medians\n")
    print("| kernels | " + " | ".join(keys) + " |")
    print("|---|" + "---:|" * len(keys))
    for kind, rows in results.items():
        cells = [f"{statistics.median(r[k] for r in rows):.3g}" for k in keys]
        print(f"| {kind} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
