"""The sweep report at scale: a synthetic runs root of 1,000 runs (no kernels), then the report.

    python benchmarks/bench_report.py                 # 1,000 runs x 3 flows, 5 rounds
    python benchmarks/bench_report.py --runs 10000 --rounds 3
    python benchmarks/bench_report.py --scale 1000,10000,100000   # the page alone, in memory
    python benchmarks/bench_report.py --itables 100000   # our table data against itables

Measured apart:

- the report page when every notebook's HTML is up to date (the usual re-run: one stat per
  notebook, nothing rendered), split into its steps;
- the page without looking at notebook HTML at all (``render_notebooks=False``);
- rendering notebooks with nbconvert, per notebook, on a sample (the first report of a sweep
  renders every notebook once; later reports only the new or changed ones).

``--scale`` measures the page alone (``report_data`` + ``render_html``: seconds, bytes, SVG
elements) at each size, from an index of 100 synthesized runs repeated in memory with distinct
names, labels and parameters, so that 100,000 runs need no 100,000 directories.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd

from ductaflow.index import IndexFile, load_index
from ductaflow.report import (
    TABLE_ROWS_MAX,
    load_details,
    refresh_notebooks,
    render_html,
    report_data,
    run_table,
    write_report,
)
from ductaflow.rundir import write_json, write_status
from ductaflow.spec import FlowResult, RunResult

FLOWS = ("01_data_prep", "02_analysis", "03_outputs")


def notebook(flow: str, i: int, failed: bool) -> nbformat.NotebookNode:
    """An executed notebook of the size the demo flows make: code, prints, a table, an error."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell(f"## Config\n\n| key | value |\n|---|---|\n| i | {i} |"),
        nbformat.v4.new_code_cell("import numpy as np\nimport pandas as pd\nseed = 1"),
        nbformat.v4.new_code_cell(
            "data = pd.DataFrame({'x': range(5)})\ndata.describe()",
            outputs=[
                nbformat.v4.new_output("stream", name="stdout", text=f"wrote data.csv: {i}\n"),
                nbformat.v4.new_output(
                    "execute_result",
                    data={
                        "text/plain": "x\n0 1",
                        "text/html": "<table><tr><td>1</td></tr>"
                        + "<tr><td>2</td></tr>" * 8
                        + "</table>",
                    },
                    execution_count=2,
                ),
            ],
        ),
    ]
    if failed:
        nb.cells.insert(2, nbformat.v4.new_markdown_cell('<span id="ductaflow-error"></span>'))
        nb.cells[-1].outputs.append(
            nbformat.v4.new_output("error", ename="ValueError", evalue="bad", traceback=["bad"])
        )
    return nb


def synthesize(root: Path, n: int) -> Path:
    """``n`` finished runs of a three-flow sweep: 5% failed, 1% timed out, like the engine's."""
    assert n % 100 == 0, "n must be a multiple of 100"
    started, finished = "2025-03-01T10:00:00.000+00:00", "2025-03-01T10:00:06.000+00:00"
    for i in range(n):
        config = {
            "alpha": round(0.001 * (i // 100 + 1), 3),
            "model": {"depth": i // 10 % 10, "kind": "ridge"},
            "seed": i % 10,
            "label": f"run {i}",
        }
        status = "failed" if i % 20 == 7 else "timeout" if i % 100 == 42 else "ok"
        name = f"alpha={config['alpha']}_model.depth={config['model']['depth']}_seed={i % 10}"
        run_dir = root / "bench" / f"{name}-{i:08x}"
        run_dir.mkdir(parents=True)
        write_json(run_dir / "CONFIG.json", config)
        flows = []
        for k, flow in enumerate(FLOWS):
            failing = status != "ok" and k == 1
            state = status if failing else ("not-run" if status != "ok" and k > 1 else "ok")
            flows.append(
                FlowResult(
                    flow,
                    f"/flows/{flow}.py",
                    "0" * 64,
                    state,
                    f"{flow}_executed.ipynb",
                    started,
                    finished,
                    1.0 + (i % 17) / 10,
                    "ValueError: bad" if failing else None,
                    "Traceback\nValueError: bad" if failing else None,
                    3 if failing else None,
                )
            )
            if state != "not-run":
                nbformat.write(notebook(flow, i, failing), run_dir / f"{flow}_executed.ipynb")
        if status == "ok" or i % 40 == 7:
            write_json(run_dir / "results.json", {"rmse": 0.3 + (i % 37) / 100, "n_train": 140})
        write_status(
            RunResult(
                run_dir,
                status,
                started,
                finished,
                3.0 + (i % 29) / 5,
                f"h{i}",
                tuple(flows),
                None if status == "ok" else "ValueError: bad",
                sweep="bench",
                name=run_dir.name,
            )
        )
    IndexFile(root).rebuild()
    return root


def fake_html(root: Path) -> int:
    """Mark every notebook as rendered (an HTML file newer than it), without nbconvert."""
    count = 0
    for nb in root.glob("*/*/*_executed.ipynb"):
        nb.with_suffix(".html").write_text("<html></html>")
        count += 1
    return count


def median_time(fn: Callable[[], Any], rounds: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(rounds):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def scaled(frame: Any, details: dict[str, Any], n: int) -> tuple[Any, dict[str, Any]]:
    """The index of ``frame``'s runs repeated to ``n`` rows, each run with its own name and dir."""
    reps = -(-n // len(frame))
    big = pd.concat([frame] * reps, ignore_index=True).iloc[:n].copy()
    i = pd.Series(range(n))
    big["run"] = big["run"].str.slice(0, -8) + i.map("{:08x}".format)
    parent = str(Path(frame["run_dir"].iloc[0]).parent)
    big["run_dir"] = parent + "/" + big["run"]
    big["param.label"] = "run " + i.astype(str)
    big["param.alpha"] = (0.001 * (i // 100 % 100 + 1)).round(3)
    big["param.seed"] = i % 10
    same = dict(zip(frame["run"], frame["run_dir"], strict=True))
    template = [details.get(same[r]) for r in frame["run"]]
    new_details = {
        d: template[k % len(frame)]
        for k, d in enumerate(big["run_dir"])
        if template[k % len(frame)] is not None
    }
    return big, new_details


def scale(sizes: list[int], rounds: int) -> None:
    """The page alone at each size: seconds for its data and its HTML, bytes, SVG elements."""
    print(
        "| runs | report_data | table + render_html | page | SVG elements |\n"
        "|---:|---:|---:|---:|---:|"
    )
    with tempfile.TemporaryDirectory(prefix="df-bench-report-") as tmp:
        root = synthesize(Path(tmp) / "runs", 100)
        fake_html(root)
        frame = load_index(root)
        details = load_details(frame["run_dir"])
        for n in sizes:
            big, big_details = scaled(frame, details, n)
            rows = n <= TABLE_ROWS_MAX  # as write_report does
            t_data, data = median_time(
                lambda big=big, d=big_details, r=rows: report_data(
                    big, details=d, base=root, rows=r
                ),
                rounds,
            )

            def page_of(
                data: Any = data, big: Any = big, d: Any = big_details, r: bool = rows
            ) -> str:
                table = None if r else run_table(big, data, d, root)
                return render_html(data, table)

            t_html, page = median_time(page_of, rounds)
            marks = len(re.findall(r"<(?:circle|rect|line|text)\b", page))
            print(
                f"| {n:,} | {t_data:.2f} s | {t_html:.2f} s | {len(page.encode()) / 1e6:.1f} MB "
                f"| {marks:,} |"
            )


def against_itables(n: int) -> None:
    """The run table at ``n`` runs: our columnar JSON against itables (DataTables, offline).

    itables gets the same columns, with the run, notebook and CONFIG.json links as HTML (the
    report's contract: every run reachable), and ``maxBytes=0`` (all rows, no downsampling).
    Its offline bundle (dt_bundle.js + .css, ~0.7 MB) is not counted.
    """
    import warnings

    import itables  # not a dependency: pip install itables to run this

    with tempfile.TemporaryDirectory(prefix="df-bench-report-") as tmp:
        root = synthesize(Path(tmp) / "runs", 100)
        frame = load_index(root)
        big, details = scaled(frame, load_details(frame["run_dir"]), n)
        data = report_data(big, details=details, base=root, rows=False)
        t0 = time.perf_counter()
        ours = run_table(big, data, details, root).to_json()
        t_ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        runs = big["run"].tolist()
        table = pd.DataFrame(
            {
                "status": big["status"],
                "run": [f'<a href="bench/{r}/">{r}</a>' for r in runs],
                **{c: big[f"param.{c}"] for c in data.param_columns},
                **{c: big[f"result.{c}"] for c in data.result_columns},
                "time": big["duration_s"],
                "notebooks": [
                    "".join(f'<a href="bench/{r}/{f}_executed.html">{f}</a>' for f in FLOWS)
                    for r in runs
                ],
                "config": [f'<a href="bench/{r}/CONFIG.json">CONFIG.json</a>' for r in runs],
                "error": big["error"].fillna(""),
            }
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = itables.to_html_datatable(table, connected=False, maxBytes=0, allow_html=True)
        t_theirs = time.perf_counter() - t0
    print(f"| run table at {n:,} runs | bytes | seconds |\n|---|---:|---:|")
    print(f"| ductaflow (columnar JSON) | {len(ours.encode()) / 1e6:.1f} MB | {t_ours:.2f} s |")
    mb = len(theirs.encode()) / 1e6
    print(f"| itables {itables.__version__} (offline) | {mb:.1f} MB | {t_theirs:.2f} s |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sample", type=int, default=30, help="notebooks to render with nbconvert")
    parser.add_argument("--scale", metavar="N,N,...", help="the page alone at these sizes")
    parser.add_argument("--itables", type=int, metavar="N", help="our table against itables")
    args = parser.parse_args()
    if args.itables:
        against_itables(args.itables)
        return
    if args.scale:
        scale([int(n) for n in args.scale.split(",")], args.rounds)
        return
    print(
        f"python {sys.version.split()[0]}; {args.runs:,} runs x {len(FLOWS)} flows; "
        f"medians of {args.rounds} rounds\n"
    )
    with tempfile.TemporaryDirectory(prefix="df-bench-report-") as tmp:
        root = Path(tmp) / "runs"
        t0 = time.perf_counter()
        synthesize(root, args.runs)
        notebooks = sorted(root.glob("*/*/*_executed.ipynb"))
        print(
            f"synthesized {args.runs:,} run directories, {len(notebooks):,} notebooks "
            f"in {time.perf_counter() - t0:.1f} s\n"
        )
        fake_html(root)

        out = root / "report.html"
        steps: dict[str, float] = {}
        frame = load_index(root)
        steps["load_index"], _ = median_time(lambda: load_index(root), args.rounds)
        steps["load_details (status.json x runs)"], details = median_time(
            lambda: load_details(frame["run_dir"]), args.rounds
        )
        steps["refresh_notebooks (all up to date)"], _ = median_time(
            lambda: refresh_notebooks(notebooks), args.rounds
        )
        steps["report_data"], data = median_time(
            lambda: report_data(frame, details=details, base=root), args.rounds
        )
        steps["render_html"], page = median_time(lambda: render_html(data), args.rounds)
        whole, _ = median_time(lambda: write_report(root), args.rounds)
        bare, _ = median_time(lambda: write_report(root, render_notebooks=False), args.rounds)

        print("| step | median |\n|---|---:|")
        for step, seconds in steps.items():
            print(f"| {step} | {seconds * 1e3:.0f} ms |")
        print(f"| **write_report, notebooks up to date** | **{whole:.2f} s** |")
        print(f"| write_report(render_notebooks=False) | {bare:.2f} s |")
        print(
            f"\nreport.html: {out.stat().st_size / 1e6:.1f} MB, {len(data.rows):,} rows, "
            f"{len(data.results)} result charts, {page.count('<circle')} dots"
        )

        sample = notebooks[: args.sample]
        for nb in sample:
            nb.with_suffix(".html").unlink()
        t0 = time.perf_counter()
        refresh_notebooks(sample[:1])
        first = time.perf_counter() - t0
        per = []
        for _ in range(args.rounds):
            for nb in sample:
                nb.touch()  # newer than its HTML: stale again
            t0 = time.perf_counter()
            refresh_notebooks(sample)  # one exporter for the batch, as write_report does
            per.append((time.perf_counter() - t0) / len(sample))
        each = statistics.median(per)
        size = statistics.median(nb.with_suffix(".html").stat().st_size for nb in sample)
        print(
            f"\nnbconvert: first notebook {first:.2f} s (loads nbconvert and its templates), "
            f"then {each * 1e3:.0f} ms per notebook (median of {len(per)} batches), "
            f"{size / 1e3:.0f} kB of HTML each"
        )
        print(
            f"first report of this sweep renders {len(notebooks):,} notebooks: "
            f"about {first + each * (len(notebooks) - 1):.0f} s on one core"
        )


if __name__ == "__main__":
    main()
