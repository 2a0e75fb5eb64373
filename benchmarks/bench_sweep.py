"""Sweep bookkeeping at scale: expansion, planning (resume check) and per-run bookkeeping.

    python benchmarks/bench_sweep.py            # 10,000 and 100,000 runs (a few minutes)
    python benchmarks/bench_sweep.py --quick    # 1,000 and 10,000

Per-run bookkeeping is everything ductaflow does for a run besides the kernel: create and claim
the run directory, write CONFIG.json and status.json (twice: running, then final), read the
status back, build the index row and append it to runs/index.csv. It is measured side by side
with the alternative the design avoids: rewriting the whole index after every run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from ductaflow.index import IndexFile, build_row
from ductaflow.plan import plan_runs
from ductaflow.process import now as _now
from ductaflow.rundir import CONFIG_FILE, RunLock, atomic_write_text, read_status, write_status
from ductaflow.spec import FlowResult, RunResult
from ductaflow.sweep import Sweep

FLOW = Path(__file__).resolve().parent.parent / "flow" / "01_data_prep.py"


def grid_for(n: int) -> dict[str, list[float | int]]:
    """A three-axis grid of ``n`` points (n a multiple of 100)."""
    assert n % 100 == 0, "n must be a multiple of 100"
    return {
        "alpha": [round(0.001 * i, 3) for i in range(n // 100)],
        "model.depth": list(range(10)),
        "seed": list(range(10)),
    }


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def bookkeeping(spec, index: IndexFile, rewrite_all: bool, rows: dict) -> None:
    """What ductaflow does for one run, minus the kernel."""
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    lock = RunLock(spec.run_dir)
    lock.acquire()
    read_status(spec.run_dir)
    atomic_write_text(spec.run_dir / CONFIG_FILE, "{}")
    now = _now()
    flow = FlowResult("01_data_prep", str(FLOW), "0" * 64, "ok", "x.ipynb", now, now, 0.5)
    running = RunResult(spec.run_dir, "running", now, None, None, spec.config_hash, (flow,))
    write_status(running)
    done = RunResult(spec.run_dir, "ok", now, _now(), 0.5, spec.config_hash, (flow,))
    write_status(done)
    lock.release()
    row = build_row(spec.run_dir, done.to_json(), spec.config)
    if rewrite_all:  # the alternative: the whole index rewritten after every run
        rows[row["run_dir"]] = row
        index._write(rows.values())
    else:
        index.append(row)


def bench_bookkeeping(n: int, rewrite_all: bool, base: Path) -> float:
    root = base / f"book-{n}-{'rewrite' if rewrite_all else 'append'}"
    specs = Sweep(name="b", flows=(FLOW,), grid=grid_for(n)).expand(root)
    index = IndexFile(root)
    index.merge(())
    rows: dict = {}
    t0 = time.perf_counter()
    for spec in specs:
        bookkeeping(spec, index, rewrite_all, rows)
    return (time.perf_counter() - t0) / n


def make_existing(specs, fraction_done: float = 0.5) -> None:
    """Give part of a sweep finished status files, as after an interrupted sweep."""
    now = _now()
    for i, spec in enumerate(specs):
        if i % int(1 / fraction_done):
            continue
        spec.run_dir.mkdir(parents=True, exist_ok=True)
        flows = (
            FlowResult(f.name, str(f.path), f.sha256, "ok", f.notebook_name) for f in spec.flows
        )
        write_status(RunResult(spec.run_dir, "ok", now, now, 0.1, spec.config_hash, tuple(flows)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sizes = (1_000, 10_000) if args.quick else (10_000, 100_000)
    print(f"python {sys.version.split()[0]}, rounds={args.rounds}; medians\n")
    print("| runs | expand | plan (half of them done on disk) |\n|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="df-bench-") as tmp:
        base = Path(tmp)
        for n in sizes:
            sweep = Sweep(name="s", flows=(FLOW,), grid=grid_for(n))
            expand = [timed(sweep.expand, base / f"plan{n}")[0] for _ in range(args.rounds)]
            specs = sweep.expand(base / f"plan{n}")
            make_existing(specs)
            plans = []
            for _ in range(args.rounds):
                seconds, plan = timed(plan_runs, specs)
                plans.append(seconds)
            assert len(plan.to_run) == n // 2
            print(
                f"| {n:,} | {statistics.median(expand):.2f} s | {statistics.median(plans):.2f} s |"
            )

        print("\nBookkeeping per run (no kernel), index appended vs. rewritten after every run:\n")
        print("| runs in the sweep | append (ductaflow) | rewrite whole index | rewrite / append |")
        print("|---:|---:|---:|---:|")
        book_sizes = (1_000, 2_000) if args.quick else (1_000, 2_000, 10_000)
        for n in book_sizes:
            append = statistics.median(
                bench_bookkeeping(n, False, base / f"a{r}") for r in range(args.rounds)
            )
            if n <= 2_000:
                rewrite = bench_bookkeeping(n, True, base / "r")
                cells = f"{rewrite * 1e3:.2f} ms | {rewrite / append:.1f}×"
            else:
                cells = "not run (quadratic) | —"
            print(f"| {n:,} | {append * 1e3:.2f} ms | {cells} |")


if __name__ == "__main__":
    main()
