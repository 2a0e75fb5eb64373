"""One trivial run, side by side with the kernel start alone and with bare nbclient.

    python benchmarks/bench_run.py [--rounds 10]

Interleaved rounds, so machine noise hits all three alike; medians reported:
- kernel start: ductaflow's standard starter, from launch until the kernel answers;
- ductaflow run: ``run_flow`` of a trivial 3-cell flow, everything included (notebook build,
  CONFIG.json, status.json, notebook saved after each cell, kernel start and kill);
- bare nbclient: ``NotebookClient(nb).execute()`` of the same notebook, nothing recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
