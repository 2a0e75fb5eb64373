"""Run a sweep: plan what to (re)run, execute the runs, index them as they finish.

Runs with warm kernels go on threads of this process (one zygote forks all their kernels),
standard ones on a joblib pool (loky), or on Dask / SLURM (``ductaflow.distributed``).

Nothing a run does can stop the others: the task that runs in a worker catches everything and
returns an ``Outcome``. When a worker process itself dies, or Ctrl-C stops the conductor, the runs
it left behind are recorded (``died`` / ``interrupted``) from the conductor, and the rest go on
(or, after Ctrl-C, wait for the next ``ductaflow sweep``, which resumes). Runs a killed conductor
left ``running`` on disk are recorded ``interrupted`` by the next sweep.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import logging
import os
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import gc_paused
from .engine import RunInterrupted, execute_run, record_abandoned
from .errors import InputError
from .index import UNFINISHED_ERROR, IndexFile, build_row, load_index
from .process import now
from .rundir import RunLock, is_claimed, read_status, write_status
from .spec import DIED, FAILED, INTERRUPTED, OK, RUNNING, TIMEOUT, RunOptions, RunResult, RunSpec
from .sweep import Sweep

__all__ = [
    "ONLY_CHOICES",
    "Outcome",
    "Plan",
    "PlannedRun",
    "SweepReport",
    "execute_sweep",
    "plan_runs",
    "run_sweep",
]

log = logging.getLogger("ductaflow")

NEW, DONE, STALE, BUSY = "new", "done", "stale", "running"
ONLY_CHOICES = ("failed", "stale", "new")
#: backends on this machine; None: joblib's current one (``parallel_config``), else threads for
#: warm runs and loky for standard ones. ``threading`` is ductaflow's own pool (it stops runs).
JOBLIB_BACKENDS = ("loky", "threading", "multiprocessing", "sequential")
#: backends in ``ductaflow.distributed`` (optional extras)
DISTRIBUTED_BACKENDS = ("dask", "dask-local", "slurm")
BACKENDS = JOBLIB_BACKENDS + DISTRIBUTED_BACKENDS
#: runs on threads of the conductor (a ``concurrent.futures`` pool, which can stop its runs)
THREADS = "threading"


# -- planning ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlannedRun:
    spec: RunSpec
    #: new, done, failed, stale or running (claimed by another process right now)
    state: str
    status: Mapping[str, Any] | None = None


def _matches(spec: RunSpec, status: Mapping[str, Any]) -> bool:
    flows = status.get("flows") or ()
    recorded = [(f.get("path"), f.get("sha256")) for f in flows if isinstance(f, dict)]
    planned = [(str(f.path), f.sha256) for f in spec.flows]
    return status.get("config_hash") == spec.config_hash and recorded == planned


def classify(spec: RunSpec, status: Mapping[str, Any] | None) -> str:
    """Where a run stands: new, done, failed, stale, or running (claimed elsewhere)."""
    if status is None:
        return NEW
    state = status.get("status")
    if state == RUNNING:
        return BUSY if is_claimed(spec.run_dir) else "failed"
    if state == OK:
        return DONE if _matches(spec, status) else STALE
    return "failed"


@dataclass(frozen=True)
class Plan:
    runs: tuple[PlannedRun, ...]
    to_run: tuple[RunSpec, ...]

    def counts(self) -> Counter[str]:
        return Counter(run.state for run in self.runs)

    def describe(self, name: str) -> str:
        c = self.counts()
        parts = [f"{c[s]} {s}" for s in (NEW, DONE, "failed", STALE, BUSY) if c[s]]
        return f"{name}: {len(self.runs)} runs ({', '.join(parts)}); {len(self.to_run)} to run"


def plan_runs(
    specs: Sequence[RunSpec], *, force: bool = False, only: Iterable[str] | None = None
) -> Plan:
    """Read each run's status and choose what to run (resume by default)."""
    wanted = set(only or ()) or {NEW, "failed", STALE}
    bad = set(wanted) - set(ONLY_CHOICES)
    if bad:
        raise ValueError(f"--only {sorted(bad)[0]!r}: choose from {', '.join(ONLY_CHOICES)}")
    runs = []
    with gc_paused():
        for spec in specs:
            status = read_status(spec.run_dir)
            runs.append(PlannedRun(spec, classify(spec, status), status))
    to_run = tuple(r.spec for r in runs if r.state == BUSY or force or r.state in wanted)
    return Plan(tuple(runs), to_run)


# -- the task that runs in a worker ---------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    """What became of one planned run: ``ran``, ``skipped`` (found done) or ``busy``."""

    spec: RunSpec
    kind: str
    result: RunResult | None = None
    #: True when the worker already appended the run's row to the index
    indexed: bool = False


def _run_task(
    spec: RunSpec,
    options: RunOptions,
    force: bool,
    since: str,
    conductor: int | None = None,
    index_root: Path | None = None,
    stop: threading.Event | None = None,
) -> Outcome:
    """Claim, re-check, execute and index one run. Never raises: every fault becomes a record.

    ``conductor``: the pid of the sweep's conductor; a pool worker whose parent it is stops its
    run when the conductor dies. ``index_root``: append the run's index row there from the
    worker, before the claim is released, so that once no process holds a run's claim its
    result is in the index, even if the conductor was killed meanwhile. ``stop``: set by the
    conductor to stop a run executing in one of its threads.
    """
    try:
        spec.run_dir.mkdir(parents=True, exist_ok=True)
        lock = RunLock(spec.run_dir)
        if not lock.acquire():
            return Outcome(spec, "busy")
        try:
            status = read_status(spec.run_dir)
            if status and classify(spec, status) == DONE:
                if not force or (status.get("started") or "") >= since:
                    return Outcome(spec, "skipped", RunResult.from_json(status, spec.run_dir))
            worker = conductor is not None and os.getppid() == conductor
            guard = _orphan_guard(conductor) if worker and conductor is not None else None
            with guard or contextlib.nullcontext():
                try:
                    result = execute_run(spec, options, stop_with_parent=worker, stop=stop)
                except RunInterrupted as exc:
                    result = exc.result
                return _indexed(Outcome(spec, "ran", result), index_root)
        finally:
            lock.release()
    except BaseException as exc:  # a fault of ductaflow's own, recorded against the run
        stamp = now()
        result = RunResult(
            run_dir=spec.run_dir, status=FAILED, started=stamp, finished=stamp, duration_s=0.0,
            config_hash=spec.config_hash, error=f"ductaflow internal error: {exc!r}",
            traceback=traceback.format_exc(), sweep=spec.sweep, name=spec.name,
        )  # fmt: skip
        with contextlib.suppress(OSError):
            write_status(result)
        return Outcome(spec, "ran", result)


@functools.cache
def _orphan_guard(conductor: int) -> threading.Lock:
    """In a pool worker: exit once the conductor is gone and no run is being recorded.

    An orphaned loky worker would otherwise wait for tasks forever. Runs hold the returned lock,
    so the worker never exits halfway through recording one (the engine stops a run whose
    conductor died, records it and kills its kernel).
    """
    busy = threading.Lock()

    def watch() -> None:
        while os.getppid() == conductor:
            time.sleep(1.0)
        with busy:
            os._exit(0)

    threading.Thread(target=watch, name="ductaflow-orphan-guard", daemon=True).start()
    return busy


def _indexed(outcome: Outcome, index_root: Path | None) -> Outcome:
    """Append the outcome's row to the index (from a worker); the conductor does it otherwise."""
    if index_root is None or outcome.result is None:
        return outcome
    spec = outcome.spec
    try:
        IndexFile(index_root).append(build_row(spec.run_dir, outcome.result.to_json(),
                                               spec.config))  # fmt: skip
    except OSError as exc:
        log.warning("%s: could not append to the index (%s); the conductor will", spec, exc)
        return outcome
    return Outcome(spec, outcome.kind, outcome.result, indexed=True)


# -- running a sweep ----------------------------------------------------------------------------
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

    def counts(self) -> Counter[str]:
        c: Counter[str] = Counter()
        c["skipped"] = sum(1 for r in self.plan.runs if r.spec not in self.plan.to_run)
        for outcome in self.outcomes:
            if outcome.kind == "skipped" or outcome.result is None:
                c["skipped"] += 1
            else:
                c[outcome.result.status] += 1
        return c

    @property
    def ok(self) -> bool:
        """True when every run this invocation executed or waited for ended ``ok``."""
        if self.interrupted:
            return False
        return all(o.result is None or o.result.ok for o in self.outcomes)

    def summary(self) -> str:
        c = self.counts()
        parts = [f"{c[s]} {s}" for s in (OK, FAILED, TIMEOUT, DIED, INTERRUPTED)]
        parts.append(f"{c['skipped']} skipped")
        state = "interrupted" if self.interrupted else ("ok" if self.ok else "FAILED")
        return (
            f"{self.sweep}: {state}: {', '.join(parts)} in {self.wall_s:.1f} s "
            f"-> {self.runs_root / 'index.csv'}"
        )


def _in_threads(
    specs: Iterable[RunSpec],
    task: Callable[[RunSpec], Outcome],
    n_jobs: int,
    stop: threading.Event,
) -> Iterator[Outcome]:
    """Outcomes of ``task`` over ``specs`` on ``n_jobs`` threads of this process, as they finish.

    At most ``n_jobs`` runs are submitted at a time, so none waits in a queue. When the iterator
    is stopped (Ctrl-C, SIGTERM, ``close()``), ``stop`` is set: the runs in flight stop, record
    themselves ``interrupted`` and are waited for.
    """
    todo = iter(specs)
    running: set[Future[Outcome]] = set()
    pool = ThreadPoolExecutor(n_jobs, thread_name_prefix="ductaflow-run")
    try:
        while True:
            for spec in itertools.islice(todo, n_jobs - len(running)):
                running.add(pool.submit(task, spec))
            if not running:
                return
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
    except BaseException:
        stop.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _iterate(
    specs: Sequence[RunSpec],
    task: Callable[[RunSpec], Outcome],
    n_jobs: int,
    backend: str | None,
    backend_options: Mapping[str, Any],
    stop: threading.Event,
) -> Iterator[Outcome]:
    """Outcomes of ``task`` over ``specs``, in the order they finish, on the chosen backend.

    ``task`` never raises. An iterator that stops early (Ctrl-C) must cancel what is queued.
    """
    if backend == "sequential" or (n_jobs == 1 and backend in (None, "loky", THREADS)):
        for spec in specs:
            outcome = task(spec)
            yield outcome
            if outcome.result is not None and outcome.result.status == INTERRUPTED:
                # in this thread only Ctrl-C or SIGTERM interrupts a run: stop the sweep too
                raise KeyboardInterrupt(f"{spec.run_dir}: interrupted")
        return
    if backend == THREADS:
        yield from _in_threads(specs, task, n_jobs, stop)
        return
    if backend in DISTRIBUTED_BACKENDS:
        from .distributed import iterate_outcomes  # Dask, SLURM: optional extras

        yield from iterate_outcomes(specs, task, backend, n_jobs, **backend_options)
        return
    from joblib import Parallel, delayed

    parallel = Parallel(
        n_jobs=n_jobs, backend=backend, return_as="generator_unordered", batch_size=1
    )
    yield from parallel(delayed(task)(s) for s in specs)


def _resolve_backend(
    backend: str | None, options: dict[str, Any], warm: bool
) -> tuple[str | None, dict[str, Any]]:
    """The backend to use when none was given: joblib's current one, else threads or loky.

    Warm runs go on threads of this process: their kernels are forked by one zygote, so worker
    processes would only add their own start-up, and a zygote each (``benchmarks/README.md``).
    Inside ``joblib.parallel_config(backend="dask")``, runs are submitted through that backend's
    client: joblib's dask backend leaves runs going on the cluster after Ctrl-C and, on a
    cluster of one thread, runs every task in this process; ``ductaflow.distributed`` does
    neither.
    """
    if backend is not None:
        return backend, options
    from joblib.parallel import get_active_backend

    active, _ = get_active_backend()
    kind = type(active).__name__
    client = getattr(active, "client", None)
    if kind == "DaskDistributedBackend" and client is not None:
        return "dask", {**options, "client": client}
    if kind == "ThreadingBackend" or (warm and kind == "LokyBackend"):
        return THREADS, options
    return None, options


def _settle(
    specs: Iterable[RunSpec],
    status: str,
    error: str,
    since: str,
    strikes: Counter[Path] | None = None,
    limit: int = 1,
) -> list[Outcome]:
    """Record runs this sweep started whose process is gone (still ``running`` on disk).

    With ``strikes``, a run is recorded only the ``limit``-th time it is caught; before that it
    is left to run again (a worker that dies takes its pool siblings' runs down with it, and
    only the run that killed it should be recorded ``died``).
    """
    settled = []
    for spec in specs:
        data = read_status(spec.run_dir)
        if not data or (data.get("started") or "") < since:
            continue  # never started by this sweep
        deadline = time.monotonic() + 10
        while is_claimed(spec.run_dir) and time.monotonic() < deadline:
            time.sleep(0.05)  # the killed worker's lock is released as the process goes
        if is_claimed(spec.run_dir):
            continue
        data = read_status(spec.run_dir) or data
        if data.get("status") != RUNNING:  # its worker recorded it before going
            settled.append(Outcome(spec, "ran", RunResult.from_json(data, spec.run_dir)))
            continue
        if strikes is not None:
            strikes[spec.run_dir] += 1
            if strikes[spec.run_dir] < limit:
                continue
        result = record_abandoned(spec.run_dir, status, error)
        if result is not None:
            settled.append(Outcome(spec, "ran", result))
    return settled


class _LiveReport:
    """Rewrites a sweep's report, at most as often as its own cost allows (~10% of the time)."""

    def __init__(self, root: Path, sweep: str) -> None:
        self.root, self.sweep = root, sweep
        self._next = 0.0

    def refresh(self, force: bool = False) -> Path | None:
        if not force and time.monotonic() < self._next:
            return None
        from .report import write_report

        t0 = time.monotonic()
        try:
            path = write_report(self.root, sweep=self.sweep, render_notebooks="failed")
        except Exception as exc:  # a report problem never stops a sweep
            log.warning("%s: the report could not be written (%s)", self.sweep, exc)
            return None
        self._next = time.monotonic() + max(2.0, 10 * (time.monotonic() - t0))
        return path


def _record_abandoned(plan: Plan) -> Plan:
    """Record the runs whose process ended without recording them, and plan them anew.

    A killed conductor (SIGKILL, a lost machine) leaves its runs in flight ``running`` on disk
    with no claim held; such a run is recorded ``interrupted`` under its claim, so that it
    shows as such in the index and its notebook says where it stopped.
    """
    runs = list(plan.runs)
    for i, run in enumerate(runs):
        if not run.status or run.status.get("status") != RUNNING or run.state == BUSY:
            continue
        lock = RunLock(run.spec.run_dir)
        if lock.acquire():
            try:
                result = record_abandoned(run.spec.run_dir, INTERRUPTED, UNFINISHED_ERROR)
            finally:
                lock.release()
            if result is not None:
                runs[i] = PlannedRun(run.spec, "failed", read_status(run.spec.run_dir))
    return Plan(tuple(runs), plan.to_run)


def _wait_for(spec: RunSpec) -> Outcome:
    """A run another conductor is executing: wait until it is released, then read it."""
    lock = RunLock(spec.run_dir)
    while not lock.acquire():
        time.sleep(0.2)
    lock.release()
    data = read_status(spec.run_dir)
    return Outcome(spec, "ran", RunResult.from_json(data, spec.run_dir) if data else None)


def execute_sweep(
    sweep: Sweep,
    runs_root: str | Path = "runs",
    n_jobs: int | None = None,
    *,
    options: RunOptions | None = None,
    force: bool = False,
    only: Iterable[str] | None = None,
    backend: str | None = None,
    client: Any = None,
    backend_options: Mapping[str, Any] | None = None,
    progress: bool = True,
    dry_run: bool = False,
    report: bool = False,
    live_report: bool = False,
) -> SweepReport:
    """Plan and execute a sweep; index every run as it finishes.

    ``backend``: a joblib backend (default: joblib's current one, so ``parallel_config`` applies)
    or ``dask`` / ``dask-local`` / ``slurm``; ``client`` is a ``dask.distributed.Client`` for
    ``dask``; ``backend_options`` go to the distributed backend (scheduler address, SLURM
    partition and time, ...). ``report`` writes ``<runs root>/<sweep>/report.html`` at the end
    (``report.report_path``); ``live_report`` also refreshes it as runs finish.
    """
    t0 = time.perf_counter()
    options = options or RunOptions()
    if sweep.preload and not options.preload:
        options = dataclasses.replace(options, preload=sweep.preload)
    root = Path(runs_root).absolute()
    specs = sweep.expand(root)
    plan = plan_runs(specs, force=force, only=only)
    sweep_report = SweepReport(sweep.name, root, plan)
    if dry_run:
        return sweep_report
    from .kernel import check_kernel_name

    check_kernel_name(options.kernel)
    n_jobs = max(1, n_jobs or os.cpu_count() or 1)
    if options.warm and len(plan.to_run) <= n_jobs:
        # one run per worker: a warm process would only add its own start to each
        options = dataclasses.replace(options, warm=False)
    if backend is not None and backend not in BACKENDS:
        raise InputError(f"backend {backend!r}: choose from {', '.join(BACKENDS)}")
    backend_options = dict(backend_options or {})
    if client is not None:
        backend_options["client"] = client
    backend, backend_options = _resolve_backend(backend, backend_options, options.warm)
    if backend == "slurm" and plan.to_run:  # sbatch --test-only, before anything is written
        from .distributed import check_slurm

        slurm_keys = ("slurm_partition", "slurm_time", "slurm_mem", "slurm_local")
        check_slurm(**{k: v for k, v in backend_options.items() if k in slurm_keys})

    plan = sweep_report.plan = _record_abandoned(plan)
    index = IndexFile(root)
    configs = {s.run_dir: s.config for s in specs}
    index.merge(build_row(r.spec.run_dir, r.status, r.spec.config) for r in plan.runs if r.status)
    since = now()
    local = backend not in DISTRIBUTED_BACKENDS  # workers share this machine's files and pids
    stop = threading.Event()  # stops runs on this process's threads
    task = functools.partial(
        _run_task, options=options, force=force, since=since, conductor=os.getpid(),
        index_root=root if local else None, stop=stop if backend == THREADS else None,
    )  # fmt: skip
    if progress:
        from tqdm.auto import tqdm
    else:  # tqdm.auto warns in a notebook without ipywidgets, even for a bar never shown
        from tqdm import tqdm

    bar = tqdm(total=len(plan.to_run), unit="run", desc=sweep.name, disable=not progress or None)
    tally: Counter[str] = Counter()
    busy: list[RunSpec] = []

    def handle(outcome: Outcome) -> None:
        if outcome.kind == "busy":
            busy.append(outcome.spec)
            return
        sweep_report.outcomes.append(outcome)
        if outcome.result is not None and outcome.kind == "ran":
            if not outcome.indexed:
                data = outcome.result.to_json()
                index.append(build_row(outcome.spec.run_dir, data, configs[outcome.spec.run_dir]))
            tally["ok" if outcome.result.ok else "failed"] += 1
        else:
            tally["skipped"] += 1
        bar.set_postfix(tally, refresh=False)
        bar.update(1)
        if live_report:
            live.refresh()

    live = _LiveReport(root, sweep.name)
    pending = {s.run_dir: s for s in plan.to_run}
    strikes: Counter[Path] = Counter()
    try:
        for _round in range(2 * len(pending) + 2):
            if not pending:
                break
            # A run caught in a dead worker's pool goes again alone, so that a second death
            # can only be its own doing.
            suspects = [spec for spec in pending.values() if strikes[spec.run_dir]]
            batch = suspects[:1] or list(pending.values())
            outcomes = _iterate(batch, task, n_jobs, backend, backend_options, stop)
            try:
                for outcome in outcomes:
                    pending.pop(outcome.spec.run_dir, None)
                    handle(outcome)
            except InputError:  # the backend cannot start (missing extra, no scheduler)
                raise
            except KeyboardInterrupt:
                sweep_report.interrupted = True
                if backend in (THREADS, *DISTRIBUTED_BACKENDS):
                    outcomes.close()  # stops the runs still going (threads, cluster)
                error = "Interrupted: the sweep was stopped while this run executed"
                for outcome in _settle(pending.values(), INTERRUPTED, error, since):
                    handle(outcome)
                break
            except Exception as exc:  # a worker process died: its runs go again, then are recorded
                log.warning("a worker died (%s); its runs go again", exc)
                error = (
                    f"DeadWorker: the worker process running it died, twice ({type(exc).__name__})"
                )
                for outcome in _settle(batch, DIED, error, since, strikes, limit=2):
                    pending.pop(outcome.spec.run_dir, None)
                    handle(outcome)
        if not sweep_report.interrupted:
            for spec in busy:
                handle(_wait_for(spec))
    finally:
        bar.close()
        index.compact()
        if report or live_report:
            sweep_report.report_path = live.refresh(force=True)
        sweep_report.wall_s = time.perf_counter() - t0
    return sweep_report


def run_sweep(
    sweep: Sweep,
    runs_root: str | Path = "runs",
    n_jobs: int | None = None,
    **kwargs: Any,
) -> Any:
    """Execute a sweep and return its rows of ``runs/index.csv`` as a DataFrame.

    Raises KeyboardInterrupt (after recording every run) when Ctrl-C stopped the sweep.
    """
    report = execute_sweep(sweep, runs_root, n_jobs, **kwargs)
    if report.interrupted:
        raise KeyboardInterrupt(report.summary())
    frame = load_index(runs_root)
    return frame[frame["sweep"] == sweep.name].reset_index(drop=True)
