"""The flows' source checks (``ductaflow.checks``): their cost per flow per sweep, no kernels.

    python benchmarks/bench_checks.py                    # the demo flows + a 200-line flow
    python benchmarks/bench_checks.py --runs 10000 --rounds 20

Measured apart, each the median of ``--rounds``:

- ``read``: reading a flow and parsing it with Jupytext (the format detected), which the old
  percent-only reader did too;
- ``ast``: what the checks add: every code cell parsed with ``ast`` and walked (names read,
  ``config[...]`` paths, the assignments after the injected cell);
- ``check``: ``check_runs`` over the sweep's configs (both warnings), once per sweep.

The budget is 5 ms per flow per sweep for ``ast`` + ``check`` (issue 11). Jupytext's first parse in
a process also imports its readers (tens of ms, once); it is excluded by a warm-up.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ductaflow.checks import check_runs, inspect_notebook, read_notebook

REPO = Path(__file__).resolve().parent.parent


def _big_flow(directory: Path, cells: int = 20, lines: int = 10) -> Path:
    """A percent flow of ``cells`` cells of ``lines`` lines each, with functions, loops, magics."""
    parts = ['# %% tags=["parameters"]\nalpha = 0.1\nseed = 0\n']
    for c in range(cells):
        body = [f"%time x{c} = {c}", f"def f{c}(a, b=alpha):", "    return a + b * seed"]
        body += [f"v{c}_{i} = f{c}(config.get('n_{i}', {i}))" for i in range(lines - 3)]
        parts.append("# %%\n" + "\n".join(body) + "\n")
    path = directory / "big.py"
    path.write_text("\n".join(parts))
    return path


def _median_ms(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.process_time()  # CPU time: the machine may be shared
        fn()
        times.append(time.process_time() - t0)
    return 1000 * statistics.median(times)


def _measure(
    path: Path, configs: list[dict[str, Any]], varied: list[str], rounds: int
) -> tuple[float, float, float]:
    nb, fmt = read_notebook(path)
    facts = inspect_notebook(nb, str(path), fmt)
    return (
        _median_ms(lambda: read_notebook(path), rounds),
        _median_ms(lambda: inspect_notebook(nb, str(path), fmt), rounds),
        _median_ms(lambda: check_runs([facts], configs, varied), rounds),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000, help="configs in the sweep")
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        flows = [*sorted((REPO / "flow").glob("0*")), _big_flow(Path(tmp))]
        read_notebook(flows[0])  # warm-up: Jupytext imports its readers on first use
        configs = [
            {"alpha": i / args.runs, "seed": i % 7, "label": "x", "model": {"depth": i % 5}}
            for i in range(args.runs)
        ]
        varied = ["alpha", "seed", "model.depth"]
        print(f"{'flow':<22}{'lines':>6}{'read ms':>9}{'ast ms':>8}{'check ms':>10}{'total':>8}")
        worst = 0.0
        for path in flows:
            read, ast_ms, check = _measure(path, configs, varied, args.rounds)
            lines = path.read_text().count("\n")
            worst = max(worst, ast_ms + check)
            print(f"{path.name:<22}{lines:>6}{read:>9.2f}{ast_ms:>8.2f}{check:>10.2f}"
                  f"{read + ast_ms + check:>8.2f}")  # fmt: skip
        print(f"\nworst ast + check per flow, {args.runs} runs: {worst:.2f} ms (budget 5 ms)")


if __name__ == "__main__":
    import logging

    logging.disable(logging.WARNING)  # check_runs logs its warnings; not what is measured
    main()
