"""The same 40-run sweep on the local pool (loky) and on a Dask LocalCluster, side by side.

    python benchmarks/bench_backends.py [--runs 40] [-j 2] [--rounds 1]

Each round runs the sweep once per backend, in a fresh runs root, the backends in turn (so machine
noise hits both alike). Wall time is the whole ``execute_sweep`` call: for ``dask-local`` that
includes starting and closing the cluster (scheduler, one worker process per ``-j``) and the run
processes on the workers. ``run`` is the median of the runs' own ``duration_s`` (kernel start,
cells, kernel kill); the wall time minus ``runs x run / j`` is what the backend itself costs.
"""

from __future__ import annotations

import argparse
import statistics
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

BACKENDS = ("loky", "dask-local")


def one_sweep(base: Path, backend: str, runs: int, jobs: int) -> tuple[float, float]:
    root = base / f"runs-{backend}-{time.monotonic_ns()}"
    sweep = Sweep(name="bench", flows=(base / "flow.py",), grid={"x": list(range(runs))})
    t0 = time.perf_counter()
    options = RunOptions(warm=False)  # standard kernels on both, as when the table was measured
    report = execute_sweep(
        sweep, SweepOptions(root, jobs, run=options, backend=backend, progress=False)
    )
    wall = time.perf_counter() - t0
    assert report.ok and len(report.outcomes) == runs, report.summary()
    run = float(load_index(root)["duration_s"].median())
    return wall, run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("-j", "--jobs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    walls: dict[str, list[float]] = {b: [] for b in BACKENDS}
    runs: dict[str, list[float]] = {b: [] for b in BACKENDS}
    with tempfile.TemporaryDirectory(prefix="df-bench-backends-") as tmp:
        base = Path(tmp)
        (base / "flow.py").write_text(FLOW)
        for _ in range(args.rounds):
            for backend in BACKENDS:
                wall, run = one_sweep(base, backend, args.runs, args.jobs)
                walls[backend].append(wall)
                runs[backend].append(run)
    print(f"{args.runs} runs, -j {args.jobs}, {args.rounds} round(s), medians\n")
    print("| backend | wall s | runs/s | run s (median) | backend overhead s |")
    print("|---|---|---|---|---|")
    for backend in BACKENDS:
        wall, run = statistics.median(walls[backend]), statistics.median(runs[backend])
        overhead = wall - args.runs * run / args.jobs
        print(f"| {backend} | {wall:.1f} | {args.runs / wall:.2f} | {run:.2f} | {overhead:.1f} |")


if __name__ == "__main__":
    main()
