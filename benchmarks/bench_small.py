"""Small sweeps end to end: ``ductaflow sweep`` next to papermill on joblib (not run in CI).

    python benchmarks/bench_small.py [--runs 20 64] [--rounds 3] [-j 2] [--baseline DIR]

papermill is a benchmark-only requirement: ``pip install papermill``.

Each measurement is a fresh Python process, timed from just before it is started until it has
exited, over the same trivial 3-cell flow, N runs at ``-j``:

- ``ductaflow``: ``ductaflow sweep spec.json -j 2 --no-progress``, as a user runs it (warm
  kernels, the default backend, the HTML report at the end);
- ``papermill``: a script that runs ``papermill.execute_notebook`` of the same flow as a notebook,
  with ``parameters={"i": i}``, on ``joblib.Parallel(n_jobs=2, backend="loky")``;
- ``baseline`` (with ``--baseline DIR``): the ``ductaflow`` sweep with the ductaflow package found
  in ``DIR`` first on ``PYTHONPATH`` (e.g. a worktree of main), to set a change beside the code
  before it.

For the ductaflow sweeps, from their runs' ``status.json``: the fixed cost, from the process start
to the first run's kernel ready to execute (the flow's ``started`` plus its ``kernel_start_s``), and
to the first run started (its claim); and the tail, from the last run finished to the process's
exit (index compaction, the report, zygote shut-down, interpreter exit).

Reported: after one uncounted warm-up sweep of 2 runs per runner, medians over interleaved
rounds (the order of the runners rotates each round), and the ratio papermill wall ÷ ductaflow
wall, with the load average at each measurement.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RUNNERS = ("ductaflow", "papermill")

TRIVIAL = """\
# %% tags=["parameters"]
i = 0

# %%
y = i + 1

# %%
print(y)
"""

PAPERMILL = """\
import sys
from pathlib import Path

import papermill
from joblib import Parallel, delayed

base, runs, jobs = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])


def one(i):
    out = base / "runs" / f"i={i}"
    out.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(
        str(base / "trivial.ipynb"), str(out / "trivial_executed.ipynb"), parameters={"i": i},
        cwd=str(out), kernel_name="python3", progress_bar=False,
    )
    return i


done = Parallel(n_jobs=jobs, backend="loky", batch_size=1)(delayed(one)(i) for i in range(runs))
assert len(done) == runs
"""


def write_flow(base: Path, runs: int) -> Path:
    """The flow as ``.py`` (ductaflow) and ``.ipynb`` (papermill), and a spec of ``runs`` runs."""
    import jupytext
    import nbformat

    (base / "trivial.py").write_text(TRIVIAL)
    nb = jupytext.reads(TRIVIAL, fmt="py:percent")
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, base / "trivial.ipynb")
    spec = {"name": "small", "flows": ["trivial.py"], "grid": {"i": list(range(runs))}}
    (base / "spec.json").write_text(json.dumps(spec))
    return base / "spec.json"


def _stamp(text: str) -> float:
    return datetime.datetime.fromisoformat(text).timestamp()


def sweep_events(root: Path, t0: float, t1: float) -> dict[str, float]:
    """Seconds from the process start to the first run's claim and kernel ready; the tail."""
    starts, readies, ends = [], [], []
    for path in root.glob("*/*/status.json"):
        status = json.loads(path.read_text())
        if status["status"] != "ok":
            raise RuntimeError(f"{path}: {status['status']}: {status.get('error')}")
        flow = status["flows"][0]
        starts.append(_stamp(status["started"]))
        readies.append(_stamp(flow["started"]) + flow["kernel_start_s"])
        ends.append(_stamp(status["finished"]))
    return {
        "first_run": min(starts) - t0,
        "first_kernel": min(readies) - t0,
        "tail": t1 - max(ends),
        "count": len(starts),
    }


def measure(runner: str, runs: int, jobs: int, baseline: str | None) -> dict[str, Any]:
    """One measurement: a fresh process running ``runs`` runs at ``-j jobs``."""
    env = dict(os.environ)
    if runner == "baseline":
        # found before the installed (editable) ductaflow; its zygote boots from DIR too
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [baseline, env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory(prefix="df-bench-small-") as tmp:
        base = Path(tmp)
        spec = write_flow(base, runs)
        if runner == "papermill":
            (base / "pm.py").write_text(PAPERMILL)
            cmd = [sys.executable, str(base / "pm.py"), str(base), str(runs), str(jobs)]
        else:
            cmd = [sys.executable, "-m", "ductaflow", "sweep", str(spec), "-j", str(jobs)]
            cmd += ["--no-progress", "--runs-root", str(base / "runs")]
        load = os.getloadavg()[0]
        t0 = time.time()
        proc = subprocess.run(cmd, cwd=base, env=env, capture_output=True, text=True)
        t1 = time.time()
        if proc.returncode != 0:
            raise RuntimeError(f"{runner} N={runs} failed:\n{proc.stderr[-3000:]}")
        result: dict[str, Any] = {"wall": t1 - t0, "load": load}
        if runner != "papermill":
            result.update(sweep_events(base / "runs", t0, t1))
            if result["count"] != runs:
                raise RuntimeError(f"{runner} N={runs}: {result['count']} runs recorded")
    return result


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(samples: dict[tuple[str, int], list[dict[str, Any]]], sizes: list[int],
          runners: list[str], jobs: int) -> str:  # fmt: skip
    """Markdown: wall per runner and size, the ratios, the fixed cost and the tail."""

    def med(runner: str, n: int, key: str) -> float:
        return median([s[key] for s in samples.get((runner, n), [])])

    sweeps = [r for r in runners if r != "papermill"]
    ratios_of = sweeps if "papermill" in runners else []
    head = " | ".join(f"{r} wall (s)" for r in runners)
    lines = [f"| runs, -j {jobs} | {head} |" + "".join(f" papermill ÷ {r} |" for r in ratios_of)]
    lines.append("|---" * (1 + len(runners) + len(ratios_of)) + "|")
    for n in sizes:
        walls = " | ".join(f"{med(r, n, 'wall'):.2f}" for r in runners)
        ratios = "".join(f" {med('papermill', n, 'wall') / med(r, n, 'wall'):.1f}× |"
                         for r in ratios_of)  # fmt: skip
        lines.append(f"| {n} | {walls} |{ratios}")
    lines += ["", "| runs | sweep | start → first run claimed (s) | start → first kernel ready "
              "(s) | last run finished → exit (s) |", "|---|---|---:|---:|---:|"]  # fmt: skip
    for n in sizes:
        for r in sweeps:
            first = f"{med(r, n, 'first_run'):.3f} | {med(r, n, 'first_kernel'):.3f}"
            lines.append(f"| {n} | {r} | {first} | {med(r, n, 'tail'):.3f} |")
    loads = [s["load"] for rows in samples.values() for s in rows]
    lines += ["", f"load average (1 min) at the measurements: {min(loads):.1f}–{max(loads):.1f}"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[20, 64], help="sweep sizes")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("-j", "--jobs", type=int, default=2)
    parser.add_argument("--runners", nargs="+", default=list(RUNNERS),
                        choices=[*RUNNERS, "baseline"])  # fmt: skip
    parser.add_argument("--baseline", help="a directory holding the ductaflow to compare with")
    args = parser.parse_args()
    runners = list(args.runners)
    if args.baseline and "baseline" not in runners:
        runners.append("baseline")
    if "baseline" in runners and not args.baseline:
        raise SystemExit("--runners baseline needs --baseline DIR")
    for runner in runners:  # not counted: fills the page cache with what each one imports
        measure(runner, 2, args.jobs, args.baseline)
    samples: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for rnd in range(args.rounds):
        for n in args.runs:
            order = runners[rnd % len(runners) :] + runners[: rnd % len(runners)]
            for runner in order:
                result = measure(runner, n, args.jobs, args.baseline)
                samples.setdefault((runner, n), []).append(result)
                extra = (f", first kernel ready {result['first_kernel']:.2f} s"
                         if "first_kernel" in result else "")  # fmt: skip
                print(f"round {rnd + 1} N={n} {runner}: {result['wall']:.2f} s{extra} "
                      f"(load {result['load']:.1f})", file=sys.stderr, flush=True)  # fmt: skip
    print(table(samples, args.runs, runners, args.jobs))


if __name__ == "__main__":
    main()
