"""Runs on SLURM: a ``dask_jobqueue.SLURMCluster`` of ``n_jobs`` one-core jobs (extra ``slurm``).

Each job runs one Dask worker of one thread, so one run at a time; the conductor on the login
node runs the scheduler. ``slurm_local=True`` runs the same job scripts on this machine with
``bash`` in place of ``sbatch``, for trying a setup without a cluster.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from .dask import DaskBackend, require
from .lifetime import JOB_END_ENV

if TYPE_CHECKING:
    from distributed import Client

__all__ = [
    "SLURM_DEFAULT_MEMORY",
    "SLURM_DIR",
    "SlurmBackend",
    "job_end_lines",
    "local_sbatch",
    "local_scancel",
    "slurm_cluster",
    "slurm_job_script",
]

log = logging.getLogger("ductaflow")

#: Memory per SLURM job when neither ``slurm_mem`` nor dask-jobqueue's config says.
SLURM_DEFAULT_MEMORY = "4GB"
#: Where, under the runs root, the SLURM job script and the workers' logs go.
SLURM_DIR = ".slurm"


class SlurmBackend(DaskBackend):
    """``n_jobs`` SLURM jobs, each a Dask worker of one thread, for ``slurm_time`` minutes.

    A worker takes no run it could not finish before its job ends: it drains, exits, and a
    fresh job takes its place (``backends/lifetime.py``).
    """

    extra = "slurm"

    def __init__(
        self,
        n_jobs: int,
        *,
        slurm_partition: str | None = None,
        slurm_time: int | None = None,
        slurm_mem: str | None = None,
        slurm_local: bool = False,
        client: Client | None = None,
        scheduler: str | None = None,
    ) -> None:
        super().__init__("slurm", n_jobs, client=client, scheduler=scheduler)
        self.partition, self.time_minutes, self.mem = slurm_partition, slurm_time, slurm_mem
        self.slurm_local = slurm_local

    def check(self) -> None:
        """``sbatch --test-only`` of the job script, before anything is written or queued."""
        if not self.slurm_local:
            # no log directory: dask-jobqueue would create it, and where logs go is not checked
            _check_sbatch(
                slurm_job_script(partition=self.partition, time_minutes=self.time_minutes,
                                 mem=self.mem)
            )  # fmt: skip

    def start_cluster(self, n_workers: int, runs_root: Path) -> Any:
        job = {
            "partition": self.partition,
            "time_minutes": self.time_minutes,
            "mem": self.mem,
            "log_directory": runs_root / SLURM_DIR,
        }
        if not self.slurm_local:
            _check_sbatch(slurm_job_script(**job))
        cluster = slurm_cluster(**job, local=self.slurm_local)
        script = runs_root / SLURM_DIR / "job.sh"
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(cluster.job_script(), encoding="utf-8")
        log.info("SLURM: %d jobs of this script: %s", n_workers, script)
        cluster.adapt(minimum_jobs=n_workers, maximum_jobs=n_workers)
        return cluster


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
        return require("dask_jobqueue", "slurm", "slurm")
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
    # the worker takes no run it cannot finish before the job's end (backends/lifetime.py)
    prologue = list(config("jobqueue.slurm.job-script-prologue") or ())
    kwargs["job_script_prologue"] = [*prologue, *job_end_lines(minutes)]
    return kwargs


def job_end_lines(minutes: float | None) -> list[str]:
    """Job-script lines that export when SLURM ends the job (``DUCTAFLOW_JOB_END``).

    SLURM's own end time (``squeue -o %e``) when it gives one, else the script's start plus
    ``minutes``; nothing when neither is known (the worker then never drains).
    """
    end = JOB_END_ENV
    lines = [
        f"unset {end}",
        '_df_end=$(squeue -h -j "${SLURM_JOB_ID:-none}" -o %e 2>/dev/null || true)',
        f'if [[ $_df_end == *T* ]]; then {end}=$(date -d "$_df_end" +%s 2>/dev/null); fi',
    ]
    if minutes:
        lines.append(f"{end}=${{{end}:-$(( $(date +%s) + {round(minutes * 60)} ))}}")
    lines.append(f'if [ -n "${{{end}:-}}" ]; then export {end}; fi; unset _df_end')
    return lines


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


_LOCAL_SBATCH = "from ductaflow.backends.slurm import local_sbatch; local_sbatch()"
_LOCAL_SCANCEL = "from ductaflow.backends.slurm import local_scancel; local_scancel()"


@functools.lru_cache(maxsize=1)
def _local_slurm_job() -> type:
    SLURMJob = _jobqueue().slurm.SLURMJob
    python = shlex.quote(sys.executable)

    class LocalSlurmJob(SLURMJob):  # type: ignore[misc]
        """A SLURM job script run here by ``bash``, for trying a setup without SLURM."""

        submit_command = f"{python} -c {shlex.quote(_LOCAL_SBATCH)}"
        cancel_command = f"{python} -c {shlex.quote(_LOCAL_SCANCEL)}"

    return LocalSlurmJob


def local_sbatch() -> None:
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
    print(f"Submitted batch job {proc.pid}")  # what sbatch prints: dask-jobqueue reads it


def local_scancel() -> None:
    """``scancel JOB`` on this machine: SIGTERM to the job's session."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(int(sys.argv[-1]), signal.SIGTERM)
