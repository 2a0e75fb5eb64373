"""The public API: exactly the names the README documents, each importable from ``ductaflow``."""

from __future__ import annotations

import ductaflow

PUBLIC = {
    # in a flow
    "parameters",
    "record",
    # one run
    "run_flow",
    "RunOptions",
    "RunResult",
    "RunSpec",
    "RunInterrupted",
    "KernelStarter",
    # a sweep
    "Sweep",
    "SweepOptions",
    "SweepReport",
    "execute_sweep",
    "run_sweep",
    # results
    "load_index",
    "write_report",
    "load_study",
    "slurm_job_script",
    # errors
    "DuctaflowError",
    "InputError",
    "ConfigError",
    "FlowError",
    "SweepSpecError",
    "ExecutionError",
    "StorageError",
    "__version__",
}


def test_the_public_names_are_the_documented_ones() -> None:
    assert set(ductaflow.__all__) == PUBLIC
    assert len(ductaflow.__all__) == len(PUBLIC)  # no name listed twice


def test_each_public_name_resolves() -> None:
    for name in ductaflow.__all__:
        assert getattr(ductaflow, name) is not None, name
    assert issubclass(ductaflow.ExecutionError, ductaflow.DuctaflowError)
    assert issubclass(ductaflow.StorageError, OSError)


def test_the_version_is_the_installed_one() -> None:
    from importlib.metadata import version

    assert ductaflow.__version__ == version("ductaflow")
