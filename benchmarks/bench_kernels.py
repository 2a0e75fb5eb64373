"""Warm kernels side by side with standard ones, bare nbclient and papermill (not run in CI).

    python benchmarks/bench_kernels.py [--runs 16] [--rounds 3] [--jobs 1 2 4]

papermill is a benchmark-only requirement: ``pip install papermill``.

For each flow (a trivial 3-cell one, one that imports pandas and numpy, and with ``--flows
outputs`` one of 12 cells with large outputs, heavier on the sweep's side), each ``-j`` and each
runner, N runs are executed in a fresh Python process:

- ``ductaflow``: a ductaflow sweep as ``ductaflow sweep`` runs it (``execute_sweep``: claims,
  status, index, resume check), by default: warm kernels (pandas and numpy preloaded for the
  pandas flow), driven from threads of the sweep's process, all forked by one zygote;
- ``warm-loky``: the same sweep with ``backend="loky"``: a zygote per worker process;
- ``standard``: the same sweep with ``warm=False``: a new kernel per run, on loky (its default);
- ``nbclient``: ``NotebookClient(nb).execute()`` with the parameter as a first cell, then saved,
  on joblib (loky);
- ``papermill``: ``papermill.execute_notebook`` with ``parameters``, on joblib (loky);
- ``baseline`` (with ``--baseline DIR``): the ``ductaflow`` sweep with the ductaflow package found
  in ``DIR`` (e.g. a checkout of main), to set a change side by side with the code before it.

Reported medians over interleaved rounds: wall per run and kernel start (at -j 1), CPU seconds
per run of the whole process tree (driver, workers, zygotes, kernels: ``RUSAGE_CHILDREN`` of the
measuring process, whose child reaps them all), and throughput (runs/s, from the first task
submitted to the last result, worker and zygote start-up included) at each -j.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RUNNERS = ("ductaflow", "warm-loky", "standard", "nbclient", "papermill")
#: ``--runners save-each-cell``: ductaflow as it was before saves were spaced out, a validated
#: save of the notebook after every cell.
EXTRA_RUNNERS = ("save-each-cell", "baseline")
SWEEPS = {
    "ductaflow": (True, None),
    "warm-loky": (True, "loky"),
    "standard": (False, None),
    "save-each-cell": (True, None),
    "baseline": (True, None),
}
RATIO_TO = ("papermill", "nbclient", "standard")

TRIVIAL = """\
# %% tags=["parameters"]
i = 0

# %%
y = i + 1

# %%
print(y)
"""

PANDAS = """\
# %% tags=["parameters"]
i = 0

# %%
import numpy as np
import pandas as pd

# %%
frame = pd.DataFrame({"a": np.arange(100) * i, "b": np.linspace(0, 1, 100)})
print(frame.describe().loc["mean"].round(3).to_dict())
"""

# Heavier on the client (the sweep's process): 12 cells, each showing a 200-row HTML table and
# printing 200 lines (~0.5 MB of notebook, saved after every cell).
OUTPUTS = (
    """\
# %% tags=["parameters"]
i = 0

# %%
from IPython.display import HTML, display

rows = "".join(f"<tr><td>{k}</td><td>{(k * 7919 + i) % 1000}</td></tr>" for k in range(200))
"""
    + """
# %%
display(HTML(f"<table>{rows}</table>"))
print("\\n".join(f"line {k} of run {i}" for k in range(200)))
"""
    * 12
)

FLOWS = {"trivial": TRIVIAL, "pandas": PANDAS, "outputs": OUTPUTS}
PRELOAD = {"trivial": [], "pandas": ["pandas", "numpy"], "outputs": []}


# -- in the measured process (and its workers) --------------------------------------------------
def sweep_runs(runner: str, flow: str, jobs: int, runs: int, base: str) -> list[Any]:
    """A ductaflow sweep of ``runs`` runs; (wall, kernel start, ok) of each."""
    from ductaflow.executor import SweepOptions, execute_sweep
    from ductaflow.spec import RunOptions
    from ductaflow.sweep import Sweep

    warm, backend = SWEEPS[runner]
    if runner == "save-each-cell":
        from ductaflow import engine
        from ductaflow.notebook import save_notebook

        engine._Autosave.cell_done = lambda self: save_notebook(self.nb, self.path)
    sweep = Sweep(name=runner, flows=(Path(base) / f"{flow}.py",), grid={"i": list(range(runs))})
    options = RunOptions(timeout=120, warm=warm, preload=tuple(PRELOAD[flow]))
    report = execute_sweep(
        sweep,
        SweepOptions(Path(base) / "runs", jobs, run=options, backend=backend, progress=False),
    )
    results = [o.result for o in report.outcomes if o.result is not None]
    return [(r.duration_s, r.flows[0].kernel_start_s, r.ok) for r in results]


def one_run(runner: str, flow: str, base: str, i: int) -> tuple[float, float | None, bool]:
    """Execute run ``i`` with nbclient or papermill; return its wall time, None and success."""
    base_dir = Path(base)
    run_dir = base_dir / "runs" / f"{runner}-{i:04d}"
    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        if runner == "nbclient":
            import nbclient
            import nbformat

            nb = nbformat.read(base_dir / f"{flow}.ipynb", as_version=4)
            nb.cells.insert(0, nbformat.v4.new_code_cell(f"i = {i}"))
            client = nbclient.NotebookClient(
                nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": run_dir}}
            )
            client.execute()
            nbformat.write(nb, run_dir / "out.ipynb")
            ok = True
        else:
            import papermill

            papermill.execute_notebook(
                str(base_dir / f"{flow}.ipynb"),
                str(run_dir / "out.ipynb"),
                parameters={"i": i},
                cwd=str(run_dir),
                kernel_name="python3",
                progress_bar=False,
            )
            ok = True
    except Exception:
        ok = False
    return time.perf_counter() - t0, None, ok


def measured(runner: str, flow: str, jobs: int, runs: int, base: str) -> dict[str, Any]:
    """One measurement, in the process ``measure`` started: N runs at -j ``jobs``."""
    import jupytext
    import nbformat
    from joblib import Parallel, delayed
    from joblib.externals.loky import reusable_executor

    import ductaflow.executor  # noqa: F401  (the driver's own imports are not timed)

    if runner == "nbclient":
        import nbclient  # noqa: F401
    if runner == "papermill":
        import papermill  # noqa: F401

    base_dir = Path(base)
    (base_dir / f"{flow}.py").write_text(FLOWS[flow])
    nb = jupytext.reads(FLOWS[flow], fmt="py:percent")
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, base_dir / f"{flow}.ipynb")

    setup = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    if runner in SWEEPS:
        results = sweep_runs(runner, flow, jobs, runs, base)
    else:
        results = Parallel(n_jobs=jobs, backend="loky", batch_size=1)(
            delayed(one_run)(runner, flow, base, i) for i in range(runs)
        )
    wall = time.perf_counter() - t0
    if reusable_executor._executor is not None:  # reap the workers, so their CPU is counted
        reusable_executor._executor.shutdown(wait=True)
    return {
        "wall": wall,
        "run_walls": [r[0] for r in results],
        "kernel_starts": [r[1] for r in results if r[1] is not None],
        "ok": sum(r[2] for r in results),
        "setup_cpu": setup.ru_utime + setup.ru_stime,
    }


# -- the measuring process ----------------------------------------------------------------------
def cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(
    runner: str, flow: str, jobs: int, runs: int, baseline: str | None = None
) -> dict[str, Any]:
    """Run one measurement in a fresh process; add the CPU time of its whole process tree."""
    env = dict(os.environ)
    if runner == "baseline":
        if baseline is None:
            raise SystemExit("--runners baseline needs --baseline DIR")
        # found before the installed (editable) ductaflow; its zygote boots from DIR too
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [baseline, env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory(prefix="df-bench-k-") as base:
        args = json.dumps([runner, flow, jobs, runs, base])
        cpu0, load0 = cpu_of_children(), os.getloadavg()[0]
        proc = subprocess.run(
            [sys.executable, __file__, "--measured", args], capture_output=True, text=True, env=env
        )
        cpu = cpu_of_children() - cpu0
    if proc.returncode != 0:
        raise RuntimeError(f"{runner} {flow} -j{jobs} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result.update(cpu=cpu - result["setup_cpu"], load=load0)
    return result


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(
    samples: dict[tuple[str, str, int], list[dict[str, Any]]],
    flows: list[str],
    jobs: list[int],
    runners: list[str],
) -> str:
    """Markdown tables of the medians, and the ratios warm / others at the best -j of each."""
    lines = [
        f"| flow | runner | wall/run -j{jobs[0]} (s) | kernel start -j{jobs[0]} (s) | CPU-s/run "
        f"-j{jobs[0]} | CPU-s/run -j{jobs[-1]} | "
        + " | ".join(f"runs/s -j{j}" for j in jobs)
        + " | best runs/s |",
        "|---" * (7 + len(jobs)) + "|",
    ]
    best: dict[tuple[str, str], float] = {}
    for flow in flows:
        for runner in runners:

            def med(key: str, j: int, runner: str = runner, flow: str = flow) -> float:
                rows = samples.get((flow, runner, j), [])
                if key == "cpu":
                    return median([r["cpu"] / len(r["run_walls"]) for r in rows])
                if key == "rate":
                    return median([len(r["run_walls"]) / r["wall"] for r in rows])
                return median([median(r[key]) for r in rows if r[key]])

            rates = [med("rate", j) for j in jobs]
            best[flow, runner] = max(rates)
            start = med("kernel_starts", jobs[0])
            lines.append(
                f"| {flow} | {runner} | {med('run_walls', jobs[0]):.2f} | "
                + ("–" if start != start else f"{start:.2f}")
                + f" | {med('cpu', jobs[0]):.2f} | {med('cpu', jobs[-1]):.2f} | "
                + " | ".join(f"{r:.2f}" for r in rates)
                + f" | {best[flow, runner]:.2f} |"
            )
    if any(r in runners for r in RATIO_TO):
        lines += [
            "",
            "| flow | best runs/s of | ÷ papermill | ÷ nbclient | ÷ standard |",
            "|---|---|---|---|---|",
        ]
    for flow in flows:
        for warm in ("ductaflow", "warm-loky"):
            if (flow, warm) not in best or not any((flow, o) in best for o in RATIO_TO):
                continue
            ratios = [best[flow, warm] / best.get((flow, o), float("nan")) for o in RATIO_TO]
            lines.append(f"| {flow} | {warm} | " + " | ".join(f"{r:.1f}×" for r in ratios) + " |")
    if "baseline" in runners and "ductaflow" in runners:
        lines += ["", "| flow | ductaflow ÷ baseline: wall/run -j1 | best runs/s |"]
        lines.append("|---|---|---|")
        for flow in flows:

            def wall(runner: str, flow: str = flow) -> float:
                rows = samples.get((flow, runner, jobs[0]), [])
                return median([median(r["run_walls"]) for r in rows])

            lines.append(
                f"| {flow} | {wall('ductaflow') / wall('baseline'):.2f}× | "
                f"{best[flow, 'ductaflow'] / best[flow, 'baseline']:.2f}× |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=16, help="runs per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--flows", nargs="+", default=["trivial", "pandas"], choices=list(FLOWS))
    parser.add_argument(
        "--runners", nargs="+", default=list(RUNNERS), choices=RUNNERS + EXTRA_RUNNERS
    )
    parser.add_argument("--baseline", help="a directory holding the ductaflow to compare with")
    parser.add_argument("--measured", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measured:
        print(json.dumps(measured(*json.loads(args.measured))))
        return
    samples: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    loads = []
    for rnd in range(args.rounds):
        for flow in args.flows:
            for jobs in args.jobs:
                runners = args.runners
                order = runners[rnd % len(runners) :] + runners[: rnd % len(runners)]
                for runner in order:
                    result = measure(runner, flow, jobs, args.runs, args.baseline)
                    samples.setdefault((flow, runner, jobs), []).append(result)
                    loads.append(result["load"])
                    print(
                        f"round {rnd + 1} {flow:8} -j{jobs} {runner:9} {result['wall']:6.2f} s "
                        f"{args.runs / result['wall']:5.2f} runs/s {result['cpu']:6.1f} CPU-s "
                        f"ok {result['ok']}/{args.runs} load {result['load']:.2f}",
                        file=sys.stderr,
                        flush=True,
                    )
    print(report(samples, args.flows, args.jobs, args.runners))
    print(
        f"\n{args.runs} runs per measurement, {args.rounds} rounds, {os.cpu_count()} CPUs, "
        f"load average at the start of each measurement: median {median(loads):.2f}, "
        f"max {max(loads):.2f}"
    )


if __name__ == "__main__":
    main()
