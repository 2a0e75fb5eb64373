"""Where a sweep's runs execute, behind one small interface (``base.Backend``).

- ``threading`` (``threads``): threads of the conductor; warm runs, one zygote forks every kernel
- ``loky``, ``multiprocessing`` (``pool``): a joblib pool of worker processes
- ``sequential``, or ``-j 1`` (``pool``): one run after another, in the conductor
- ``dask``, ``dask-local`` (``dask``): one Dask task per run, in a reused run process
  (``runprocess``)
- ``slurm`` (``slurm``): dask-jobqueue's SLURMCluster (or its job scripts run here by bash)

``get_backend`` chooses one; the modules that need Dask, joblib or the engine import them only
when runs really execute.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from ..errors import InputError
from .base import Backend, Task

__all__ = [
    "BACKENDS",
    "DISTRIBUTED_BACKENDS",
    "JOBLIB_BACKENDS",
    "Backend",
    "Task",
    "get_backend",
    "in_process",
]

#: backends on this machine; None: joblib's current one (``parallel_config``), else threads for
#: warm runs and loky for standard ones. ``threading`` is ductaflow's own pool (it stops runs).
JOBLIB_BACKENDS = ("loky", "threading", "multiprocessing", "sequential")
#: backends on a Dask cluster (optional extras)
DISTRIBUTED_BACKENDS = ("dask", "dask-local", "slurm")
BACKENDS = JOBLIB_BACKENDS + DISTRIBUTED_BACKENDS
#: what ``backend_options`` may hold (the Dask and SLURM backends' settings)
OPTIONS = (
    "client",
    "scheduler",
    "slurm_partition",
    "slurm_time",
    "slurm_mem",
    "slurm_local",
)


def get_backend(
    name: str | None, n_jobs: int, *, warm: bool, options: Mapping[str, Any] | None = None
) -> Backend:
    """The backend called ``name``; with None, the one joblib's context asks for, else threads
    for warm runs and loky for standard ones. Raises ``InputError`` for an unknown name or
    option.

    Warm runs go on threads of this process: their kernels are forked by one zygote, so worker
    processes would only add their own start-up, and a zygote each (``benchmarks/README.md``).
    Inside ``joblib.parallel_config(backend="dask")``, runs are submitted through that backend's
    client: joblib's dask backend leaves runs going on the cluster after Ctrl-C and, on a
    cluster of one thread, runs every task in this process; ``backends.dask`` does neither.
    """
    if name is not None and name not in BACKENDS:
        raise InputError(f"backend {name!r}: choose from {', '.join(BACKENDS)}")
    opts = dict(options or {})
    unknown = sorted(set(opts) - set(OPTIONS))
    if unknown:
        raise InputError(f"backend option {unknown[0]!r}: choose from {', '.join(OPTIONS)}")
    if name is None:
        name, opts = _from_joblib(warm, opts)
    if name == "sequential" or (n_jobs == 1 and name in (None, "loky", "threading")):
        from .pool import SequentialBackend

        return SequentialBackend()
    if name == "threading":
        from .threads import ThreadsBackend

        return ThreadsBackend(n_jobs)
    if name in ("dask", "dask-local"):
        from .dask import DaskBackend

        return DaskBackend(name, n_jobs, client=opts.get("client"), scheduler=opts.get("scheduler"))
    if name == "slurm":
        from .slurm import SlurmBackend

        return SlurmBackend(n_jobs, **opts)
    from .pool import JoblibBackend

    return JoblibBackend(n_jobs, name)


def in_process(name: str | None, n_jobs: int, *, warm: bool) -> bool:
    """Whether ``get_backend(name, n_jobs, warm=warm)`` runs the runs in this process."""
    if name is None:
        name, _ = _from_joblib(warm, {})
    return name in ("threading", "sequential") or (n_jobs == 1 and name in (None, "loky"))


def _from_joblib(warm: bool, options: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """The backend joblib's current context asks for (``parallel_config``).

    Without joblib imported, no context of it can be active: the default, without importing
    joblib (a quarter of a second; the threads of warm runs never need it).
    """
    if "joblib" not in sys.modules:
        return ("threading" if warm else None), options
    from joblib.parallel import get_active_backend

    active, _ = get_active_backend()
    kind = type(active).__name__
    client = getattr(active, "client", None)
    if kind == "DaskDistributedBackend" and client is not None:
        return "dask", {**options, "client": client}
    if kind == "ThreadingBackend" or (warm and kind == "LokyBackend"):
        return "threading", options
    return None, options
