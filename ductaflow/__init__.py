"""ductaflow: parallel parameter sweeps of notebook flows.

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
    "FlowError",
    "InputError",
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
    "parameters",
    "record",
    "run_flow",
    "run_sweep",
    "slurm_job_script",
]

_LAZY = {
    "ConfigError": "errors",
    "DuctaflowError": "errors",
    "FlowError": "errors",
    "InputError": "errors",
    "StorageError": "errors",
    "SweepSpecError": "errors",
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
