"""Run a sweep: plan what to (re)run, hand the runs to a backend, index them as they finish.

``execute_sweep(sweep, SweepOptions(...))`` is the conductor: ``plan`` decides what runs,
``backends`` where (threads for warm kernels, a joblib pool, Dask, SLURM), ``task`` what each
worker does with one run, ``lifecycle`` what a lost run becomes. Here: the one loop over the
outcomes, its one retry policy, the progress bar and the live report.

Nothing a run does can stop the others: the task catches everything and returns an ``Outcome``.
When a worker process itself dies, its pool siblings' runs go again, one at a time, and a run
caught twice is recorded ``died``. Ctrl-C (or SIGTERM) stops the runs in flight, records them
``interrupted`` and ends the sweep (the next ``ductaflow sweep`` resumes). Runs a killed
conductor left ``running`` on disk are recorded ``interrupted`` by the next sweep.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import logging
import math
import operator
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, InputError, StorageError
from .index import IndexFile, build_row, load_index
from .lifecycle import settle, wait_for_run
from .plan import Plan, plan_runs, recover_abandoned
from .process import now, sweep_scratch
from .rundir import STATUS_FILE
from .spec import (
    BUSY,
    DIED,
    FAILED,
    INTERRUPTED,
    OK,
    RAN,
    SKIPPED,
    TIMEOUT,
    Outcome,
    RunOptions,
    RunSpec,
    valid_preload,
)
from .sweep import Sweep

if TYPE_CHECKING:
    from .backends import Backend, Task
    from .trials import TrialFeed

__all__ = ["GivenRuns", "SweepOptions", "SweepReport", "execute_runs", "execute_sweep", "run_sweep"]

log = logging.getLogger("ductaflow")

#: How many times a run is caught in a dead worker's pool before it is recorded ``died``.
DEAD_WORKER_STRIKES = 2
#: The live report (``--report``) spends at most this share of a sweep's time rewriting the page,
LIVE_SHARE = 0.02
#: and rewrites it at most once in this many seconds.
LIVE_MIN_GAP_S = 2.0


@dataclass(frozen=True)
class SweepOptions:
    """How a sweep executes (``ductaflow sweep``'s options)."""

    #: where run directories and ``index.csv`` go
    runs_root: str | Path = "runs"
    #: parallel runs (None: one per core)
    n_jobs: int | None = None
    #: how each run executes (timeouts, kernel, retries, warm kernels)
    run: RunOptions = field(default_factory=RunOptions)
    #: rerun every run, done ones too
    force: bool = False
    #: run only these (``failed``, ``stale``, ``new``); default: everything not done
    only: Iterable[str] | None = None
    #: a joblib backend (default: joblib's current one, so ``parallel_config`` applies) or
    #: ``dask`` / ``dask-local`` / ``slurm``
    backend: str | None = None
    #: a ``dask.distributed.Client`` for ``dask``
    client: Any = None
    #: the distributed backend's settings (``scheduler``, ``slurm_partition``, ``slurm_time``,
    #: ``slurm_mem``, ``slurm_local``)
    backend_options: Mapping[str, Any] = field(default_factory=dict)
    progress: bool = True
    #: plan only: nothing runs, no kernel starts
    dry_run: bool = False
    #: write ``<runs root>/<sweep>/report.html`` at the end (``SweepReport.report_path``)
    report: bool = False
    #: also refresh it as runs finish
    live_report: bool = False


@dataclass
class SweepReport:
    """What a sweep invocation did."""

    sweep: str
    runs_root: Path
    plan: Plan
    outcomes: list[Outcome] = field(default_factory=list)
    wall_s: float = 0.0
    interrupted: bool = False
    #: the sweep's HTML report, when one was written
    report_path: Path | None = None
    #: why the sweep stopped early when the disk refused (full, read-only, permission)
    error: str | None = None
    #: an optimize sweep's best trial so far (``TrialFeed.best_line``)
    best: str | None = None

    def counts(self) -> Counter[str]:
        c: Counter[str] = Counter()
        # by run directory (one spec each): ``spec in to_run`` compared specs field by field,
        # runs x to_run times (50 M comparisons, ~50 s, after a 10,000-run sweep)
        to_run = {spec.run_dir for spec in self.plan.to_run}
        c["skipped"] = sum(1 for r in self.plan.runs if r.spec.run_dir not in to_run)
        for outcome in self.outcomes:
            if outcome.kind == SKIPPED or outcome.result is None:
                c["skipped"] += 1
            else:
                c[outcome.result.status] += 1
                c["warned"] += outcome.result.warned  # ok runs with warnings (also in "ok")
        return c

    @property
    def ok(self) -> bool:
        """True when every run this invocation executed or waited for ended ``ok``."""
        if self.interrupted or self.error:
            return False
        return all(o.result is None or o.result.ok for o in self.outcomes)

    def summary(self) -> str:
        c = self.counts()
        parts = [f"{c[s]} {s}" for s in (OK, FAILED, TIMEOUT, DIED, INTERRUPTED)]
        if c["warned"]:
            parts[0] += f" ({c['warned']} with warnings)"
        parts.append(f"{c['skipped']} skipped")
        state = "interrupted" if self.interrupted else ("ok" if self.ok else "FAILED")
        state = "stopped" if self.error else state
        line = (
            f"{self.sweep}: {state}: {', '.join(parts)} in {self.wall_s:.1f} s "
            f"-> {self.runs_root / 'index.csv'}"
        )
        return f"{line}; {self.best}" if self.best else line


class LiveReport:
    """Rewrites a sweep's report during the sweep, within a budget: the time spent writing it
    stays under ``LIVE_SHARE`` of the time since the first write (and two writes are at least
    ``LIVE_MIN_GAP_S`` apart). The first finished run writes it at once; a 100,000-run report
    that costs 5 s is then written about every 250 s."""

    def __init__(self, root: Path, sweep: str) -> None:
        self.root, self.sweep = root, sweep
        self._since: float | None = None  # the first write's start
        self._spent = 0.0
        self._last = -math.inf

    def due(self, now: float) -> bool:
        """Whether a write now keeps within the budget."""
        if self._since is None:
            return True
        return now - self._last >= LIVE_MIN_GAP_S and self._spent <= LIVE_SHARE * (
            now - self._since
        )

    def refresh(self, force: bool = False) -> Path | None:
        t0 = time.monotonic()
        if not force and not self.due(t0):
            return None
        from .report import write_report

        if self._since is None:
            self._since = t0
        try:
            path = write_report(self.root, sweep=self.sweep, render_notebooks="failed")
        except Exception as exc:  # a report problem never stops a sweep
            log.warning("%s: the report could not be written (%s)", self.sweep, exc)
            path = None
        self._last = time.monotonic()
        self._spent += self._last - t0
        return path


def execute_sweep(sweep: Sweep | GivenRuns, options: SweepOptions | None = None) -> SweepReport:
    """Plan and execute a sweep; index every run as it finishes.

    Raises ``InputError`` for an unknown backend or option, a kernel that is not registered, or
    a backend that cannot start; every fault of a run is in its record.
    """
    t0 = time.perf_counter()
    opts = options or SweepOptions()
    run_options = opts.run
    if sweep.preload and not run_options.preload:
        run_options = dataclasses.replace(run_options, preload=sweep.preload)
    root = Path(opts.runs_root).absolute()
    if sweep.optimize is not None and (opts.force or opts.only):
        raise InputError(
            f"{sweep.source or sweep.name}: --force and --only do not apply to an optimize sweep "
            "(its study chooses the runs); raise optimize.trials to run more"
        )
    if sweep.optimize is not None and opts.dry_run:
        return SweepReport(sweep.name, root, Plan((), ()))  # the CLI says describe_optimize
    # the zygote boots (another process) while the sweep is expanded, planned and checked
    prestarted = None if opts.dry_run else _prestart(opts, run_options)
    try:
        return _execute(sweep, opts, run_options, root, t0, prestarted)
    finally:
        if prestarted is not None:  # unless the sweep forked its kernels: nothing left of it
            prestarted.discard()


def _execute(
    sweep: Sweep | GivenRuns,
    opts: SweepOptions,
    run_options: RunOptions,
    root: Path,
    t0: float,
    prestarted: _Prestarted | None,
) -> SweepReport:
    """``execute_sweep`` once the zygote is booting."""
    feed: TrialFeed | None = None
    if sweep.optimize is not None:  # the study asks for the runs; its earlier trials are planned
        from .trials import TrialFeed

        feed = TrialFeed(sweep, root)
        specs = feed.known_specs()
        plan = plan_runs(specs)
        plan = Plan(plan.runs, ())
    else:
        # a plan (--dry-run) only hashes the flows: reading them as notebooks imports Jupytext
        specs = sweep.expand(root, inspect=not opts.dry_run)
        plan = plan_runs(specs, force=opts.force, only=opts.only)
        if (note := _lhs_replanned(sweep, root, specs)) is not None:
            log.warning("%s", note)
    report = SweepReport(sweep.name, root, plan)
    if opts.dry_run:
        return report
    # source checks: warnings, or InputError when strict
    sweep.check(feed.example_specs() if feed else specs, run_options.kernel)
    from .backends import get_backend
    from .kernel import check_kernel_name

    check_kernel_name(run_options.kernel)
    n_jobs = max(1, opts.n_jobs or os.cpu_count() or 1)
    todo = len(plan.to_run) if feed is None else feed.study.remaining()
    if run_options.warm and todo <= n_jobs:
        # one run per worker: a warm process would only add its own start to each
        run_options = dataclasses.replace(run_options, warm=False)
    backend_options = dict(opts.backend_options)
    if opts.client is not None:
        backend_options["client"] = opts.client
    backend = get_backend(opts.backend, n_jobs, warm=run_options.warm, options=backend_options)
    if prestarted is not None and not (run_options.warm and backend.name in IN_PROCESS):
        prestarted.discard()  # its kernels start elsewhere, or the standard way
    if todo:
        backend.check()  # e.g. sbatch --test-only: a refusal leaves nothing behind
        # once per sweep, in the conductor; its hash goes in each run's status.json
        run_options = _with_environment(
            run_options, root, feed.example_specs()[:1] if feed else specs
        )
    if feed is None:
        log.info("%s", plan.describe(sweep.name))
    else:
        log.info("%s: optimize, %d of %d trials to run", sweep.name, todo, feed.block.trials)
    kernels = "warm" if run_options.warm else "standard"
    log.info("%s: backend %s, -j %d, %s kernels", sweep.name, backend.name, n_jobs, kernels)

    index = IndexFile(root)
    try:
        plan = report.plan = recover_abandoned(plan)
        if feed is not None:  # trials a killed conductor left running: failed, counted once
            todo = feed.recover({r.spec.run_dir: r.state for r in plan.runs})
            plan = report.plan = plan_runs(feed.known_specs())
            plan = report.plan = Plan(plan.runs, ())
        known = [r for r in plan.runs if r.status]
        index.merge(build_row(r.spec.run_dir, r.status, r.spec.config) for r in known)
    except StorageError as exc:  # the disk refuses the runs root: nothing can run
        report.error = str(exc)
        report.wall_s = time.perf_counter() - t0
        return report
    since = now()
    from .task import run_task

    ahead = _kernels_ahead(backend, run_options)
    task = functools.partial(
        run_task, options=run_options, force=opts.force, since=since, conductor=os.getpid(),
        index_root=root, stop=backend.stop_event, ahead=ahead,
    )  # fmt: skip
    configs = {s.run_dir: s.config for s in specs} if feed is None else feed.configs
    conductor = _Conductor(sweep.name, report, index, configs, opts, total=todo, feed=feed)
    if opts.report or opts.live_report:  # its imports go while the runs execute, not after
        threading.Thread(target=_prepare_report, name="ductaflow-report", daemon=True).start()
    bad_input = False
    try:
        # no temporary outlives the sweep, nor a kernel forked ahead that no run adopted
        closing = contextlib.closing(ahead) if ahead is not None else contextlib.nullcontext()
        with sweep_scratch(), conductor.logging_around_bar(), closing:
            conductor.drive(backend, task, plan.to_run if feed is None else feed, since)
    except InputError:  # the backend cannot start: exit 2 in one line, no report of nothing
        bad_input = True
        raise
    finally:
        conductor.close()
        if feed is not None:
            report.error = report.error or feed.error
            with contextlib.suppress(Exception):  # a study that failed may not answer
                report.best = feed.best_line()
        try:
            index.compact()
        except StorageError as exc:  # the appended rows stand; the error is reported once
            report.error = report.error or str(exc)
        if (opts.report or opts.live_report) and not bad_input:
            report.report_path = conductor.live.refresh(force=True)
        report.wall_s = time.perf_counter() - t0
    return report


def _kernels_ahead(backend: Backend, run: RunOptions) -> Any:
    """Fork each run's kernel while the run before it on its thread executes (``KernelsAhead``):
    for warm kernels of this Python on the threads backend, where this process forks them."""
    if not run.warm or run.kernel is not None or backend.name != "threading":
        return None
    from .task import start_ahead
    from .warm import KernelsAhead

    ahead = KernelsAhead(run.preload)
    backend.ahead = functools.partial(start_ahead, options=run, ahead=ahead)  # type: ignore[attr-defined]
    return ahead


def _prepare_report() -> None:
    from .report import prepare

    try:
        prepare()
    except Exception as exc:  # said again, if it matters, by the report itself
        log.debug("preparing the report: %s", exc)


#: backends running runs in the conductor's process (``Backend.name``): its zygote forks kernels
IN_PROCESS = ("threading", "sequential")


@dataclass
class _Prestarted:
    """A zygote booting for a sweep, before the sweep knows whether it will need it."""

    registry: Any
    thread: Any

    def discard(self) -> None:
        self.registry.discard(self.thread)


def _prestart(opts: SweepOptions, run: RunOptions) -> _Prestarted | None:
    """Begin booting the zygote this sweep's kernels will be forked from, when they will be
    forked in this process (warm kernels on threads or in sequence, this Python's kernel)."""
    from .backends import in_process

    if not run.warm or run.kernel is not None or not sys.platform.startswith("linux"):
        return None
    if not in_process(opts.backend, max(1, opts.n_jobs or os.cpu_count() or 1), warm=True):
        return None
    from .zygotes import default_registry

    try:
        preload = valid_preload(run.preload)
    except ConfigError:  # each run says what is wrong with it
        return None
    registry = default_registry()
    return _Prestarted(registry, registry.prestart(preload=preload))


def _lhs_replanned(sweep: Sweep | GivenRuns, root: Path, specs: list[RunSpec]) -> str | None:
    """What to say when an ``lhs`` sample lays out its points anew: runs of an earlier ``n``
    in the sweep's folder that are none of this sweep's (the other methods keep their points)."""
    sample = getattr(sweep, "sample", None)
    if sample is None or sample.method != "lhs":
        return None
    wanted = {s.run_dir.name for s in specs}
    try:
        with os.scandir(root / sweep.name) as entries:
            earlier = [
                e.name
                for e in entries
                if e.name not in wanted and os.path.exists(os.path.join(e.path, STATUS_FILE))
            ]
    except OSError:  # no folder yet: nothing was laid out before
        return None
    if not earlier:
        return None
    return (
        f"{sweep.name}: 'lhs' lays out all {sample.n} points anew when n changes: "
        f"{len(earlier)} run(s) in {root / sweep.name} are not among them and are left as they "
        "are; sobol, halton and random keep their first points as n grows"
    )


def _with_environment(options: RunOptions, root: Path, specs: list[RunSpec]) -> RunOptions:
    """Record the environment the sweep runs in (``<root>/.environment/<hash>.json``), named in
    ``options`` for each run's ``status.json``."""
    from .environment import record_environment

    env = record_environment(root, [f.path for f in specs[0].flows])
    if env is None:
        return options
    return dataclasses.replace(options, env_hash=env.hash, git_commit=env.git_commit)


class _Conductor:
    """The loop over a backend's outcomes: index them, move the bar, retry after a dead worker."""

    def __init__(
        self,
        name: str,
        report: SweepReport,
        index: IndexFile,
        configs: Mapping[Path, Mapping[str, Any]],
        opts: SweepOptions,
        total: int | None = None,
        feed: TrialFeed | None = None,
    ) -> None:
        self.report, self.index, self.configs = report, index, configs
        #: an optimize sweep's trials: each outcome is told to its study
        self.feed = feed
        self.live_report = opts.live_report
        self.live = LiveReport(report.runs_root, name)
        if opts.progress:
            from tqdm.auto import tqdm
        else:  # tqdm.auto warns in a notebook without ipywidgets, even for a bar never shown
            from tqdm import tqdm
        total = len(report.plan.to_run) if total is None else total
        self.bar = tqdm(total=total, unit="run", desc=name, disable=not opts.progress or None)
        self.tally: Counter[str] = Counter()
        #: runs another conductor is executing: waited for at the end
        self.busy: list[RunSpec] = []

    def handle(self, outcome: Outcome) -> None:
        result = outcome.result
        log.debug("%s: %s", outcome.spec.name, result.status if result else outcome.kind)
        if outcome.kind == BUSY:
            self.busy.append(outcome.spec)
            return
        self.report.outcomes.append(outcome)
        told = self.feed is not None and self.feed.told(outcome)  # its row gains the trial's value
        if outcome.result is not None and outcome.kind == RAN:
            if not outcome.indexed or told:
                config = self.configs[outcome.spec.run_dir]
                self.index.append(build_row(outcome.spec.run_dir, outcome.result.to_json(), config))
            self.tally["ok" if outcome.result.ok else "failed"] += 1
        else:
            self.tally["skipped"] += 1
        self.bar.set_postfix(self.tally, refresh=False)
        self.bar.update(1)
        if outcome.storage:
            raise StorageError(outcome.storage)
        if self.live_report:
            self.live.refresh()

    def drive(self, backend: Backend, task: Task, to_run: Iterable[RunSpec], since: str) -> None:
        """Run ``to_run`` on ``backend`` until every run has an outcome (or Ctrl-C).

        ``to_run`` is a sequence of runs, or an iterator (an optimize sweep's trials) that the
        backend pulls one run per free slot, each pulled run becoming pending.

        The retry policy, for a worker process that dies (it takes its pool siblings' runs
        down with it): the runs it left go again, those caught in a death go alone, so that a
        second death can only be their own doing, and a run caught twice is recorded ``died``.
        """
        feed: Iterator[RunSpec] | None = None
        if isinstance(to_run, Sequence):
            pending = {s.run_dir: s for s in to_run}
        else:
            feed, pending = iter(to_run), {}
        strikes: Counter[Path] = Counter()

        def struck(spec: RunSpec) -> bool:
            strikes[spec.run_dir] += 1
            return strikes[spec.run_dir] >= DEAD_WORKER_STRIKES

        def pulled(specs: Iterable[RunSpec]) -> Iterator[RunSpec]:
            for spec in specs:
                pending[spec.run_dir] = spec
                yield spec

        rounds = 2 * (len(pending) or operator.length_hint(to_run)) + 2
        for _round in range(rounds):
            suspects = [spec for spec in pending.values() if strikes[spec.run_dir]]
            if suspects:
                batch: Iterable[RunSpec] = suspects[:1]
            elif feed is not None:  # the runs a dead worker left, then new trials
                batch = pulled(itertools.chain(list(pending.values()), feed))
            elif pending:
                batch = list(pending.values())
            else:
                break
            try:
                for outcome in backend.run(batch, task):
                    pending.pop(outcome.spec.run_dir, None)
                    self.handle(outcome)
                if feed is not None and not suspects and not pending:
                    break  # the feed ran dry: every trial asked has an outcome
            except InputError:  # the backend cannot start (missing extra, no scheduler)
                raise
            except StorageError as exc:  # the disk refused: stop, record what ran, report it
                self.report.error = str(exc)
                backend.stop()
                error = f"Interrupted: the sweep stopped because the disk refused: {exc}"
                with contextlib.suppress(StorageError):  # else the next sweep records them
                    for spec in pending.values():
                        with contextlib.suppress(StorageError):
                            self._settled(settle(spec, since, INTERRUPTED, error))
                break
            except KeyboardInterrupt:
                self.report.interrupted = True
                backend.stop()  # stops the runs still going (threads, cluster)
                error = "Interrupted: the sweep was stopped while this run executed"
                for spec in pending.values():
                    self._settled(settle(spec, since, INTERRUPTED, error))
                break
            except Exception as exc:  # a worker process died: its runs go again, then are recorded
                log.warning("a worker died (%s); its runs go again", exc)
                error = (
                    f"DeadWorker: the worker process running it died, twice ({type(exc).__name__})"
                )
                tried = list(pending.values()) if feed is not None else batch
                for spec in [s for s in tried if s.run_dir in pending]:  # not those it handled
                    if self._settled(settle(spec, since, DIED, error, record_if=struck)):
                        pending.pop(spec.run_dir, None)
        if not self.report.interrupted and not self.report.error:
            for spec in self.busy:
                self.handle(wait_for_run(spec))

    def _settled(self, outcome: Outcome | None) -> bool:
        """Handle a settled run; False when it is not settled yet (it may run again)."""
        if outcome is None or outcome.kind == BUSY:
            return False  # still claimed: left as it was
        self.handle(outcome)
        return True

    def logging_around_bar(self) -> contextlib.AbstractContextManager[None]:
        """While the bar is drawn, console log lines go through ``tqdm.write`` (above the bar),
        so that neither garbles the other."""
        if self.bar.disable:
            return contextlib.nullcontext()
        from tqdm.contrib.logging import logging_redirect_tqdm

        # only loggers that write to the console: it adds a handler to each logger it is given
        console = [
            logger
            for logger in (logging.getLogger("ductaflow"), logging.getLogger())
            if any(
                isinstance(h, logging.StreamHandler) and h.stream in (sys.stdout, sys.stderr)
                for h in logger.handlers
            )
        ]
        if not console:
            return contextlib.nullcontext()
        return logging_redirect_tqdm(console, tqdm_class=type(self.bar))

    def close(self) -> None:
        self.bar.close()


def run_sweep(sweep: Sweep, options: SweepOptions | None = None) -> Any:
    """Execute a sweep and return its rows of ``runs/index.csv`` as a DataFrame.

    Raises KeyboardInterrupt (after recording every run) when Ctrl-C stopped the sweep.
    """
    opts = options or SweepOptions()
    report = execute_sweep(sweep, opts)
    if report.error:
        raise StorageError(f"{report.summary()}: {report.error}")
    if report.interrupted:
        raise KeyboardInterrupt(report.summary())
    frame = load_index(opts.runs_root)
    return frame[frame["sweep"] == sweep.name].reset_index(drop=True)


@dataclass(frozen=True)
class GivenRuns:
    """Runs built elsewhere (``ductaflow rerun`` rebuilds them from their run directories),
    executed by ``execute_sweep`` as a sweep of their own: it only hands them back."""

    name: str
    specs: tuple[RunSpec, ...]
    preload: tuple[str, ...] = ()
    #: not an optimize sweep (what ``execute_sweep`` asks of a sweep that a study drives)
    optimize: None = None

    def expand(self, runs_root: str | Path, inspect: bool = True) -> list[RunSpec]:
        return list(self.specs)

    def check(self, specs: Iterable[RunSpec], kernel: str | None = None) -> list[str]:
        return []  # their flows' source was checked when they were first swept


def execute_runs(
    name: str, specs: Iterable[RunSpec], options: SweepOptions | None = None
) -> SweepReport:
    """Execute these runs, whose directories are under ``options.runs_root``, as one sweep
    called ``name`` (the bar, the log): planned, indexed and recorded as a sweep's are."""
    return execute_sweep(GivenRuns(name, tuple(specs)), options)
