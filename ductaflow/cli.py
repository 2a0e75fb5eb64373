"""The ``ductaflow`` command: run, sweep, status, index, report, open, rerun.

Exit codes: 0 all ok; 1 a run failed, timed out, died or was interrupted; 2 bad input, reported
in one line before any kernel starts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .errors import DuctaflowError, InputError, StorageError

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_INPUT = 0, 1, 2


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of seconds above 0")
    return value


def _modules(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    bad = [name for name in names if not all(part.isidentifier() for part in name.split("."))]
    if bad:
        raise InputError(f"--preload {bad[0]!r}: give module names separated by commas")
    return names


def _execution_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=_positive, metavar="S", help="seconds one cell may run")
    parser.add_argument(
        "--run-timeout", type=_positive, metavar="S", help="seconds a whole run may take"
    )
    parser.add_argument(
        "--kernel", metavar="NAME", help="a registered kernelspec (default: this Python)"
    )
    parser.add_argument(
        "--strict", action="store_true",
        help="exit 2 before running when a flow overwrites a config key or a varied key is unread",
    )  # fmt: skip
    parser.add_argument(
        "--strict-warnings", action="store_true",
        help="a run whose flows raise warnings (Python warnings, logging at WARNING+) is failed",
    )  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ductaflow", description="Parallel parameter sweeps of notebook flows."
    )
    parser.add_argument("--version", action="version", version=f"ductaflow {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log what happens (-vv: debug)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run one flow with one config in one run directory")
    run.add_argument("flow", type=Path, help="a flow: .py (percent or light), .md, .ipynb")
    run.add_argument("--config", type=Path, help="a JSON config file")
    run.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="override a key (dotted keys reach nested dicts; the value is JSON, else a string)",
    )  # fmt: skip
    run.add_argument(
        "--run-dir", type=Path, help="where to run (default: runs/manual/<flow>-<config hash>)"
    )
    _execution_options(run)

    sweep = sub.add_parser("sweep", help="expand a sweep spec and execute its runs")
    sweep.add_argument("spec", type=Path, help="a sweep spec (.json) or a table of runs (.csv)")
    sweep.add_argument("-j", "--jobs", type=int, metavar="N", help="parallel runs (default: cores)")
    sweep.add_argument("--dry-run", action="store_true", help="plan only: print what would run")
    sweep.add_argument("--runs-root", type=Path, default=Path("runs"), help="default: runs")
    sweep.add_argument("--flow", action="append", type=Path, help="flow(s) for a CSV sweep")
    sweep.add_argument("--base", type=Path, help="base config for a CSV sweep")
    sweep.add_argument("--name", help="sweep name (default: the spec's name or file stem)")
    sweep.add_argument("--force", action="store_true", help="rerun every run, done ones too")
    sweep.add_argument(
        "--only", action="append", choices=("failed", "stale", "new"),
        help="run only these (repeatable); default: everything not done",
    )  # fmt: skip
    sweep.add_argument("--retries", type=int, default=0, metavar="N", help="retry failed runs")
    sweep.add_argument(
        "--backend",
        choices=("loky", "threading", "sequential", "dask", "dask-local", "slurm"),
        help="where runs execute (default: on this machine, threads for warm kernels, "
        "else loky, a process pool)",
    )  # fmt: skip
    sweep.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler (--backend dask)")
    sweep.add_argument("--slurm-partition", metavar="NAME", help="SLURM partition")
    sweep.add_argument("--slurm-time", type=int, metavar="MINUTES", help="SLURM time limit")
    sweep.add_argument("--slurm-mem", metavar="SIZE", help="SLURM memory per job, e.g. 4G")
    sweep.add_argument("--no-progress", action="store_true", help="no progress bar")
    sweep.add_argument(
        "--no-warm", action="store_true",
        help="start every kernel from scratch instead of forking it from a warm process",
    )  # fmt: skip
    sweep.add_argument(
        "--preload", metavar="MODULES", default="",
        help="modules the warm process imports for every kernel, e.g. pandas,numpy",
    )  # fmt: skip
    sweep.add_argument(
        "--report", action="store_true",
        help="keep <runs root>/<sweep>/report.html current while the sweep runs",
    )  # fmt: skip
    sweep.add_argument(
        "--no-report", action="store_true", help="do not write the HTML report at the end"
    )
    _execution_options(sweep)

    status = sub.add_parser("status", help="counts per sweep and status; failed runs")
    status.add_argument("runs_root", nargs="?", type=Path, default=Path("runs"))
    index = sub.add_parser("index", help="rebuild runs/index.csv from the run directories")
    index.add_argument("runs_root", nargs="?", type=Path, default=Path("runs"))
    report = sub.add_parser(
        "report", help="write an HTML report of the runs: charts, run table, notebook links"
    )
    report.add_argument("runs_root", nargs="?", type=Path, default=Path("runs"))
    report.add_argument("--sweep", metavar="NAME", help="report this sweep only")
    report.add_argument(
        "-o", "--output", type=Path, metavar="FILE",
        help="default: <runs root>/report.html, or <runs root>/<sweep>/report.html",
    )  # fmt: skip
    report.add_argument(
        "--no-notebooks", action="store_true",
        help="do not render notebooks to HTML (link what HTML there is, else the .ipynb)",
    )  # fmt: skip
    _debug_commands(sub)
    return parser


def _debug_commands(sub: Any) -> None:
    """``open`` and ``rerun``: a recorded run, stepped through or run again in place."""
    opener = sub.add_parser(
        "open", help="write a run's flow as a notebook (or script) with its config, to debug it"
    )
    opener.add_argument("run_dir", type=Path, help="a run directory (holds status.json)")
    opener.add_argument(
        "--flow", metavar="NAME", help="which flow (default: the one that failed, else the first)"
    )
    how = opener.add_mutually_exclusive_group()
    how.add_argument(
        "--script", action="store_true", help="write <flow>_debug.py, a plain script to debug"
    )
    how.add_argument(
        "--jupyter", action="store_true",
        help="then open it in Jupyter (JupyterLab, else Notebook; pip install ductaflow[jupyter])",
    )  # fmt: skip
    rerun = sub.add_parser(
        "rerun", help="run recorded runs again in place, from their CONFIG.json and flows"
    )
    rerun.add_argument(
        "run_dirs", nargs="*", type=Path, metavar="RUN_DIR", help="run directories to rerun"
    )
    rerun.add_argument(
        "--where", metavar="QUERY",
        help="runs of the index matching a pandas query, e.g. \"param.alpha > 0.5 and "
        "status == 'failed'\"",
    )  # fmt: skip
    rerun.add_argument(
        "--root", type=Path, default=Path("runs"), help="the runs root of --where (default: runs)"
    )
    rerun.add_argument("--only", choices=("failed",), help="only the runs that did not end ok")
    rerun.add_argument("-j", "--jobs", type=int, metavar="N", help="parallel runs (default: cores)")
    rerun.add_argument("--no-progress", action="store_true", help="no progress bar")
    rerun.add_argument("--timeout", type=_positive, metavar="S", help="seconds one cell may run")
    rerun.add_argument(
        "--run-timeout", type=_positive, metavar="S", help="seconds a whole run may take"
    )
    rerun.add_argument(
        "--kernel", metavar="NAME", help="a registered kernelspec (default: this Python)"
    )


def _cmd_open(args: argparse.Namespace) -> int:
    from .debug import debug_flow

    jupyter = _jupyter_command() if args.jupyter else None
    made = debug_flow(args.run_dir, args.flow, script=args.script)
    print(made.path)
    if jupyter is None:
        return EXIT_OK
    import subprocess

    # started in the run directory: Jupyter's kernel runs where the run did
    return subprocess.call([*jupyter, made.path.name], cwd=made.path.parent)


def _jupyter_command() -> list[str]:
    """``jupyter-lab``, else ``jupyter-notebook``, beside this Python or on PATH."""
    import shutil

    here = str(Path(sys.executable).parent)
    for name in ("jupyter-lab", "jupyter-notebook"):
        found = shutil.which(name, path=here) or shutil.which(name)
        if found:
            return [found]
    raise InputError(
        "--jupyter: neither JupyterLab nor Jupyter Notebook is installed; "
        "pip install 'ductaflow[jupyter]', or open the file in your own editor"
    )


def _cmd_rerun(args: argparse.Namespace) -> int:
    from .executor import SweepOptions
    from .rerun import rerun_runs, select_runs
    from .spec import RunOptions

    if bool(args.run_dirs) == bool(args.where):
        raise InputError("rerun: give run directories or --where QUERY (one of the two)")
    if args.jobs is not None and args.jobs < 1:
        raise InputError(f"-j {args.jobs}: give at least 1 parallel run")
    only_failed = args.only == "failed"
    if args.where:
        run_dirs = select_runs(args.root, args.where, only_failed=only_failed)
        if not run_dirs:
            which = "run that did not end ok" if only_failed else "run"
            print(f"{args.root}: no {which} matches --where {args.where!r}")
            return EXIT_OK
    else:
        run_dirs = args.run_dirs
    options = SweepOptions(
        n_jobs=args.jobs, progress=not args.no_progress,
        run=RunOptions(timeout=args.timeout, run_timeout=args.run_timeout, kernel=args.kernel),
    )  # fmt: skip
    done = rerun_runs(run_dirs, options, only_failed=only_failed)
    if not done.outcomes:
        print("nothing to rerun: every run given ended ok")
        return EXIT_OK
    for line in done.lines():
        print(line)
    for report in done.reports:
        if report.error:
            print(f"ductaflow: error: {report.error}", file=sys.stderr)
    if done.interrupted:
        raise KeyboardInterrupt
    return EXIT_OK if done.ok else EXIT_FAILED


def _cmd_run(args: argparse.Namespace) -> int:
    from .checks import check_runs
    from .config import config_hash, load_config, parse_set, set_dotted
    from .engine import RunInterrupted, execute_run
    from .kernel import check_kernel_name
    from .spec import FlowRef, RunOptions, RunSpec

    flow = FlowRef.from_path(args.flow)
    config: dict[str, Any] = load_config(args.config) if args.config else {}
    for key, value in parse_set(args.set):
        config = set_dotted(config, key, value)
    check_kernel_name(args.kernel)
    assert flow.facts is not None
    varied = [key for key, _ in parse_set(args.set)]
    told = check_runs([flow.facts], [config], varied, strict=args.strict, where="--set",
                      kernel=args.kernel)  # fmt: skip
    digest = config_hash(config)
    run_dir = args.run_dir or Path("runs", "manual", f"{flow.name}-{digest[:8]}")
    spec = RunSpec(run_dir.absolute(), config, (flow,), config_hash=digest)
    # One kernel: a warm process would only add its own start to it.
    from .environment import record_environment

    # a run of its own records its environment as a sweep does: in the runs root, or (a run
    # directory of the user's choosing) in the run directory
    env = record_environment(Path("runs") if args.run_dir is None else spec.run_dir, [flow.path])
    options = RunOptions(
        timeout=args.timeout, run_timeout=args.run_timeout, kernel=args.kernel, warm=False,
        strict_warnings=args.strict_warnings, env_hash=env and env.hash,
        git_commit=env and env.git_commit,
    )  # fmt: skip
    try:
        result = execute_run(spec, options)
    except RunInterrupted as exc:
        result = exc.result
    notebook = run_dir / flow.notebook_name
    line = f"{result.status}: {run_dir} ({result.duration_s or 0:.2f} s)"
    if not result.ok:
        cell = result.flows[0].failed_cell if result.flows else None
        where = f" (cell {cell})" if cell else ""
        line += f": {result.error}{where}"
    print(f"{line} -> {notebook}")
    for warning in result.warnings:
        if warning.runtime or warning.message not in told:  # checks were logged before the run
            print(f"warning: {warning}", file=sys.stderr)
    return EXIT_OK if result.ok else EXIT_FAILED


def _cmd_sweep(args: argparse.Namespace) -> int:
    early = _prestart_zygote(args)
    try:
        return _sweep(args)
    finally:
        if early is not None:  # unless the sweep forked its kernels from it: nothing left of it
            early[0].discard(early[1])


def _prestart_zygote(args: argparse.Namespace) -> tuple[Any, Any] | None:
    """Begin booting the zygote before the sweep's own imports, when its kernels will be
    forked in this process; ``execute_sweep`` finds it booting (``ZygoteRegistry.prestart``)."""
    in_process = args.backend in (None, "threading", "sequential") or (
        args.jobs == 1 and args.backend == "loky"
    )
    if args.no_warm or args.kernel or args.dry_run or not in_process:
        return None
    try:
        preload = _modules(args.preload) if args.preload else _spec_preload(args.spec)
    except InputError:
        return None  # the sweep says what is wrong
    if preload is None or not sys.platform.startswith("linux"):
        return None
    from .zygotes import default_registry

    registry = default_registry()
    return registry, registry.prestart(preload=tuple(dict.fromkeys(preload)))


def _spec_preload(spec: Path) -> tuple[str, ...] | None:
    """A JSON spec's ``preload`` list, read ahead of the sweep; None if it is not one."""
    if spec.suffix.lower() != ".json":
        return ()
    try:
        preload = json.loads(spec.read_text(encoding="utf-8")).get("preload", [])
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(preload, list) or not all(isinstance(m, str) for m in preload):
        return None
    return _modules(",".join(preload))


def _sweep(args: argparse.Namespace) -> int:
    from .executor import SweepOptions, execute_sweep
    from .spec import RunOptions
    from .sweep import Sweep

    overrides: dict[str, Any] = {}
    if args.name:
        overrides["name"] = args.name
    if args.strict:
        overrides["strict"] = True
    if args.spec.suffix.lower() == ".csv":
        overrides.update(flows=args.flow, base=args.base)
    elif args.flow or args.base:
        raise InputError(
            f"{args.spec}: --flow and --base go with a CSV sweep; a JSON spec has them"
        )
    if args.jobs is not None and args.jobs < 1:
        raise InputError(f"-j {args.jobs}: give at least 1 parallel run")
    if args.retries < 0:
        raise InputError(f"--retries {args.retries}: give 0 or more")
    sweep = Sweep.load(args.spec, **overrides)
    options = RunOptions(
        timeout=args.timeout, run_timeout=args.run_timeout, kernel=args.kernel,
        retries=args.retries, warm=not args.no_warm, preload=_modules(args.preload),
        strict_warnings=args.strict_warnings,
    )  # fmt: skip
    backend_options = {
        key: value
        for key, value in (
            ("scheduler", args.scheduler),
            ("slurm_partition", args.slurm_partition),
            ("slurm_time", args.slurm_time),
            ("slurm_mem", args.slurm_mem),
        )
        if value is not None
    }
    report = execute_sweep(
        sweep,
        SweepOptions(
            runs_root=args.runs_root, n_jobs=args.jobs, run=options, force=args.force,
            only=args.only, backend=args.backend, backend_options=backend_options,
            progress=not args.no_progress, dry_run=args.dry_run, report=not args.no_report,
            live_report=args.report,
        ),
    )  # fmt: skip
    if args.dry_run:
        if sweep.optimize is not None:
            from .trials import describe_optimize

            print(describe_optimize(sweep, args.runs_root))
        else:
            print(report.plan.describe(sweep.name))
        return EXIT_OK
    if report.report_path is not None:
        print(f"report -> {report.report_path}")
    print(report.summary())
    if report.error:  # the disk refused (full, read-only): one line, after the summary
        print(f"ductaflow: error: {report.error}", file=sys.stderr)
    return EXIT_OK if report.ok else EXIT_FAILED


def _cmd_status(args: argparse.Namespace) -> int:
    import pandas as pd

    from .environment import ENVIRONMENT_DIR
    from .index import scan_rows

    rows = scan_rows(args.runs_root, base=True)  # what status.json says, as it says it now
    if not rows:
        print(f"{args.runs_root}: no runs yet")
        return EXIT_OK
    frame = pd.DataFrame(rows)
    table = pd.crosstab(frame["sweep"], frame["status"], margins=True, margins_name="total")
    warned = frame[(frame["status"] == "ok") & (pd.to_numeric(frame["warnings"]).fillna(0) > 0)]
    if len(warned):  # ok runs that raised warnings: counted in "ok", shown apart
        per_sweep = warned.groupby("sweep").size()
        table.insert(list(table.columns).index("ok") + 1, "(with warnings)",
                     per_sweep.reindex(table.index, fill_value=0))  # fmt: skip
        table.loc["total", "(with warnings)"] = len(warned)
    print(table.to_string())
    _print_best_trials(args.runs_root, sorted(set(frame["sweep"])))
    for sweep, envs in frame[frame["env_hash"] != ""].groupby("sweep")["env_hash"]:
        counts = envs.value_counts()
        if len(counts) > 1:
            listed = ", ".join(f"{h} ({n} runs)" for h, n in counts.items())
            print(f"\n{sweep}: its runs ran in {len(counts)} different environments: {listed}; "
                  f"see {args.runs_root / ENVIRONMENT_DIR}/<hash>.json")  # fmt: skip
    if len(warned):
        print(f"\n{len(warned)} ok with warnings:")
        for row in warned.head(20).itertuples():
            print(f"  {row.sweep}/{row.run}  {row.warnings} warning(s)")
        if len(warned) > 20:
            print(f"  ... and {len(warned) - 20} more (the index's warnings column)")
    bad = frame[~frame["status"].isin(["ok", "running"])]
    if len(bad):
        print(f"\n{len(bad)} not ok:")
        for row in bad.itertuples():
            print(f"  {row.sweep}/{row.run}  {row.status}  {row.error}")
    return EXIT_OK if bad.empty else EXIT_FAILED


def _print_best_trials(runs_root: Path, sweeps: list[str]) -> None:
    """For each optimize sweep (a study file in its directory): its best trial, and how many."""
    from .study import describe_best, load_study, stored_study

    for sweep in sweeps:
        if stored_study(runs_root / sweep) is None:
            continue
        try:
            study = load_study(runs_root, sweep)
        except InputError as exc:  # no optuna here, or not this sweep's study
            print(f"\n{sweep}: {exc}")
            continue
        states = Counter(t.state.name.lower() for t in study.get_trials(deepcopy=False))
        counts = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
        print(f"\n{sweep}: {sum(states.values())} trials ({counts}); "
              f"{describe_best(study) or 'no complete trial yet'}")  # fmt: skip


def _cmd_index(args: argparse.Namespace) -> int:
    from .index import IndexFile

    rows = IndexFile(args.runs_root).rebuild()
    print(f"{len(rows)} runs -> {args.runs_root / 'index.csv'}")
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    path = write_report(
        args.runs_root, sweep=args.sweep, output=args.output,
        render_notebooks=not args.no_notebooks,
    )  # fmt: skip
    print(f"report -> {path}")
    return EXIT_OK


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"stopped by {signal.Signals(signum).name}")


@contextlib.contextmanager
def _console_log(verbosity: int) -> Iterator[None]:
    """ductaflow's own log lines on stderr while a command runs: warnings, -v info, -vv debug.

    Only the ``ductaflow`` logger is configured, never the root one, so other libraries' records
    keep their own handling; it is put back as it was afterwards (``main`` may run in-process).
    """
    logger = logging.getLogger("ductaflow")
    handler = logging.StreamHandler(sys.stderr)
    detailed = "ductaflow: %(levelname)s %(name)s: %(message)s"
    handler.setFormatter(logging.Formatter(detailed if verbosity > 1 else "ductaflow: %(message)s"))
    level = logging.DEBUG if verbosity > 1 else logging.INFO if verbosity else logging.WARNING
    before = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False  # a root handler (a notebook's, say) would print each line twice
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(before[0])
        logger.propagate = before[1]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``ductaflow``; returns the exit code."""
    args = _parser().parse_args(argv)
    with _console_log(args.verbose):
        return _dispatch(args)


def _dispatch(args: argparse.Namespace) -> int:
    commands = {
        "run": _cmd_run,
        "sweep": _cmd_sweep,
        "status": _cmd_status,
        "index": _cmd_index,
        "report": _cmd_report,
        "open": _cmd_open,
        "rerun": _cmd_rerun,
    }
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _raise_interrupt)  # a killed conductor records its runs
    try:
        return commands[args.command](args)
    except InputError as exc:
        print(f"ductaflow: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except StorageError as exc:  # the disk refused (read-only, full, permission)
        print(f"ductaflow: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except DuctaflowError as exc:
        print(f"ductaflow: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("ductaflow: interrupted", file=sys.stderr)
        return EXIT_FAILED
    finally:
        signal.signal(signal.SIGTERM, previous)
