"""The one interface every backend has: run a sweep's task over specs, yield outcomes as runs
finish, stop what is still going.

The task (``ductaflow.task.run_task`` bound to the sweep) never raises. A backend lets out only
``KeyboardInterrupt`` (Ctrl-C, SIGTERM), ``InputError`` (it cannot start: a missing extra, no
scheduler) and, for a process pool, the error of a worker process that died; the conductor
(``ductaflow.executor``) decides what becomes of the runs then (``ductaflow.lifecycle``).
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable, Iterable, Iterator

from ..spec import Outcome, RunSpec

__all__ = ["Backend", "Task"]

#: One run in, its outcome back; never raises.
Task = Callable[[RunSpec], Outcome]


class Backend(abc.ABC):
    """Where a sweep's runs execute."""

    #: its name, as ``--backend`` takes it
    name: str = ""
    #: True when the workers share this machine's pids: they stop their runs when the
    #: conductor dies. Every worker indexes its own runs (the runs root is always shared), so a
    #: run that finishes after its conductor was killed is in the index all the same.
    local: bool = True
    #: set to stop the runs executing in this process's threads (signals reach the main thread
    #: only); the task watches it
    stop_event: threading.Event | None = None

    @abc.abstractmethod
    def run(self, specs: Iterable[RunSpec], task: Task) -> Iterator[Outcome]:
        """Outcomes of ``task`` over ``specs``, in the order the runs finish.

        A ``Sequence`` may be handed out all at once; any other iterable (an optimize sweep's
        trials, asked as they are pulled) is pulled one spec per free slot, never more than
        ``n_jobs`` ahead of the outcomes given back, so that each pull can learn from them."""

    def check(self) -> None:  # noqa: B027  (most backends have nothing to check)
        """Raise ``InputError`` when runs could not start here; called before the sweep writes
        anything (index, run directories, report), so a refusal leaves nothing behind."""

    def stop(self) -> None:  # noqa: B027  (most backends have nothing to stop)
        """Stop the runs still going after Ctrl-C (they record themselves ``interrupted``)."""
