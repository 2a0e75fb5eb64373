"""Warm kernels against standard ones on every backend: the same 40 short runs, side by side.

    python benchmarks/bench_warm_backends.py [--runs 40] [-j 2] [--rounds 1]
    SLURM_CONF=/tmp/ductaflow-slurm/slurm.conf python benchmarks/bench_warm_backends.py  # + slurm

Backends: ``loky`` (a zygote in each worker process), ``threading`` (one zygote in the
conductor), ``dask-local`` and ``slurm`` (a zygote in each worker's reused run process, for the
worker's whole life); ``slurm`` only where ``sinfo`` answers (``tests/slurm/start.sh``). Each round
runs the sweep once per backend and kernel kind, in a fresh runs root, warm and standard in turn
on each backend, so machine noise hits both alike.

Figures per sweep: runs/s over the runs (from the first run's start to the last run's end, from
``runs/index.csv``: what warm kernels change) and over the whole ``execute_sweep`` call (which for
the distributed backends includes starting and closing the cluster and, on SLURM, the jobs), and
the median ``kernel_start_s`` of the runs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from ductaflow.executor import SweepOptions, execute_sweep
from ductaflow.index import load_index
from ductaflow.spec import RunOptions
from ductaflow.sweep import Sweep

FLOW = """\
# %% tags=["parameters"]
x = 0
import ductaflow

# %%
ductaflow.record("double", 2 * x)
"""

BACKENDS = ("loky", "threading", "dask-local", "slurm")


def slurm_up() -> bool:
    if shutil.which("sinfo") is None:
        return False
    try:
        proc = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0 and any(
        s.rstrip("*~#") in {"idle", "mixed"} for s in proc.stdout.split()
    )


def one_sweep(base: Path, backend: str, warm: bool, runs: int, jobs: int) -> dict[str, float]:
    root = base / f"runs-{backend}-{'warm' if warm else 'std'}-{time.monotonic_ns()}"
    sweep = Sweep(name="bench", flows=(base / "flow.py",), grid={"x": list(range(runs))})
    extra = {"slurm_time": 15} if backend == "slurm" else {}
    options = SweepOptions(
        root, jobs, run=RunOptions(warm=warm), backend=backend, backend_options=extra,
        progress=False,
    )  # fmt: skip
    t0 = time.perf_counter()
    report = execute_sweep(sweep, options)
    wall = time.perf_counter() - t0
    assert report.ok and len(report.outcomes) == runs, report.summary()
    frame = load_index(root)
    span = (frame["finished"].max() - frame["started"].min()).total_seconds()
    starts = []
    for run_dir in frame["run_dir"]:
        status = json.loads((Path(run_dir) / "status.json").read_text())
        starts.append(status["flows"][0]["kernel_start_s"])
    return {
        "wall": wall,
        "runs_per_s": runs / span,
        "wall_runs_per_s": runs / wall,
        "kernel_s": statistics.median(starts),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("-j", "--jobs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    args = parser.parse_args()
    backends = [b for b in args.backends if b != "slurm" or slurm_up()]
    if len(backends) < len(args.backends):
        print("slurm: sinfo does not answer (tests/slurm/start.sh; SLURM_CONF); left out\n")
    figures: dict[tuple[str, bool], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="df-bench-warm-") as tmp:
        base = Path(tmp)
        (base / "flow.py").write_text(FLOW)
        for _ in range(args.rounds):
            for backend in backends:
                for warm in (True, False):
                    result = one_sweep(base, backend, warm, args.runs, args.jobs)
                    figures.setdefault((backend, warm), []).append(result)
                    print(f"  {backend} {'warm' if warm else 'standard'}: {result}", flush=True)
    print(f"\n{args.runs} runs, -j {args.jobs}, {args.rounds} round(s), medians\n")
    print(
        "| backend | runs/s warm | runs/s standard | warm / standard | wall s warm / standard "
        "| runs/s (wall) warm / standard | kernel start s warm / standard |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for backend in backends:
        warm, std = (
            {
                k: statistics.median(f[k] for f in figures[(backend, w)])
                for k in figures[(backend, w)][0]
            }
            for w in (True, False)
        )
        print(
            f"| {backend} | {warm['runs_per_s']:.2f} | {std['runs_per_s']:.2f} "
            f"| {warm['runs_per_s'] / std['runs_per_s']:.1f}× "
            f"| {warm['wall']:.1f} / {std['wall']:.1f} "
            f"| {warm['wall_runs_per_s']:.2f} / {std['wall_runs_per_s']:.2f} "
            f"| {warm['kernel_s']:.2f} / {std['kernel_s']:.2f} |"
        )


if __name__ == "__main__":
    main()
