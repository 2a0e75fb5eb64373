"""One trivial run, side by side with the kernel start alone and with bare nbclient.

    python benchmarks/bench_run.py [--rounds 10]

Interleaved rounds, so machine noise hits all three alike; medians reported:
- kernel start: ductaflow's standard starter, from launch until the kernel answers;
- ductaflow run: ``run_flow`` of a trivial 3-cell flow, everything included (notebook build,
  CONFIG.json, status.json, notebook saved after each cell, kernel start and kill);
- bare nbclient: ``NotebookClient(nb).execute()`` of the same notebook, nothing recorded.

Then a one-off run as ``ductaflow run`` does it, each in a fresh Python process (imports
included): with a standard kernel, and with a warm one (a zygote started for this one kernel),
wall and CPU of the whole process tree. This decides whether ``ductaflow run`` goes warm.

Then a small warm sweep (``--sweep-runs`` runs at -j 2) in a fresh process, timed from the
process's first line: with the zygote started on demand (by the first kernel), and prestarted
(``ZygoteRegistry.prestart`` before the sweep's imports, expansion and planning).
``--prestart-only`` measures only this.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jupytext
import nbclient

import ductaflow
from ductaflow.kernel import StandardStarter, open_kernel

TRIVIAL = """\
# %% tags=["parameters"]
x = 1

# %%
y = x + 1

# %%
print(y)
"""


async def kernel_start(cwd: Path) -> tuple[float, float]:
    t0 = time.perf_counter()
    kernel = await open_kernel(StandardStarter(), cwd)
    ready = time.perf_counter() - t0
    t1 = time.perf_counter()
    await kernel.stop()
    return ready, time.perf_counter() - t1


ONE_OFF = (
    "import sys, ductaflow\n"
    "r = ductaflow.run_flow(sys.argv[1], {'x': 1}, sys.argv[2], warm=sys.argv[3] == 'warm')\n"
    "assert r.ok, r.error"
)


def one_off(flow: Path, base: Path, rounds: int) -> dict[str, list[tuple[float, float]]]:
    """(wall, CPU-s of the process tree) of a one-off run in a fresh process, per kernel mode."""
    samples: dict[str, list[tuple[float, float]]] = {"standard": [], "warm": []}
    for i in range(rounds):
        for mode in ("standard", "warm") if i % 2 else ("warm", "standard"):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            args = [sys.executable, "-c", ONE_OFF, str(flow), str(base / f"{mode}{i}"), mode]
            subprocess.run(args, check=True)
            wall = time.perf_counter() - t0
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
            samples[mode].append((wall, cpu))
    return samples


SWEEP = """\
import sys, time
t0 = time.perf_counter()
if sys.argv[3] == "prestarted":
    from ductaflow.zygotes import default_registry
    default_registry().prestart()
from pathlib import Path
from ductaflow.executor import SweepOptions, execute_sweep
from ductaflow.sweep import Sweep
sweep = Sweep(name="s", flows=(Path(sys.argv[1]),), grid={"x": list(range(int(sys.argv[4])))})
report = execute_sweep(sweep, SweepOptions(runs_root=Path(sys.argv[2]), n_jobs=2, progress=False))
assert report.counts().get("ok") == int(sys.argv[4]), report.counts()
print(time.perf_counter() - t0)
"""


def small_sweeps(flow: Path, base: Path, rounds: int, runs: int) -> dict[str, list[float]]:
    """The sweep's wall from its process's first line, per zygote mode and round."""
    samples: dict[str, list[float]] = {"on demand": [], "prestarted": []}
    for i in range(rounds):
        for mode in list(samples) if i % 2 else list(samples)[::-1]:
            args = [sys.executable, "-c", SWEEP, str(flow), str(base / f"sw-{mode[:2]}{i}"), mode]
            out = subprocess.run([*args, str(runs)], check=True, capture_output=True, text=True)
            samples[mode].append(float(out.stdout))
    return samples


def print_small_sweeps(samples: dict[str, list[float]], runs: int) -> None:
    walls = {mode: statistics.median(rows) for mode, rows in samples.items()}
    print(f"\n| {runs}-run warm sweep, -j 2, fresh process | wall from its first line |")
    print("|---|---:|")
    for mode, wall in walls.items():
        print(f"| zygote {mode} | {wall:.2f} s |")
    print(
        f"\nprestarted / on demand: {walls['prestarted'] / walls['on demand']:.2f}×; "
        f"saved {walls['on demand'] - walls['prestarted']:.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--sweep-runs", type=int, default=20)
    parser.add_argument("--prestart-only", action="store_true")
    args = parser.parse_args()
    if args.prestart_only:
        with tempfile.TemporaryDirectory(prefix="df-bench-run-") as tmp:
            flow = Path(tmp) / "trivial.py"
            flow.write_text(TRIVIAL)
            samples = small_sweeps(flow, Path(tmp), args.rounds, args.sweep_runs)
        print(f"rounds: {args.rounds} (interleaved), medians")
        print_small_sweeps(samples, args.sweep_runs)
        return
    starts, stops, runs, bare = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="df-bench-run-") as tmp:
        base = Path(tmp)
        flow = base / "trivial.py"
        flow.write_text(TRIVIAL)
        ductaflow.run_flow(flow, {"x": 0}, base / "warmup")  # imports, caches
        for i in range(args.rounds):
            ready, stop = asyncio.run(kernel_start(base))
            starts.append(ready)
            stops.append(stop)
            t0 = time.perf_counter()
            result = ductaflow.run_flow(flow, {"x": i}, base / f"run{i}")
            runs.append(time.perf_counter() - t0)
            assert result.ok, result.error
            t0 = time.perf_counter()
            nbclient.NotebookClient(
                jupytext.reads(TRIVIAL, fmt="py:percent"), kernel_name="python3"
            ).execute()
            bare.append(time.perf_counter() - t0)
        single = one_off(flow, base, args.rounds)
        sweeps = small_sweeps(flow, base, args.rounds, args.sweep_runs)
    med = statistics.median
    print(f"rounds: {args.rounds} (interleaved), medians\n")
    print("| what | wall |\n|---|---:|")
    print(f"| kernel start until ready (ductaflow standard starter) | {med(starts):.3f} s |")
    print(f"| kernel kill and cleanup | {med(stops):.3f} s |")
    print(f"| ductaflow run of a trivial 3-cell flow, all recorded | {med(runs):.3f} s |")
    print(f"| bare nbclient execute of the same notebook | {med(bare):.3f} s |")
    print(
        f"\nductaflow run / kernel start: {med(runs) / med(starts):.2f}×; "
        f"ductaflow run / bare nbclient: {med(runs) / med(bare):.2f}×"
    )
    print("\n| one-off run in a fresh process | wall | CPU-s |\n|---|---:|---:|")
    for mode, rows in single.items():
        walls, cpus = zip(*rows, strict=True)
        print(f"| {mode} kernel | {med(walls):.2f} s | {med(cpus):.2f} |")
    print_small_sweeps(sweeps, args.sweep_runs)


if __name__ == "__main__":
    main()
