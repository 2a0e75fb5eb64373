"""Both ends of scale, part one: a 100,000-run sweep's bookkeeping, without kernels.

    python benchmarks/bench_scale.py                    # 100,000 runs, 3 rounds
    python benchmarks/bench_scale.py --runs 10000 --rounds 3
    python benchmarks/bench_scale.py --real 2000 -j 2   # also a real sweep of a trivial flow

A synthetic runs root: one sweep of a three-axis grid, every run finished on disk the way the
engine leaves it (``CONFIG.json``, ``status.json``, ``results.json``, an executed notebook per
flow; 5% failed, 1% timed out) and ``index.csv``. Measured on it, each step in a fresh process
(so no step is warmed by another), wall and CPU seconds, medians over rounds:

- expand the grid (``Sweep.expand``), plan it with half the runs on disk (``plan_runs``);
- ``load_index`` (the index checked against the run directories), ``ductaflow status``;
- ``write_report`` (``render_notebooks=False``: nbconvert's cost is per notebook and apart).

``--against DIR``: each step also with the code of another checkout (``PYTHONPATH=DIR``), the
two in turn in each round, and the ratio of their medians: before/after side by side.

``--browser``: the report opened in headless Chromium (``/usr/bin/chromium``): the time from
the page's load start to its load event, by which the table's first page is in the DOM (its
script runs as the page is parsed), and the Chromium process's whole wall (start included).

``--real N``: ``ductaflow sweep`` of a trivial flow, N runs, warm kernels, as a user runs it
(CLI, no report), with the share of its wall that is ductaflow's own bookkeeping: the wall
minus the runs' own time (each run's ``duration_s``) divided by the workers.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FLOW = HERE.parent / "flow" / "01_data_prep.py"
FLOWS = ("01_data_prep", "02_analysis")
STARTED, FINISHED = "2025-03-01T10:00:00.000+00:00", "2025-03-01T10:00:06.000+00:00"


def grid_for(n: int) -> dict[str, list[float | int]]:
    """A three-axis grid of ``n`` points (n a multiple of 100)."""
    assert n % 100 == 0, "n must be a multiple of 100"
    return {
        "alpha": [round(0.001 * i, 3) for i in range(n // 100)],
        "model.depth": list(range(10)),
        "seed": list(range(10)),
    }


def synthesize(root: Path, n: int) -> None:
    """``n`` finished runs of the grid's sweep, as the engine records them, and the index."""
    from ductaflow.index import IndexFile, build_row
    from ductaflow.rundir import write_json, write_status
    from ductaflow.spec import FlowResult, RunResult
    from ductaflow.sweep import Sweep

    specs = Sweep(name="big", flows=(FLOW,), grid=grid_for(n)).expand(root)
    rows = []
    for i, spec in enumerate(specs):
        status = "failed" if i % 20 == 7 else "timeout" if i % 100 == 42 else "ok"
        spec.run_dir.mkdir(parents=True)
        write_json(spec.run_dir / "CONFIG.json", dict(spec.config))
        flows = []
        for k, flow in enumerate(FLOWS):
            failing = status != "ok" and k == 1
            state = status if failing else "ok"
            flows.append(FlowResult(
                flow, f"/flows/{flow}.py", "0" * 64, state, f"{flow}_executed.ipynb", STARTED,
                FINISHED, 1.0 + (i % 17) / 10, "ValueError: bad" if failing else None,
                "Traceback\nValueError: bad" if failing else None, 3 if failing else None,
            ))  # fmt: skip
            (spec.run_dir / f"{flow}_executed.ipynb").write_text("{}")
        if status == "ok":
            write_json(spec.run_dir / "results.json", {"rmse": 0.3 + (i % 37) / 100})
        result = RunResult(
            spec.run_dir, status, STARTED, FINISHED, 3.0 + (i % 29) / 5, spec.config_hash,
            tuple(flows), None if status == "ok" else "ValueError: bad", sweep="big",
            name=spec.name,
        )  # fmt: skip
        write_status(result)
        rows.append(build_row(spec.run_dir, result.to_json(), spec.config))
    IndexFile(root)._write(IndexFile(root)._normal(r) for r in rows)


STEPS = {
    "expand": """
from ductaflow.sweep import Sweep
sweep = Sweep(name="half", flows=(FLOW,), grid=grid_for(N))
t0, c0 = time.perf_counter(), time.process_time()
specs = sweep.expand(HALF)
""",
    "plan (half on disk)": """
from ductaflow.plan import plan_runs
from ductaflow.sweep import Sweep
specs = Sweep(name="half", flows=(FLOW,), grid=grid_for(N)).expand(HALF)
t0, c0 = time.perf_counter(), time.process_time()
plan = plan_runs(specs)
assert len(plan.to_run) == N // 2, len(plan.to_run)
""",
    "load_index": """
t0, c0 = time.perf_counter(), time.process_time()
from ductaflow.index import load_index
frame = load_index(ROOT)
assert len(frame) == N, len(frame)
""",
    "ductaflow status": """
from ductaflow.cli import main
import contextlib, io
t0, c0 = time.perf_counter(), time.process_time()
with contextlib.redirect_stdout(io.StringIO()):
    main(["status", str(ROOT)])
""",
    "report write": """
t0, c0 = time.perf_counter(), time.process_time()
from ductaflow.report import write_report
out = write_report(ROOT, sweep="big", render_notebooks=False)
print("SIZE", out.stat().st_size)
""",
}


def step(name: str, root: Path, n: int, code: Path) -> tuple[float, float, int | None]:
    """One step in a fresh interpreter on the ductaflow in ``code``: (wall s, CPU s, bytes)."""
    program = (  # the code first: ``python -c`` puts the working directory before PYTHONPATH
        f"import sys, time\nfrom pathlib import Path\nsys.path[:0] = [{str(code)!r}]\n"
        f"sys.path.insert(1, {str(HERE)!r})\nfrom bench_scale import FLOW, grid_for\n"
        "import ductaflow\nassert ductaflow.__file__.startswith(sys.path[0]), ductaflow.__file__\n"
        f"N, ROOT = {n}, Path({str(root)!r})\nHALF = ROOT.parent / 'half-runs'\n"
        + STEPS[name]
        + "\nprint('TIME', time.perf_counter() - t0, time.process_time() - c0)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(code)}
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, env=env)
    if out.returncode:
        sys.exit(f"{name} ({code}): failed\n{out.stderr}")
    wall = cpu = 0.0
    size = None
    for line in out.stdout.splitlines():
        if line.startswith("TIME"):
            wall, cpu = map(float, line.split()[1:])
        elif line.startswith("SIZE"):
            size = int(line.split()[1])
    return wall, cpu, size


CHROMIUM = Path("/usr/bin/chromium")
# Loads the report in a frame and writes, when it has loaded, how long that took and how many
# table rows it shows, into its own DOM for --dump-dom.
PROBE = """<!DOCTYPE html><html><body><iframe id="f" style="width:1400px;height:1600px"></iframe>
<pre id="out">not loaded</pre><script>
var frame = document.getElementById("f"), t0 = performance.now();
frame.addEventListener("load", function () {
  var d = frame.contentDocument, ms = performance.now() - t0;
  var rows = d.querySelectorAll("#runs-table tbody tr, table.runs tbody tr").length;
  document.getElementById("out").textContent = JSON.stringify({ms: ms, rows: rows});
});
frame.src = "report.html";
</script></body></html>"""


def open_in_browser(page: Path) -> tuple[float, float, int]:
    """The report in headless Chromium: (ms to its load event, the process's wall s, rows)."""
    probe = page.parent / "probe.html"
    probe.write_text(PROBE, encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="df-chromium-") as profile:
        t0 = time.perf_counter()
        out = subprocess.run(
            [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--allow-file-access-from-files", "--dump-dom",
             probe.as_uri()],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        wall = time.perf_counter() - t0
    probe.unlink()
    found = re.search(r'<pre id="out">(\{.*?\})</pre>', out.stdout.replace("&quot;", '"'))
    if not found:
        sys.exit(f"chromium: the probe did not report\n{out.stdout[-500:]}{out.stderr[-500:]}")
    got = json.loads(found.group(1))
    return got["ms"], wall, got["rows"]


def make_half(root: Path, n: int) -> None:
    """Half of a second sweep of the grid finished on disk (every second run), in a root of
    its own."""
    from ductaflow.rundir import write_status
    from ductaflow.spec import FlowResult, RunResult
    from ductaflow.sweep import Sweep

    specs = Sweep(name="half", flows=(FLOW,), grid=grid_for(n)).expand(root)
    for spec in specs[::2]:
        spec.run_dir.mkdir(parents=True)
        flows = tuple(
            FlowResult(f.name, str(f.path), f.sha256, "ok", f.notebook_name) for f in spec.flows
        )
        write_status(RunResult(spec.run_dir, "ok", STARTED, FINISHED, 0.1, spec.config_hash,
                               flows, sweep="half", name=spec.name))  # fmt: skip


def real_sweep(n: int, jobs: int, base: Path) -> dict[str, float]:
    """``ductaflow sweep`` of ``n`` trivial runs, warm kernels; wall and bookkeeping share."""
    flow = base / "trivial.py"
    flow.write_text("# %%\nx = config.get('x', 0)\n# %%\ny = x * 2\n")
    spec = base / "spec.json"
    spec.write_text(json.dumps({"name": "real", "flows": [str(flow)],
                                "grid": {"x": list(range(n))}}))  # fmt: skip
    root = base / "real-runs"
    cmd = [sys.executable, "-m", "ductaflow", "sweep", str(spec), "--runs-root", str(root),
           "-j", str(jobs), "--no-progress", "--no-report"]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    wall = time.perf_counter() - t0
    runs = [json.loads(p.read_text()) for p in (root / "real").glob("*/status.json")]
    assert len(runs) == n and all(r["status"] == "ok" for r in runs)
    run_s = sum(r["duration_s"] for r in runs)
    # the runs' own time on `jobs` workers; the rest is start, plan, index, settle, report
    own = wall - run_s / jobs
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ductaflow", "status", str(root)], check=True,
                   capture_output=True)  # fmt: skip
    status_s = time.perf_counter() - t0
    return {"wall": wall, "run_s": run_s, "own": own, "share": own / wall, "status": status_s}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--real", type=int, default=0, help="also a real sweep of N runs")
    parser.add_argument("-j", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="build (or reuse) the synthetic root here")
    parser.add_argument("--against", type=Path, help="a checkout of the code before")
    parser.add_argument("--browser", action="store_true", help="open the report in Chromium")
    parser.add_argument("--steps", help="only these steps (comma-separated names, as printed)")
    args = parser.parse_args()
    if args.steps:
        for name in set(STEPS) - set(args.steps.split(",")):
            del STEPS[name]
    n = args.runs
    codes = {"after": HERE.parent}
    if args.against:
        codes = {"before": args.against.absolute(), **codes}
    load = os.getloadavg()[0]
    print(f"python {sys.version.split()[0]}, {n:,} runs, rounds={args.rounds}, load {load:.1f}")
    with tempfile.TemporaryDirectory(prefix="df-bench-scale-") as tmp:
        root = args.keep or Path(tmp) / "runs"
        if not (root / "index.csv").exists():
            t0 = time.perf_counter()
            synthesize(root, n)
            make_half(root.parent / "half-runs", n)
            print(f"synthesized in {time.perf_counter() - t0:.0f} s")
        times = {(s, c): [] for s in STEPS for c in codes}  # type: ignore[var-annotated]
        opened: list[tuple[float, float, int]] = []
        loads = []
        for _ in range(args.rounds):
            for name in STEPS:  # interleaved: each round runs every step once with each code
                for code, path in codes.items():
                    times[name, code].append(step(name, root, n, path))
            if args.browser:
                opened.append(open_in_browser(root / "big" / "report.html"))
            loads.append(os.getloadavg()[0])
        print(f"load average over the rounds: {min(loads):.1f}-{max(loads):.1f}")
        print_table(n, times, codes)
        if opened:
            ms = statistics.median(o[0] for o in opened)
            wall = statistics.median(o[1] for o in opened)
            print(f"\n| opened in headless Chromium, {n:,} runs | value |\n|---|---:|")
            print(f"| page load start to load event (table drawn) | {ms / 1000:.2f} s |")
            print(f"| Chromium process, start to DOM dump | {wall:.2f} s |")
            print(f"| table rows on the first page | {opened[0][2]} |")
        if args.real:
            got = real_sweep(args.real, args.j, Path(tmp))
            print(f"\n| real sweep, {args.real:,} trivial runs, -j {args.j}, warm | value |")
            print("|---|---:|")
            print(f"| wall | {got['wall']:.1f} s |")
            print(f"| runs' own time / workers | {got['run_s'] / args.j:.1f} s |")
            print(f"| ductaflow's own (wall minus that) | {got['own']:.1f} s |")
            print(f"| share of wall in ductaflow's bookkeeping | {got['share']:.1%} |")
            print(f"| `ductaflow status` at {args.real:,} runs | {got['status']:.2f} s |")


def print_table(n: int, times: dict, codes: dict[str, Path]) -> None:
    """Medians of wall and CPU seconds per step and code, and before/after when both ran."""

    def med(name: str, code: str, k: int) -> float:
        return statistics.median(t[k] for t in times[name, code])

    both = "before" in codes
    head = "| before wall / CPU s | after wall / CPU s | before / after (wall) |" if both else (
        "| wall s | CPU s |")  # fmt: skip
    print(f"\n| {n:,} runs {head} report size |")
    print("|---" + "|---:" * (head.count("|") - 1) + "|---:|")
    for name in STEPS:
        sizes = [t[2] for t in times[name, "after"] if t[2] is not None]
        size = f"{statistics.median(sizes) / 1e6:.1f} MB" if sizes else ""
        after = f"{med(name, 'after', 0):.2f} / {med(name, 'after', 1):.2f}"
        if both:
            before = f"{med(name, 'before', 0):.2f} / {med(name, 'before', 1):.2f}"
            ratio = med(name, "before", 0) / med(name, "after", 0)
            print(f"| {name} | {before} | {after} | {ratio:.1f}x | {size} |")
        else:
            print(
                f"| {name} | {med(name, 'after', 0):.2f} | {med(name, 'after', 1):.2f} | {size} |"
            )


if __name__ == "__main__":
    main()
