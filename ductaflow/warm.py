"""Warm kernels: each run's kernel is forked from a "zygote" that has already imported ipykernel.

Starting a standard kernel costs about a second, most of it importing ipykernel, IPython, zmq,
tornado and debugpy. A zygote is a Python process that does those imports once (plus an optional
``preload`` list such as ``pandas``, ``numpy``), then waits. For each flow run it ``fork()``\\ s a
child that becomes the kernel: the child gets its own session and process group, the run's
working directory, environment and log file, fresh ``random`` / ``numpy.random`` state, and runs
``IPKernelApp`` exactly as ``python -m ipykernel_launcher`` would. Every run still has its own
process and clean user state; only the imported modules are shared (copy-on-write).

::

    ductaflow process (owner)            zygote (one per Python, environment and preload list)
    ──────────────────────────           ───────────────────────────────────────────────────────
    WarmStarter.start ── spawn ──────►   fork() ─► child: setsid, chdir, environ, log ─► kernel
    ForkedKernel.poll  ◄── exit codes ─ reaps its children (SIGCHLD) and reports each exit
    interrupt / kill  ── signal ─────►   killpg(kernel), only while the kernel is unreaped

Lifetimes. The owner holds one end of a socket pair; the zygote exits, killing its kernels, as
soon as that end closes (the owner exited, or was killed) or its parent changes. Each kernel asks
for ``SIGKILL`` when the zygote dies (``PR_SET_PDEATHSIG``), so a killed zygote takes its kernels
with it. Zygotes live in a ``ZygoteRegistry`` (one per process by default), closed at exit.

Fallbacks. Forking needs Linux and this interpreter; ``make_starter`` returns a
``StandardStarter`` otherwise, and a ``WarmStarter`` whose zygote cannot start launches that run's
kernel the standard way. Each reason is logged once (logger ``ductaflow``). A preload module that
cannot be imported, or that leaves a thread running (forking a process with threads is unsafe),
is left out of the zygote, also logged once.

Start-up state is shared by the kernels of one zygote, so the zygote is keyed by the complete
kernel environment (less ductaflow's per-run variables): a change of ``PYTHONPATH``,
``PYTHONHASHSEED``, ``LANG``, ``OMP_NUM_THREADS``... gets its own zygote. One difference stays:
with ``PYTHONHASHSEED`` unset, a standard kernel draws its own ``str`` hash seed, while forked
kernels inherit the zygote's.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from queue import Empty
from typing import Any

import zmq
import zmq.asyncio
from jupyter_client import AsyncKernelManager
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.provisioning import LocalProvisioner
from traitlets import DottedObjectName, Type, default

from .kernel import (
    KERNEL_ARGS,
    THIS_PYTHON,
    KernelStarter,
    StandardStarter,
    ThisPythonSpecs,
    socket_dir,
)
from .spec import valid_preload
from .zygotes import (
    ForkedKernel,
    WarmUnavailable,
    ZygoteRegistry,
    default_registry,
    launch_env,
    note_once,
)

__all__ = [
    "KernelsAhead",
    "WarmStarter",
    "WarmUnavailable",
    "ZygoteRegistry",
    "default_registry",
    "make_starter",
    "warm_unavailable_reason",
]

log = logging.getLogger("ductaflow")


class _ForkProvisioner(LocalProvisioner):
    """Launches the kernel by asking a zygote to fork it; the standard way if it cannot.

    With ``ahead``, a kernel forked earlier for exactly this launch (``KernelsAhead``) is
    adopted instead: same zygote, working directory, environment and arguments.
    """

    registry: ZygoteRegistry
    preload: tuple[str, ...] = ()
    log_path: Path
    ahead: KernelsAhead | None = None
    #: the kernel forked ahead that this one is
    adopted: _Ahead | None = None

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> dict[str, Any]:
        env = launch_env(kwargs.get("env") or os.environ)
        cwd = str(kwargs.get("cwd") or os.getcwd())
        try:
            args = _launcher_args(cmd)
            ahead = self.ahead.take(cwd) if self.ahead is not None else None
            if ahead is not None and ahead.fits(self.preload, args, cwd, env):
                self.adopted, self.process = ahead, ahead.kernel
                with contextlib.suppress(OSError):  # the kernel writes on, to the run's name
                    os.replace(ahead.log_path, self.log_path)
                self.pid = self.pgid = ahead.kernel.pid
                self.cwd = cwd
                log.debug("warm kernels: kernel %d, forked ahead, runs in %s", self.pid, cwd)
                return ahead.connection_info
            if ahead is not None:
                ahead.discard()
            zygote = self.registry.running(env, self.preload) or await asyncio.to_thread(
                self.registry.zygote_for, env, self.preload
            )
            # in this thread, so that a cancelled start cannot leave an unknown kernel behind
            self.process = zygote.spawn(args, cwd, env, self.log_path)
        except WarmUnavailable as exc:
            why = f"warm kernels unavailable, starting kernels the standard way: {exc}"
            note_once(logging.WARNING, why)
            with open(self.log_path, "ab") as klog:
                return await super().launch_kernel(
                    cmd, **{**kwargs, "stdout": klog, "stderr": klog}
                )
        self.pid = self.pgid = self.process.pid
        self.cwd = cwd
        return self.connection_info

    async def send_signal(self, signum: int) -> None:
        if isinstance(self.process, ForkedKernel):
            self.process.send_signal(signum)
        else:
            await super().send_signal(signum)

    async def cleanup(self, restart: bool = False) -> None:
        await super().cleanup(restart)
        if self.adopted is not None and not restart:
            shutil.rmtree(self.adopted.work_dir, ignore_errors=True)  # its sockets and files


@dataclass
class _Ahead:
    """A kernel forked before its run began, waiting for that run to adopt it."""

    kernel: ForkedKernel
    #: the preload list of its zygote, and the launcher arguments, cwd and environment it
    #: was forked with
    preload: tuple[str, ...]
    args: list[str]
    cwd: str
    env: dict[str, str]
    work_dir: str
    connection_info: dict[str, Any]
    #: the manager whose connection file the kernel reads (it removes the file when collected)
    km: Any
    #: ``cwd`` was made for it (removed with it, if still empty)
    made: bool = False

    @property
    def log_path(self) -> str:
        return os.path.join(self.work_dir, "kernel.log")

    def fits(
        self, preload: Sequence[str], args: Sequence[str], cwd: str, env: Mapping[str, str]
    ) -> bool:
        """Whether this kernel is the one that launch would fork (its own connection file
        aside): the same zygote (environment and preload list), and still running."""
        same_args = args[:1] == self.args[:1] == ["-f"] and list(args[2:]) == self.args[2:]
        same = tuple(preload) == self.preload and cwd == self.cwd and env == self.env
        return same and same_args and self.kernel.poll() is None

    def discard(self) -> None:
        """Kill the kernel (nobody adopted it) and remove its files."""
        with contextlib.suppress(Exception):
            self.kernel.kill()
            self.kernel.wait(5)
        shutil.rmtree(self.work_dir, ignore_errors=True)
        if self.made:
            with contextlib.suppress(OSError):  # only if nothing was written there since
                os.rmdir(self.cwd)


class KernelsAhead:
    """Kernels forked ahead of their runs, so that a run never waits for its kernel to start.

    While a run executes, the kernel of a run next in line is forked (``start``) in that run's
    directory, with that run's environment, exactly as its own start would fork it; when the
    run starts, its ``WarmStarter`` adopts it. Each run still gets its own fresh kernel process.
    One that is not adopted (the run was busy elsewhere, skipped, failed before its kernel,
    the sweep stopped) is killed: by ``drop`` when its run ends, or by ``close``.
    """

    def __init__(self, preload: Sequence[str] = (), registry: ZygoteRegistry | None = None):
        self.preload = valid_preload(preload)
        self.registry = registry or default_registry()
        self._kernels: dict[str, _Ahead] = {}
        #: directories a kernel was forked for (or failed to be), never forked for again
        self._tried: set[str] = set()
        self._lock = threading.Lock()
        self._closed = False

    def start(self, cwd: Path, env: Mapping[str, str]) -> bool:
        """Fork, in ``cwd`` (made if need be, removed again if its kernel is not adopted), the
        kernel that ``WarmStarter.start(cwd, env, ...)`` will adopt. False when the zygote does
        not run yet (this never waits for it); True when it is forked, or will not be."""
        where = str(cwd)
        with self._lock:
            if where in self._kernels or where in self._tried or self._closed:
                return True
        kernel_env = launch_env({k: v for k, v in env.items() if k != "PYTHONEXECUTABLE"})
        if self.registry.running(kernel_env, self.preload) is None:
            return False
        with self._lock:
            self._tried.add(where)
        try:
            cwd.mkdir()
            made = True
        except FileExistsError:
            made = False
        except OSError:
            return True  # the run itself will say why
        work_dir = socket_dir()
        km = _manager(Path(work_dir))
        km.provisioner = _ForkProvisioner(kernel_id=None, kernel_spec=km.kernel_spec, parent=km)
        try:  # what a start does before its launch: connection file, command, environment
            cmd, kw = _run_apart(km.pre_start_kernel, cwd=where, env=dict(env),
                                 extra_arguments=[*KERNEL_ARGS])  # fmt: skip
            launch = launch_env(kw["env"])
            zygote = self.registry.zygote_for(launch, self.preload)  # it runs: no wait
            args = _launcher_args(cmd)
            kernel = zygote.spawn(args, where, launch, Path(work_dir) / "kernel.log")
        except Exception as exc:  # e.g. OSError
            log.debug("warm kernels: no kernel forked ahead for %s: %s", where, exc)
            shutil.rmtree(work_dir, ignore_errors=True)
            if made:
                with contextlib.suppress(OSError):
                    os.rmdir(where)
            return True
        info = km.get_connection_info()
        ahead = _Ahead(kernel, self.preload, args, where, launch, work_dir, info, km, made)
        with self._lock:
            if not self._closed:
                self._kernels[where] = ahead
                return True
        ahead.discard()
        return True

    def take(self, cwd: str) -> _Ahead | None:
        """The kernel forked ahead for ``cwd``, now the caller's to adopt or discard."""
        with self._lock:
            return self._kernels.pop(cwd, None)

    def drop(self, cwd: Path) -> None:
        """Kill the kernel forked ahead for ``cwd``, if its run did not adopt it."""
        ahead = self.take(str(cwd))
        if ahead is not None:
            ahead.discard()

    def close(self) -> None:
        """Kill every kernel forked ahead and not adopted; fork no more."""
        with self._lock:
            self._closed = True
            left, self._kernels = list(self._kernels.values()), {}
        for ahead in left:
            ahead.discard()


def _launcher_args(cmd: Sequence[str]) -> list[str]:
    """ARGS of ``<this python> -m ipykernel_launcher ARGS``; WarmUnavailable for other commands."""
    if len(cmd) < 3 or cmd[0] != sys.executable or list(cmd[1:3]) != ["-m", "ipykernel_launcher"]:
        raise WarmUnavailable(f"cannot fork the kernel command {' '.join(cmd)!r}")
    return list(cmd[3:])


class _PromptClient(AsyncKernelClient):
    """A client that is ready as soon as the kernel has answered, without a fixed wait.

    jupyter_client's ``wait_for_ready`` takes the ``kernel_info`` reply, then waits for 0.2 s of
    IOPub silence to flush what the kernel printed while starting. IOPub is ordered, so receiving
    the idle status that ends our own ``kernel_info`` request proves the same, at once.
    """

    @default("context")
    def _context_default(self) -> zmq.asyncio.Context:
        self._created_context = True
        context = zmq.asyncio.Context()
        # the kernel binds its sockets a moment after the client connects: retry every 10 ms,
        # not every 100 ms
        context.setsockopt(zmq.RECONNECT_IVL, 10)
        return context

    async def wait_for_ready(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout if timeout is not None else float("inf"))
        while True:
            msg_id = self.kernel_info()
            answer = await self._answer(msg_id, min(1.0, max(0.0, deadline - time.monotonic())))
            if answer == "ready":
                return
            if answer == "replied":  # no idle status seen (IOPub was late to connect?)
                log.debug("warm kernels: no IOPub status after kernel_info; waiting as usual")
                left = max(0.1, deadline - time.monotonic())
                return await super().wait_for_ready(timeout=left)  # the usual check, and flush
            if not await self._async_is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kernel didn't respond in {timeout:g} seconds")

    async def _answer(self, msg_id: str, wait: float) -> str:
        """'ready' when the reply to ``msg_id`` and then its idle status on IOPub came within
        ``wait`` seconds; else 'replied' or 'nothing'."""
        end = time.monotonic() + wait
        replied = False
        while True:
            left = end - time.monotonic()
            channel = self.iopub_channel if replied else self.shell_channel
            try:
                if left <= 0:
                    raise Empty
                msg = await channel.get_msg(timeout=left)
            except Empty:
                return "replied" if replied else "nothing"
            if msg["parent_header"].get("msg_id") != msg_id:
                continue  # an answer to an earlier attempt, or what the kernel printed at start
            if not replied and msg["msg_type"] == "kernel_info_reply":
                self._handle_kernel_info_reply(msg)
                replied = True
            elif replied and msg["msg_type"] == "status":
                if msg["content"].get("execution_state") == "idle":
                    return "ready"


class _WarmKernelManager(AsyncKernelManager):
    """Polls a dying kernel every 10 ms, not 100 ms (a kill is over in a few ms); prompt client."""

    client_class = DottedObjectName("ductaflow.warm._PromptClient")
    client_factory = Type(_PromptClient, klass=AsyncKernelClient)

    async def _async_wait(self, pollinterval: float = 0.01) -> None:
        await super()._async_wait(pollinterval)


class WarmStarter(KernelStarter):
    """Kernels forked from a zygote that has imported ipykernel and ``preload`` already.

    Each run gets its own kernel process, working directory, environment and random state, as
    with ``StandardStarter``; the imports are done once per zygote instead of once per kernel.
    Pickles as its preload list: in another process it uses that process's default registry.
    """

    def __init__(
        self,
        preload: Sequence[str] = (),
        *,
        registry: ZygoteRegistry | None = None,
        ahead: KernelsAhead | None = None,
    ) -> None:
        self.preload = valid_preload(preload)
        self.registry = registry
        #: kernels forked ahead of their runs, adopted by ``start`` (not pickled)
        self.ahead = ahead

    def __reduce__(self) -> tuple[Any, ...]:
        return (WarmStarter, (self.preload,))

    def prestart(self, env: Mapping[str, str] | None = None) -> None:
        """Begin starting this starter's zygote in the background and return at once, so that
        it boots while the sweep is expanded and planned (``ZygoteRegistry.prestart``)."""
        (self.registry or default_registry()).prestart(env, self.preload)

    def __repr__(self) -> str:
        return f"WarmStarter(preload={list(self.preload)!r})"

    async def start(self, cwd: Path, env: Mapping[str, str], log_path: Path) -> AsyncKernelManager:
        km = _manager(log_path.parent)
        provisioner = _ForkProvisioner(kernel_id=None, kernel_spec=km.kernel_spec, parent=km)
        provisioner.registry = self.registry or default_registry()
        provisioner.preload = self.preload
        provisioner.log_path = log_path
        provisioner.ahead = self.ahead
        km.provisioner = provisioner
        try:
            await km.start_kernel(cwd=str(cwd), env=dict(env), extra_arguments=list(KERNEL_ARGS))
        except BaseException:  # e.g. cancelled after the fork: nobody else would kill it
            if provisioner.process is not None:
                with contextlib.suppress(Exception):
                    provisioner.process.kill()
            raise
        return km


def _run_apart(function: Callable[..., Awaitable[Any]], **kwargs: Any) -> Any:
    """``function(**kwargs)`` awaited in an event loop of its own; in a thread of its own when
    this one runs a loop already (a sweep conducted from a notebook)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(function(**kwargs))
    with concurrent.futures.ThreadPoolExecutor(1) as aside:
        return aside.submit(lambda: asyncio.run(function(**kwargs))).result()


def _manager(sock_dir: Path) -> _WarmKernelManager:
    """A kernel manager for this Python's kernel, over ipc in ``sock_dir``."""
    return _WarmKernelManager(
        kernel_name=THIS_PYTHON,
        kernel_spec_manager=ThisPythonSpecs(),
        transport="ipc",
        ip=os.path.join(sock_dir, "k"),
        connection_file=os.path.join(sock_dir, "kernel.json"),
    )


def warm_unavailable_reason(kernel: str | None = None) -> str | None:
    """Why kernels cannot be forked here (for ``--kernel kernel``), or None when they can."""
    if not sys.platform.startswith("linux"):
        return f"forking kernels is only done on Linux, not {sys.platform}"
    if kernel is not None and kernel != THIS_PYTHON:
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

        try:
            spec = KernelSpecManager().get_kernel_spec(kernel)
        except NoSuchKernel:
            return f"--kernel {kernel!r}: no such kernelspec"
        argv = list(spec.argv)
        if argv and argv[0] in ("python", f"python{sys.version_info[0]}",
                                "python{}.{}".format(*sys.version_info[:2])):  # fmt: skip
            argv[0] = sys.executable  # as jupyter_client runs it
        same = argv == [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        if not same or spec.env:
            return f"--kernel {kernel!r} is not this Python ({sys.executable}) running ipykernel"
    return None


def make_starter(kernel: str | None, warm: bool, preload: Sequence[str] = ()) -> KernelStarter:
    """A ``WarmStarter`` when ``warm`` and kernels can be forked here, else a ``StandardStarter``.

    The reason for a fallback is logged once. ``preload`` only applies to warm kernels.
    """
    if warm:
        why = warm_unavailable_reason(kernel)
        if why is None:
            return WarmStarter(preload)
        note_once(logging.INFO, f"warm kernels off: {why}; kernels start the standard way")
    return StandardStarter(kernel)
