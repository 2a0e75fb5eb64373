"""Run a sweep on Dask (a scheduler you have, or a LocalCluster) or on SLURM (dask-jobqueue).

The conductor submits one Dask task per run with ``Client.submit`` (``pure=False``) and takes the
outcomes back with ``as_completed``, so the index and the progress bar move as runs finish. The
runs directory is on a filesystem that the workers share; the conductor alone writes the index.

On a worker, a task does not execute the run in the worker's thread: it hands it to a *run
process*, one per worker thread, started once and reused (the same run task as ``loky`` executes,
``executor._run_task``). That is what lets a run be stopped: Dask cannot stop a running task, but
a run process can be sent SIGTERM, and then the engine records the run ``interrupted``, kills its
kernel and saves its notebook, as after Ctrl-C on one machine.

- A run that raises, times out or kills its kernel is recorded by the engine; the task returns
  normally, so Dask never sees an error.
- A run whose run process dies (a flow killed it) goes again once, and is recorded ``died`` by
  its worker the second time, like a run whose ``loky`` worker dies. When a Dask worker dies,
  its run processes get SIGTERM (``PR_SET_PDEATHSIG``) and record their runs ``interrupted``;
  Dask runs those tasks again elsewhere, and after ``distributed.scheduler.allowed-failures``
  worker deaths the conductor records the run ``died``.
- Ctrl-C in the conductor (or leaving the iterator early) cancels the queued tasks and sends
  SIGTERM to this sweep's run processes on every worker, then waits for them to record their runs.

Backends: ``dask`` (``client=`` or ``scheduler=ADDRESS``, extra ``ductaflow[dask]``),
``dask-local`` (a ``distributed.LocalCluster`` of ``n_jobs`` one-thread worker processes) and
``slurm`` (a ``dask_jobqueue.SLURMCluster`` of ``n_jobs`` one-core jobs, extra
``ductaflow[slurm]``; ``slurm_local=True`` runs the same job scripts here with ``bash`` in place of
``sbatch``, for trying a setup without a cluster).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import logging
import os
import pickle
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InputError
from .process import describe_exit, now, set_parent_death_signal
from .rundir import STATUS_FILE, is_claimed, read_status, write_json, write_status
from .spec import DIED, INTERRUPTED, NOT_RUN, FlowResult, RunResult, RunSpec

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from distributed import Client

    from .executor import Outcome

__all__ = ["check_slurm", "iterate_outcomes", "slurm_cluster", "slurm_job_script"]

log = logging.getLogger("ductaflow")

Task = Callable[[RunSpec], "Outcome"]

#: Seconds the conductor gives stopped runs to record themselves after Ctrl-C.
STOP_GRACE_S = 20.0
#: Seconds a task rerun after its worker died waits for the old run process to let go of the run.
RECLAIM_WAIT_S = 30.0
#: Seconds a run process waits for its next run before it exits.
RUN_PROCESS_IDLE_S = 600.0
#: Memory per SLURM job when neither ``slurm_mem`` nor dask-jobqueue's config says.
SLURM_DEFAULT_MEMORY = "4GB"
#: Where, under the runs root, the SLURM job script and the workers' logs go.
SLURM_DIR = ".slurm"

_EXTRAS = {"dask": "dask", "dask-local": "dask", "slurm": "slurm"}


# -- the conductor ------------------------------------------------------------------------------
def iterate_outcomes(
    specs: Sequence[RunSpec],
    task: Task,
    backend: str,
    n_jobs: int,
    *,
    client: Client | None = None,
    scheduler: str | None = None,
    slurm_partition: str | None = None,
    slurm_time: int | None = None,
    slurm_mem: str | None = None,
    slurm_local: bool = False,
) -> Iterator[Outcome]:
    """Outcomes of ``task`` over ``specs`` on a Dask cluster, in the order the runs finish.

    ``backend`` is ``dask`` (``client`` or ``scheduler``; ``n_jobs`` is ignored: the cluster's
    threads decide), ``dask-local`` or ``slurm`` (``n_jobs`` workers of one thread each).
    Raises ``InputError`` when the extra is missing or the scheduler cannot be reached. Closing
    the iterator early (or Ctrl-C while it waits) stops this sweep's runs on the cluster.
    """
    if not specs:
        return
    distributed = _require("distributed", backend)
    since = now()
    setup = _Setup(
        backend=backend,
        n_workers=max(1, min(n_jobs, len(specs))),
        runs_root=specs[0].run_dir.parent.parent,  # <root>/<sweep>/<run>
        client=client,
        scheduler=scheduler,
        slurm_partition=slurm_partition,
        slurm_time=slurm_time,
        slurm_mem=slurm_mem,
        slurm_local=slurm_local,
    )
    if backend == "dask":
        log.info("--backend dask: the cluster's worker threads set how many runs run at once")
    # pickled here and unpickled in the run process: a worker never imports the engine
    payload = pickle.dumps(task)
    with _connect(setup) as dask_client:
        token = uuid.uuid4().hex
        pending: dict[Any, RunSpec] = {}
        try:
            for spec in specs:
                key = f"ductaflow-{spec.name}-{token[:8]}"
                future = dask_client.submit(_run_remote, payload, spec, token, key=key, pure=False)
                pending[future] = spec
            for future in distributed.as_completed(list(pending), loop=dask_client.loop):
                spec = pending.pop(future)
                try:
                    answer = future.result()
                    outcome = pickle.loads(answer) if isinstance(answer, bytes) else answer
                except Exception as exc:  # KilledWorker: the workers running it kept dying
                    log.warning("%s: lost on the cluster (%s)", spec.name, exc)
                    error = f"DeadWorker: the workers running it died ({type(exc).__name__})"
                    outcome = _record_killed(spec, since, error)
                yield outcome
        finally:
            if pending:
                _stop(dask_client, list(pending), token)


def _require(module: str, backend: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        extra = _EXTRAS.get(backend, "dask")
        raise InputError(
            f"--backend {backend} needs {module}: pip install 'ductaflow[{extra}]'"
        ) from None


@dataclass(frozen=True)
class _Setup:
    """Where and how a sweep's runs go: the backend and its options."""

    backend: str
    n_workers: int
    runs_root: Path
    client: Client | None = None
    scheduler: str | None = None
    slurm_partition: str | None = None
    slurm_time: int | None = None
    slurm_mem: str | None = None
    slurm_local: bool = False


@contextlib.contextmanager
def _connect(setup: _Setup) -> Iterator[Client]:
    """A client for the backend; what is started here is closed here, what was given is kept."""
    with _quiet("distributed", "bokeh"):
        yield from _clients(setup)


@contextlib.contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """Keep Dask's INFO chatter (scheduler started, client connected, ...) out of our output."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    if not log.isEnabledFor(logging.DEBUG):
        for logger in loggers:
            logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _clients(setup: _Setup) -> Iterator[Client]:
    from distributed import Client

    backend, n_workers, runs_root = setup.backend, setup.n_workers, setup.runs_root
    if backend == "dask":
        if setup.client is not None:
            _check_workers(setup.client, runs_root)
            yield setup.client
            return
        if not setup.scheduler:
            raise InputError("--backend dask needs --scheduler ADDRESS (or client= from Python)")
        try:
            own = Client(setup.scheduler, timeout="30s", set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise InputError(f"--scheduler {setup.scheduler}: cannot connect ({exc})") from None
        with own:
            _check_workers(own, runs_root)
            yield own
        return
    if backend == "dask-local":
        from distributed import LocalCluster

        cluster: Any = LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None,
            silence_logs=logging.ERROR, preload=[__name__],  # see dask_setup
        )  # fmt: skip
    elif backend == "slurm":
        job = {
            "partition": setup.slurm_partition,
            "time_minutes": setup.slurm_time,
            "mem": setup.slurm_mem,
            "log_directory": runs_root / SLURM_DIR,
        }
        if not setup.slurm_local:
            _check_sbatch(slurm_job_script(**job))
        cluster = slurm_cluster(**job, local=setup.slurm_local)
        script = runs_root / SLURM_DIR / "job.sh"
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(cluster.job_script(), encoding="utf-8")
        log.info("SLURM: %d jobs of this script: %s", n_workers, script)
        cluster.adapt(minimum_jobs=n_workers, maximum_jobs=n_workers)
    else:
        raise InputError(f"backend {backend!r}: not a distributed backend")
    try:
        with Client(cluster, set_as_default=False) as own:
            yield own
    finally:
        cluster.close()


def check_slurm(
    *,
    slurm_partition: str | None = None,
    slurm_time: int | None = None,
    slurm_mem: str | None = None,
    slurm_local: bool = False,
) -> None:
    """Raise ``InputError`` when sbatch is missing or rejects the sweep's job script.

    The executor calls it before it writes anything (index, run directories, report), so that a
    rejected job script leaves nothing behind; ``iterate_outcomes`` checks again before queueing.
    """
    if slurm_local:
        return
    # no log directory: dask-jobqueue would create it, and where the logs go is not checked
    _check_sbatch(
        slurm_job_script(partition=slurm_partition, time_minutes=slurm_time, mem=slurm_mem)
    )


def _check_sbatch(script: str) -> None:
    """Fail early, before any job is queued, when SLURM is not here or rejects the job script."""
    import shutil
    import tempfile

    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise InputError("--backend slurm: sbatch not found; run the sweep on a SLURM login node")
    with tempfile.NamedTemporaryFile("w", suffix=".sh", encoding="utf-8") as fh:
        fh.write(script)
        fh.flush()
        proc = subprocess.run(
            [sbatch, "--test-only", fh.name], capture_output=True, text=True, timeout=120
        )
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or ["no reason given"])[-1]
        raise InputError(f"--backend slurm: sbatch rejects the job script: {why}")


def _check_workers(client: Client, runs_root: Path) -> None:
    """Fail early when a connected worker cannot see the runs root (it must be shared)."""
    seen = client.run(os.path.isdir, str(runs_root), on_error="return")
    if not seen:
        log.info("no Dask worker connected yet; the runs wait for workers")
    blind = sorted(addr for addr, ok in seen.items() if ok is not True)
    if blind:
        raise InputError(
            f"{runs_root}: not found on worker {blind[0]} ({len(blind)} of {len(seen)} workers); "
            "the runs root must be on a filesystem the workers share"
        )


def _stop(client: Client, futures: list[Any], token: str) -> None:
    """Cancel the queued runs and stop the running ones (their run processes get SIGTERM)."""
    log.info("stopping %d runs on the cluster", len(futures))
    with contextlib.suppress(Exception):
        client.cancel(futures, force=True)
    try:
        client.run(_stop_sweep, token, STOP_GRACE_S, on_error="ignore")
    except Exception as exc:  # the cluster is gone; its runs went with it
        log.warning("could not reach the workers to stop the runs (%s)", exc)


def _record_lost(spec: RunSpec, since: str, status: str, error: str) -> Outcome:
    """Record a run whose process is gone: the engine's record if it has one, else ``status``."""
    from .engine import record_abandoned
    from .executor import Outcome

    deadline = time.monotonic() + 10
    while is_claimed(spec.run_dir) and time.monotonic() < deadline:
        time.sleep(0.05)  # a killed process's lock goes with it
    if is_claimed(spec.run_dir):
        return Outcome(spec, "busy")  # someone else runs it now: the conductor waits for it
    result = record_abandoned(spec.run_dir, status, error)
    if result is None:
        data = read_status(spec.run_dir)
        if data and (data.get("started") or "") >= since:
            result = RunResult.from_json(data, spec.run_dir)
        else:  # it died before its run began
            stamp = now()
            flows = tuple(
                FlowResult(f.name, str(f.path), f.sha256, NOT_RUN, f.notebook_name)
                for f in spec.flows
            )
            result = RunResult(
                spec.run_dir, status, stamp, stamp, 0.0, spec.config_hash, flows, error,
                sweep=spec.sweep, name=spec.name,
            )  # fmt: skip
            spec.run_dir.mkdir(parents=True, exist_ok=True)
            write_status(result)
    return Outcome(spec, "ran", result)


def _record_killed(spec: RunSpec, since: str, error: str) -> Outcome:
    """Record a run Dask gave up on: each worker death was recorded ``interrupted``; it ``died``."""
    from .executor import Outcome

    outcome = _record_lost(spec, since, DIED, error)
    if outcome.result is None or outcome.result.status != INTERRUPTED:
        return outcome
    data = read_status(spec.run_dir) or outcome.result.to_json()
    data.update(status=DIED, error=error)
    write_json(spec.run_dir / STATUS_FILE, data)
    return Outcome(spec, "ran", RunResult.from_json(data, spec.run_dir))


# -- on a worker ----------------------------------------------------------------------------------
_LOCK = threading.Lock()
#: Sweep tokens -> the run processes executing their runs on this worker now.
_ACTIVE: dict[str, set[_RunProcess]] = {}
#: Tokens of sweeps whose conductor stopped them: their queued tasks must not start.
_STOPPED: set[str] = set()
_THREAD = threading.local()
_SERVE = "from ductaflow.distributed import _serve; _serve()"


def dask_setup(worker: Any) -> None:
    """Dask preload hook (``preload=["ductaflow.distributed"]``): ignore Ctrl-C in the terminal.

    The workers of a ``dask-local`` cluster share the conductor's process group; Ctrl-C is for the
    conductor, which then stops the runs and closes the cluster itself.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_remote(payload: bytes, spec: RunSpec, token: str) -> bytes | Outcome | None:
    """The Dask task: execute one run in this worker thread's run process.

    ``payload`` is the pickled task; the answer is the pickled ``Outcome`` (the worker imports
    neither the engine nor pandas), an ``Outcome`` recorded here, or None when the sweep was
    stopped before the run began. A run whose run process dies goes again once in a new one,
    and is recorded ``died`` the second time, as a run whose ``loky`` worker dies.
    """
    since = now()
    why = ""
    for attempt in (1, 2):
        with _LOCK:
            if token in _STOPPED:
                return None  # nobody waits for it
        deadline = time.monotonic() + RECLAIM_WAIT_S
        while is_claimed(spec.run_dir) and time.monotonic() < deadline:
            time.sleep(0.1)  # a run process whose worker died is recording its run
        proc = _thread_run_process()
        with _LOCK:
            _ACTIVE.setdefault(token, set()).add(proc)
        try:
            answer = proc.run(payload, spec)
        finally:
            with _LOCK:
                _ACTIVE[token].discard(proc)
                if not _ACTIVE[token]:
                    del _ACTIVE[token]
        if answer is not None:
            return answer
        with _LOCK:
            stopped = token in _STOPPED
        if stopped:
            return _record_lost(spec, since, INTERRUPTED, "Interrupted: the sweep was stopped")
        why = proc.exit_description()
        if attempt == 1:
            log.warning("%s: its run process %s; it goes again", spec.name, why)
    error = f"DeadWorker: the run process running it died, twice: it {why}"
    return _record_lost(spec, since, DIED, error)


async def _stop_sweep(token: str, grace: float) -> int:
    """Run on every worker by the conductor: stop a sweep's runs here; how many were running."""
    with _LOCK:
        _STOPPED.add(token)
        running = list(_ACTIVE.get(token, ()))
    for proc in running:
        proc.terminate()
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        with _LOCK:
            if not _ACTIVE.get(token):
                break
        await asyncio.sleep(0.05)
    return len(running)


def _thread_run_process() -> _RunProcess:
    proc: _RunProcess | None = getattr(_THREAD, "run_process", None)
    if proc is None or not proc.alive:
        proc = _THREAD.run_process = _RunProcess()
    return proc


class _RunProcess:
    """A child process that executes runs one at a time, in its main thread, for one worker thread.

    It is in a session of its own (a signal to the worker's process group does not reach it),
    gets SIGTERM when the thread that started it ends (its worker died: the run is recorded
    ``interrupted`` and Dask runs it again elsewhere), and exits after ``RUN_PROCESS_IDLE_S``
    without work.
    """

    def __init__(self) -> None:
        from multiprocessing.connection import Connection

        to_child, inbox = os.pipe()
        outbox, from_child = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _SERVE, str(to_child), str(from_child), str(os.getpid())],
                pass_fds=(to_child, from_child),
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            os.close(to_child)
            os.close(from_child)
        self._send: Connection = Connection(inbox, readable=False)
        self._recv: Connection = Connection(outbox, writable=False)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def run(self, payload: bytes, spec: RunSpec) -> bytes | None:
        """The run's pickled outcome, or None when the process died before it answered."""
        try:
            self._send.send((payload, spec))
        except OSError:
            return None
        while True:
            if self._recv.poll(0.5):
                try:
                    return self._recv.recv_bytes()
                except (EOFError, OSError):
                    return None
            if self.proc.poll() is not None:
                with contextlib.suppress(EOFError, OSError):
                    if self._recv.poll(0):
                        return self._recv.recv_bytes()
                return None

    def terminate(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.send_signal(signal.SIGTERM)

    def exit_description(self) -> str:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        return describe_exit(self.proc.returncode)


def _serve() -> None:
    """Main of a run process: ``python -c _SERVE IN_FD OUT_FD PARENT_PID``."""
    from multiprocessing.connection import Connection

    in_fd, out_fd, parent = (int(arg) for arg in sys.argv[1:4])
    # SIGTERM when the worker dies: the engine records a run that it stops ``interrupted`` and
    # kills its kernel; an idle run process just ends.
    set_parent_death_signal(signal.SIGTERM, parent)
    inbox = Connection(in_fd, writable=False)
    outbox = Connection(out_fd, readable=False)
    with contextlib.suppress(EOFError, OSError):  # the worker is gone
        while inbox.poll(RUN_PROCESS_IDLE_S):
            payload, spec = inbox.recv()
            task = pickle.loads(payload)
            outbox.send_bytes(pickle.dumps(task(spec)))  # the task never raises


# -- SLURM --------------------------------------------------------------------------------------
def _jobqueue() -> Any:
    """``dask_jobqueue``, imported without letting it take over Ctrl-C.

    dask-jobqueue 0.9.0 sets a SIGINT handler that calls ``sys.exit()`` when it is imported
    (dask/dask-jobqueue#696, fixed by #697 after that release): Ctrl-C would then end the
    conductor with exit code 0 instead of recording its runs ``interrupted``.
    """
    if "dask_jobqueue" in sys.modules:
        return sys.modules["dask_jobqueue"]
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT) if main else None
    try:
        return _require("dask_jobqueue", "slurm")
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)


def _slurm_job_kwargs(
    partition: str | None, time_minutes: int | None, mem: str | None, log_directory: Path | None
) -> dict[str, Any]:
    """dask-jobqueue options of one job: one worker, one thread, so one run at a time."""
    import dask

    config = functools.partial(dask.config.get, default=None)
    kwargs: dict[str, Any] = {
        "cores": 1,
        "processes": 1,
        "memory": mem or config("jobqueue.slurm.memory") or SLURM_DEFAULT_MEMORY,
        "job_name": "ductaflow",
    }
    if mem:
        kwargs["job_mem"] = mem  # as given, in SLURM's syntax
    if partition:
        kwargs["queue"] = partition
    if time_minutes:
        kwargs["walltime"] = f"{time_minutes // 60:02d}:{time_minutes % 60:02d}:00"
    if log_directory is not None:
        kwargs["log_directory"] = str(log_directory)
    minutes = time_minutes or _minutes(config("jobqueue.slurm.walltime"))
    if minutes and minutes >= 5:
        # retire a worker before SLURM kills it; its run goes to another worker
        margin, stagger = max(2.0, minutes * 0.1), minutes * 0.04
        extra = list(config("jobqueue.slurm.worker-extra-args") or ())
        extra += ["--lifetime", f"{minutes - margin:.0f}m", "--lifetime-stagger", f"{stagger:.0f}m"]
        kwargs["worker_extra_args"] = extra
    return kwargs


def _minutes(walltime: str | None) -> float | None:
    """Minutes of a SLURM time limit like ``01:30:00`` or ``1-00:00:00``."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+):(\d+)(?::(\d+))?", str(walltime or ""))
    if not match:
        return None
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return days * 1440 + hours * 60 + minutes + seconds / 60


def slurm_cluster(
    *,
    partition: str | None = None,
    time_minutes: int | None = None,
    mem: str | None = None,
    log_directory: Path | None = None,
    local: bool = False,
) -> Any:
    """A ``dask_jobqueue.SLURMCluster`` whose jobs each run one worker of one thread.

    ``local=True`` submits the same job scripts to this machine: ``bash`` runs each one in a
    session of its own, and cancelling a job sends SIGTERM to that session, as ``scancel`` does.
    Other settings (account, interface, job-script prologue, ...) come from dask-jobqueue's
    configuration (``~/.config/dask/jobqueue.yaml``, key ``jobqueue.slurm``).
    """
    kwargs = _slurm_job_kwargs(partition, time_minutes, mem, log_directory)
    if local:
        kwargs["job_cls"] = _local_slurm_job()
        kwargs["scheduler_options"] = {"dashboard_address": None}
    return _jobqueue().SLURMCluster(**kwargs)


def slurm_job_script(
    *,
    partition: str | None = None,
    time_minutes: int | None = None,
    mem: str | None = None,
    log_directory: Path | None = None,
    scheduler: str = "tcp://SCHEDULER:8786",
) -> str:
    """The ``sbatch`` script each SLURM job runs, without starting a scheduler."""
    kwargs = _slurm_job_kwargs(partition, time_minutes, mem, log_directory)
    job = _jobqueue().slurm.SLURMJob(scheduler=scheduler, name="ductaflow-worker", **kwargs)
    return job.job_script()


_LOCAL_SBATCH = "from ductaflow.distributed import _local_sbatch; _local_sbatch()"
_LOCAL_SCANCEL = "from ductaflow.distributed import _local_scancel; _local_scancel()"


@functools.lru_cache(maxsize=1)
def _local_slurm_job() -> type:
    SLURMJob = _jobqueue().slurm.SLURMJob
    python = shlex.quote(sys.executable)

    class LocalSlurmJob(SLURMJob):  # type: ignore[misc]
        """A SLURM job script run here by ``bash``, for trying a setup without SLURM."""

        submit_command = f"{python} -c {shlex.quote(_LOCAL_SBATCH)}"
        cancel_command = f"{python} -c {shlex.quote(_LOCAL_SCANCEL)}"

    return LocalSlurmJob


def _local_sbatch() -> None:
    """``sbatch SCRIPT`` on this machine: start ``bash SCRIPT`` in its own session."""
    script = Path(sys.argv[-1]).read_text(encoding="utf-8")
    job = f"local{os.getpid()}"

    def directive(flag: str) -> Path | None:
        match = re.search(rf"^#SBATCH {flag} (\S+)$", script, re.MULTILINE)
        return Path(match.group(1).replace("%J", job)) if match else None

    out, err = directive("-o"), directive("-e")
    keep = (out or err or Path(os.environ.get("TMPDIR", "/tmp")) / "x").parent
    keep.mkdir(parents=True, exist_ok=True)
    copy = keep / f"{job}.sh"  # sbatch keeps its own copy too: the original is temporary
    copy.write_text(script, encoding="utf-8")
    with contextlib.ExitStack() as stack:
        stdout = stack.enter_context(open(out, "ab")) if out else subprocess.DEVNULL
        stderr = stack.enter_context(open(err, "ab")) if err else subprocess.DEVNULL
        proc = subprocess.Popen(
            ["bash", str(copy)],
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
    print(f"Submitted batch job {proc.pid}")


def _local_scancel() -> None:
    """``scancel JOB`` on this machine: SIGTERM to the job's session."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(int(sys.argv[-1]), signal.SIGTERM)
