"""What an ``optimize`` sweep's study costs per trial, and what it finds.

    python benchmarks/bench_study.py             # 100 trials per kind, 5 seeds
    python benchmarks/bench_study.py --quick     # 40 trials, 3 seeds

1. The study's own cost per trial, the conductor's side of ``ductaflow.trials``: ask (TPE, two
   floats), remember the run's name, tell the value read from the run's ``results.json``, write
   the run's ``labels.json``; with the study in SQLite (``study.db``) and in Optuna's journal
   (``study.log``). Interleaved trial by trial with Optuna alone (ask + tell on its default
   storage of each kind) and with a plain sweep's per-run bookkeeping (``bench_sweep``: claim,
   CONFIG.json, status.json twice, index row appended), which every run pays in both kinds.
2. Search quality, no kernels (the function is evaluated where the flow would record it): the
   best value after 20, 40 and 80 trials for ``tpe`` and ``random`` (``optimize``) and the first
   20, 40, 80 points of a Sobol ``sample``, on two test functions, medians over the seeds.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from ductaflow.index import IndexFile
from ductaflow.rundir import LABELS_FILE, write_json
from ductaflow.space import parse_sample
from ductaflow.study import Study, parse_optimize
from ductaflow.sweep import Sweep

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sweep import bookkeeping

FLOW = Path(__file__).resolve().parent.parent / "flow" / "02_analysis.py"

FUNCTIONS = {
    # (x - 2)^2 + (y + 1)^2, the README's and the tests' flow: minimum 0 at (2, -1)
    "quadratic": (
        lambda x, y: (x - 2) ** 2 + (y + 1) ** 2,
        {"x": {"uniform": [-3, 5]}, "y": {"uniform": [-5, 3]}},
    ),
    # Branin: three minima of 0.397887
    "branin": (
        lambda x, y: (
            (y - 5.1 / (4 * math.pi**2) * x**2 + 5 / math.pi * x - 6) ** 2
            + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x)
            + 10
        ),
        {"x": {"uniform": [-5, 10]}, "y": {"uniform": [0, 15]}},
    ),
}
BUDGETS = (20, 40, 80)


def block(space: dict, sampler: str, seed: int, trials: int, storage: str = "sqlite"):
    return parse_optimize(
        {"result": "loss", "trials": trials, "sampler": sampler, "seed": seed, "space": space,
         "storage": storage}, "bench",
    )  # fmt: skip


def ductaflow_trials(storage: str, tmp: Path) -> Iterator[float]:
    """Seconds of each trial: ask + name the run + tell (its value read from results.json) +
    labels.json, as ``ductaflow.trials`` does; the flow's own work (here: writing results.json)
    is not counted."""
    fn, space = FUNCTIONS["quadratic"]
    study = Study(block(space, "tpe", 0, 10**6, storage), tmp / f"ductaflow-{storage}", "bench")
    run_dir = tmp / f"ductaflow-{storage}" / "run"
    run_dir.mkdir()
    while True:
        t0 = time.perf_counter()
        trial = study.ask()
        study.name_run(trial, f"trial={trial.number:04d}-00000000")
        t1 = time.perf_counter()
        (run_dir / "results.json").write_text(json.dumps({"loss": fn(**trial.params)}))
        t2 = time.perf_counter()
        study.tell(trial.number, "ok", run_dir)
        write_json(run_dir / LABELS_FILE, {"trial": trial.number, "trial_state": "complete"})
        yield (t1 - t0) + (time.perf_counter() - t2)


def optuna_trials(storage: str, tmp: Path) -> Iterator[float]:
    """Seconds of each trial of Optuna's own ask + tell, on its default storage of that kind (a
    plain ``sqlite:///`` URL; a journal file), as Optuna's documentation shows them."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    fn, space = FUNCTIONS["quadratic"]
    path = tmp / f"optuna-{storage}"
    path.mkdir()
    journal = optuna.storages.journal
    url = (f"sqlite:///{path / 'study.db'}" if storage == "sqlite" else
           journal.JournalStorage(journal.JournalFileBackend(str(path / "study.log"))))  # fmt: skip
    dists = {k: optuna.distributions.FloatDistribution(*v["uniform"]) for k, v in space.items()}
    study = optuna.create_study(storage=url, sampler=optuna.samplers.TPESampler(seed=0))
    while True:
        t0 = time.perf_counter()
        trial = study.ask(dists)
        study.tell(trial, fn(**trial.params))
        yield time.perf_counter() - t0


def plain_runs(tmp: Path) -> Iterator[float]:
    """Seconds of a plain sweep's bookkeeping of each run (``bench_sweep.bookkeeping``)."""
    spec = {"name": "plain", "flows": [str(FLOW)], "grid": {"x": list(range(10_000))}}
    specs = Sweep.from_dict(spec).expand(tmp / "plain", inspect=False)
    index = IndexFile(tmp / "plain")
    for s in specs:
        t0 = time.perf_counter()
        bookkeeping(s, index, False, {})
        yield time.perf_counter() - t0


def best_after(name: str, method: str, seed: int) -> list[float]:
    """The best value after each budget in ``BUDGETS``, trials in order."""
    fn, space = FUNCTIONS[name]
    n = max(BUDGETS)
    if method == "sobol":
        points = parse_sample({"n": n, "method": "sobol", "seed": seed, "space": space},
                              "bench").points()  # fmt: skip
        values = [fn(**p) for p in points]
    else:
        with tempfile.TemporaryDirectory() as tmp:
            study = Study(block(space, method, seed, n, "journal"), Path(tmp), "q")
            values = []
            for _ in range(n):
                trial = study.ask()
                value = fn(**trial.params)
                study.study.tell(trial.number, value)
                values.append(value)
    return [min(values[:b]) for b in BUDGETS]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="40 trials, 3 seeds")
    args = parser.parse_args()
    trials, seeds = (40, 3) if args.quick else (100, 5)

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        kinds: dict[str, Iterator[float]] = {"plain sweep: one run's bookkeeping": plain_runs(tmp)}
        for storage in ("sqlite", "journal"):
            kinds[f"Optuna alone, {storage}: ask + tell"] = optuna_trials(storage, tmp)
            kinds[f"ductaflow study, {storage}: ask + tell + run name + labels"] = ductaflow_trials(
                storage, tmp
            )
        times: dict[str, list[float]] = {k: [] for k in kinds}
        for _ in range(trials):  # interleaved: the machine's load falls on all alike
            for kind, trial in kinds.items():
                times[kind].append(next(trial))
    base = statistics.median(times["plain sweep: one run's bookkeeping"])
    print(f"## Cost per trial (TPE, two floats, trials 1-{trials}, interleaved)\n")
    print("| what | median | p90 | × a plain run's bookkeeping |")
    print("|---|---:|---:|---:|")
    for kind, values in times.items():
        med, p90 = statistics.median(values), statistics.quantiles(values, n=10)[-1]
        print(f"| {kind} | {med * 1e3:.1f} ms | {p90 * 1e3:.1f} ms | {med / base:.1f} |")

    print(f"\n## Best value found (median over {seeds} seeds; lower is better)\n")
    print("| function | method | " + " | ".join(f"{b} trials" for b in BUDGETS) + " |")
    print("|---|---|" + "---:|" * len(BUDGETS))
    for name in FUNCTIONS:
        for method in ("tpe", "random", "sobol"):
            runs = [best_after(name, method, seed) for seed in range(seeds)]
            meds = [statistics.median(r[i] for r in runs) for i in range(len(BUDGETS))]
            label = "sobol (sample)" if method == "sobol" else f"{method} (optimize)"
            print(f"| {name} | {label} | " + " | ".join(f"{m:.4g}" for m in meds) + " |")


if __name__ == "__main__":
    main()
