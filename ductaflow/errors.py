"""The one exception hierarchy of ductaflow.

::

    DuctaflowError
    ├── InputError (ValueError)          bad input, found before any kernel starts: CLI exit 2
    │   ├── ConfigError                  a config file, a --set override, a key
    │   ├── FlowError                    a flow file that is missing, unreadable or not Python
    │   └── SweepSpecError               a sweep spec, its CSV table, its names
    ├── ExecutionError (RuntimeError)    ductaflow itself could not run something (never a run's
    │                                    own failure: those are recorded in status.json)
    └── StorageError (OSError)           the disk refused a file ductaflow must write or read
                                         (read-only, full, permission): CLI exit 1

Each message names the file, the key and the fix, in one line.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DuctaflowError",
    "ExecutionError",
    "FlowError",
    "InputError",
    "StorageError",
    "SweepSpecError",
]


class DuctaflowError(Exception):
    """Base of every error ductaflow raises on purpose."""


class InputError(DuctaflowError, ValueError):
    """Input that cannot be run: reported before any kernel starts."""


class ConfigError(InputError):
    """A config file, a ``--set`` override or a config key is not usable."""


class FlowError(InputError):
    """A flow file is missing or cannot be read as a Python notebook in a Jupytext format."""


class SweepSpecError(InputError):
    """A sweep spec (JSON or CSV) is not valid."""


class ExecutionError(DuctaflowError, RuntimeError):
    """ductaflow could not carry out an execution (not a run's own failure)."""


class StorageError(DuctaflowError, OSError):
    """The file system refused a file ductaflow needs: read-only, full, or not permitted.

    ``errno`` is the refusal's errno (``errno.ENOSPC``, ``errno.EROFS``, ...), None when unknown.
    """

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno

    def __reduce__(self) -> tuple[type[StorageError], tuple[str, int | None]]:
        return (type(self), (str(self), self.errno))
