"""ductaflow: parallel parameter sweeps of notebook flows.

The public API, by what a user does with it:

- in a flow: ``parameters``, ``record``;
- one run: ``run_flow`` -> ``RunResult``; ``RunOptions``, ``RunSpec``, ``KernelStarter``;
- a sweep: ``Sweep``, ``SweepOptions``, ``execute_sweep`` -> ``SweepReport``, ``run_sweep``;
- results: ``load_index``, ``write_report``, ``load_study``; on SLURM, ``slurm_job_script``;
- errors: ``DuctaflowError`` and the tree under it (``ductaflow.errors``).

Importing ductaflow is cheap (flows import it inside kernels); the parts that need nbclient,
joblib or pandas are loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DuctaflowError",
    "ExecutionError",
    "FlowError",
    "InputError",
    "KernelStarter",
    "RunInterrupted",
    "RunOptions",
    "RunResult",
    "RunSpec",
    "StorageError",
    "Sweep",
    "SweepOptions",
    "SweepReport",
    "SweepSpecError",
    "__version__",
    "execute_sweep",
    "load_index",
    "load_study",
    "parameters",
    "record",
    "run_flow",
    "run_sweep",
    "slurm_job_script",
    "write_report",
]

_LAZY = {
    "ConfigError": "errors",
    "DuctaflowError": "errors",
    "ExecutionError": "errors",
    "FlowError": "errors",
    "InputError": "errors",
    "StorageError": "errors",
    "SweepSpecError": "errors",
    "KernelStarter": "kernel",
    "RunInterrupted": "engine",
    "run_flow": "engine",
    "RunOptions": "spec",
    "RunResult": "spec",
    "RunSpec": "spec",
    "Sweep": "sweep",
    "SweepOptions": "executor",
    "SweepReport": "executor",
    "execute_sweep": "executor",
    "run_sweep": "executor",
    "load_index": "index",
    "load_study": "study",
    "write_report": "report",
    "slurm_job_script": "backends.slurm",
    "parameters": "flowapi",
    "record": "flowapi",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ductaflow' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
