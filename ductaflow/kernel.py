"""How a kernel comes to be, behind one small seam.

``KernelStarter.start(cwd, env)`` returns a started ``AsyncKernelManager``; ``open_kernel`` adds a
ready client and ``Kernel.stop`` kills it at once. Everything else in ductaflow sees only a
``Kernel``, so another way of starting kernels (pre-started or forked ones) is one more
``KernelStarter``.

The standard starter talks to its kernel over ``ipc`` (Unix domain sockets in a private temporary
directory) rather than TCP: there are no ports to pick, so many kernels starting at once cannot
race for one ("Address already in use", "Kernel died before replying to kernel_info"). That
directory is in the sweep's scratch directory (``ductaflow.process``), so it never outlives the
sweep, even when a killed worker could not remove it.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyter_client import AsyncKernelManager
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager, NoSuchKernel

from .errors import ConfigError, ExecutionError
from .process import describe_exit, scratch_dir

__all__ = [
    "KERNEL_ARGS",
    "STARTUP_TIMEOUT",
    "THIS_PYTHON",
    "Kernel",
    "KernelStarter",
    "StandardStarter",
    "ThisPythonSpecs",
    "check_kernel_name",
    "open_kernel",
    "socket_dir",
]

#: Seconds a kernel may take to start and answer before the run is recorded as ``died``.
STARTUP_TIMEOUT = 60.0
#: The kernel name of the interpreter ductaflow itself runs in (the default kernel).
THIS_PYTHON = "ductaflow-this-python"
#: Arguments every kernel gets: IPython's sqlite history is shared by all kernels of a user and
#: locks under parallel load, so it is kept in memory.
KERNEL_ARGS = ("--HistoryManager.hist_file=:memory:",)


class ThisPythonSpecs(KernelSpecManager):
    """Kernelspecs as usual, plus one for the interpreter ductaflow itself runs in."""

    def get_kernel_spec(self, kernel_name: str, *args: Any, **kwargs: Any) -> KernelSpec:
        if kernel_name == THIS_PYTHON:
            return KernelSpec(
                argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                display_name=f"Python {sys.version_info.major}.{sys.version_info.minor}",
                language="python",
                interrupt_mode="signal",
                metadata={"debugger": False},
            )
        return super().get_kernel_spec(kernel_name, *args, **kwargs)


def check_kernel_name(name: str | None) -> None:
    """Raise ConfigError before any run when ``--kernel NAME`` names no installed kernelspec."""
    if name is None:
        return
    try:
        KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        known = ", ".join(sorted(KernelSpecManager().find_kernel_specs())) or "none"
        raise ConfigError(
            f"--kernel {name!r}: no such kernelspec (installed: {known}); "
            "leave --kernel out to use this Python"
        ) from None


def socket_dir() -> str:
    """A private directory short enough for Unix socket paths (at most ~100 bytes), in the
    sweep's scratch directory, which goes with the sweep whatever ends it (``process``)."""
    return tempfile.mkdtemp(prefix="df-", dir=scratch_dir())


class KernelStarter(abc.ABC):
    """Starts kernel processes. Subclass it to start kernels some other way."""

    @abc.abstractmethod
    async def start(self, cwd: Path, env: Mapping[str, str], log_path: Path) -> AsyncKernelManager:
        """Start a kernel whose working directory is ``cwd``; its output goes to ``log_path``."""

    def prestart(self, env: Mapping[str, str] | None = None) -> None:  # noqa: B027
        """Begin, in the background, what makes the first ``start`` faster; return at once.

        ``env``: the kernels' environment, if not this process's plus ductaflow's. Does nothing
        here; ``WarmStarter`` starts its zygote.
        """


class StandardStarter(KernelStarter):
    """A new kernel process per run, from a kernelspec (default: this interpreter), over ipc."""

    def __init__(self, kernel_name: str | None = None) -> None:
        self.kernel_name = kernel_name

    async def start(self, cwd: Path, env: Mapping[str, str], log_path: Path) -> AsyncKernelManager:
        sock_dir = log_path.parent
        km = AsyncKernelManager(
            kernel_name=self.kernel_name or THIS_PYTHON,
            kernel_spec_manager=ThisPythonSpecs(),
            transport="ipc",
            ip=os.path.join(sock_dir, "k"),
            connection_file=os.path.join(sock_dir, "kernel.json"),
        )
        with open(log_path, "ab") as log:
            await km.start_kernel(
                cwd=str(cwd),
                env=dict(env),
                extra_arguments=list(KERNEL_ARGS),
                stdout=log,
                stderr=log,
            )
        return km


@dataclass
class Kernel:
    """A started kernel with a ready client."""

    km: AsyncKernelManager
    kc: AsyncKernelClient
    work_dir: str
    log_path: Path
    start_s: float

    def exit_description(self) -> str:
        """How the kernel process ended, for a ``died`` record (e.g. 'killed by SIGKILL')."""
        proc = getattr(self.km.provisioner, "process", None)
        return "the kernel " + describe_exit(proc.poll() if proc is not None else None)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the kernel process wrote to stdout/stderr."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])

    async def stop(self) -> None:
        """Kill the kernel now (its whole process group) and free every resource."""
        try:
            with contextlib.suppress(Exception):
                self.kc.stop_channels()
            provisioner = self.km.provisioner
            proc = getattr(provisioner, "process", None)
            if provisioner is not None and proc is not None and proc.poll() is None:
                # Kill and reap here: jupyter_client polls for the exit every 0.1 s. The
                # provisioner signals the kernel's process group its own way (a forked
                # kernel's through its zygote, which never signals a reused pid).
                with contextlib.suppress(Exception):
                    await provisioner.send_signal(signal.SIGKILL)
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(proc.wait, 5)
            with contextlib.suppress(Exception):
                await self.km.shutdown_kernel(now=True)
        finally:
            shutil.rmtree(self.work_dir, ignore_errors=True)


async def _uncancelled(start: Awaitable[AsyncKernelManager]) -> AsyncKernelManager:
    """Await a kernel start; if cancelled meanwhile, let it finish and kill what it started.

    Without this, a cancel that lands after the kernel process was spawned, but before the
    start returned its manager, would leave the kernel running with no one to stop it.
    """
    task = asyncio.ensure_future(start)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            km = await task
            await km.shutdown_kernel(now=True)
        raise


async def open_kernel(
    starter: KernelStarter,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    startup_timeout: float = STARTUP_TIMEOUT,
) -> Kernel:
    """Start a kernel and wait until it answers; raise ExecutionError if it never does."""
    work_dir = socket_dir()
    log_path = Path(work_dir) / "kernel.log"
    t0 = time.perf_counter()
    km: AsyncKernelManager | None = None
    kc: AsyncKernelClient | None = None
    try:
        environ = env if env is not None else os.environ
        km = await _uncancelled(starter.start(cwd, environ, log_path))
        kc = km.client()
        kc.start_channels()
        await asyncio.wait_for(kc.wait_for_ready(timeout=startup_timeout), startup_timeout + 5)
        kc.allow_stdin = False
    except BaseException as exc:
        kernel = Kernel(km, kc, work_dir, log_path, 0.0) if km is not None and kc else None
        tail = kernel.log_tail() if kernel else ""
        if kernel is not None:
            await kernel.stop()
        else:
            if km is not None:
                with contextlib.suppress(Exception):
                    await km.shutdown_kernel(now=True)
            shutil.rmtree(work_dir, ignore_errors=True)
        if not isinstance(exc, Exception):
            raise
        detail = f"; kernel output:\n{tail}" if tail else ""
        raise ExecutionError(f"the kernel did not start: {exc}{detail}") from exc
    return Kernel(km, kc, work_dir, log_path, time.perf_counter() - t0)
