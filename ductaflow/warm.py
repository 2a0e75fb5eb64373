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
    _ForkedKernel.poll  ◄── exit codes ─ reaps its children (SIGCHLD) and reports each exit
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
import atexit
import contextlib
import gc
import importlib
import importlib.util
import json
import logging
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from queue import Empty
from typing import Any

import zmq
import zmq.asyncio
from jupyter_client import AsyncKernelManager
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.provisioning import LocalProvisioner
from traitlets import DottedObjectName, Type, default

from .errors import ConfigError
from .kernel import (
    _KERNEL_ARGS,
    _THIS_PYTHON,
    KernelStarter,
    StandardStarter,
    _ThisPythonSpecs,
)
from .process import describe_exit, set_parent_death_signal

__all__ = [
    "WarmStarter",
    "WarmUnavailable",
    "ZygoteRegistry",
    "default_registry",
    "make_starter",
    "warm_unavailable_reason",
]

log = logging.getLogger("ductaflow")

#: Seconds a zygote may take to import everything and say it is ready.
ZYGOTE_STARTUP_TIMEOUT = 120.0
#: Seconds to wait for a zygote's answer to a fork request.
SPAWN_TIMEOUT = 30.0
#: Zygotes one registry keeps at most (one per distinct kernel environment and preload list).
MAX_ZYGOTES = 4
#: Times a zygote may die (be killed) and be started again before kernels start the standard way.
MAX_ZYGOTE_DEATHS = 3
#: Environment variables that differ from run to run; they are not part of a zygote's key.
_PER_RUN_ENV = re.compile(r"DUCTAFLOW_\w*")
#: What ``IPKernelApp`` sets when MPLBACKEND is unset; a preloaded matplotlib must see it too.
_INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
#: A dotted module name, as ``--preload`` takes them.
_MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
#: Modules a started kernel has imported; the zygote imports them before it forks.
_KERNEL_MODULES = (
    "ipykernel.kernelapp",
    "ipykernel.ipkernel",
    "ipykernel.zmqshell",
    "ipykernel.comm",
    "ipykernel.debugger",
    "ipykernel.eventloops",
    "IPython.core.completer",
    "IPython.core.completerlib",
    "IPython.core.debugger",
    "IPython.core.logger",
    "IPython.core.oinspect",
    "IPython.extensions.storemagic",
    "IPython.utils.wildcard",
    "tornado.platform.asyncio",
    "debugpy",
    "debugpy.server.api",
    "psutil",
    "sqlite3",
    "pdb",
    "faulthandler",
    "ctypes",
    "random",
)


class WarmUnavailable(RuntimeError):
    """A zygote cannot be used (here, or for this environment); kernels start the standard way."""


# -- the owner's side ----------------------------------------------------------------------------
class _ForkedKernel:
    """A kernel process forked by a zygote, with the part of ``subprocess.Popen`` jupyter uses.

    It is the zygote's child, not ours: its exit code comes from the zygote, and signals go
    through the zygote, which can only signal a pid it has not reaped (so never a reused pid).
    """

    stdin = stdout = stderr = None

    def __init__(self, zygote: _Zygote, pid: int) -> None:
        self.zygote = zygote
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """The exit code (negative: killed by that signal), or None while the kernel runs."""
        if self.returncode is None:
            self.zygote.pump(0.0)
            if self.returncode is None and self.zygote.gone and not _pid_alive(self.pid):
                self.returncode = -signal.SIGKILL  # the zygote died, and the kernel with it
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the kernel to end; raise TimeoutError after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            left = 0.05 if deadline is None else min(0.05, deadline - time.monotonic())
            if left <= 0:
                raise TimeoutError(f"kernel {self.pid} still running after {timeout} s")
            if self.zygote.gone:
                time.sleep(min(left, 0.01))
            else:
                self.zygote.pump(left)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, signum: int) -> None:
        """Signal the kernel's process group (the kernel and anything it started)."""
        if self.poll() is None:
            self.zygote.signal(self.pid, signum)
        else:  # what the kernel started may outlive it; LocalProvisioner signals it too
            with contextlib.suppress(OSError):
                os.killpg(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


def _pid_alive(pid: int) -> bool:
    """Whether a process that is not our child still runs (a zombie counts as ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rpartition(b")")[2].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


class _Zygote:
    """The owner's handle on one zygote process and the socket it listens on."""

    def __init__(
        self, proc: subprocess.Popen[bytes], sock: socket.socket, work_dir: str, preload: list[str]
    ) -> None:
        self.proc = proc
        self.sock = sock
        self.work_dir = work_dir
        self.preload = preload
        self.gone = False
        self.info: dict[str, Any] = {}
        self.last_used = time.monotonic()
        self._lock = threading.RLock()
        self._buffer = b""
        self._replies: dict[int, dict[str, Any]] = {}
        self._kernels: dict[int, _ForkedKernel] = {}
        self._next_id = 0
        self._poller = select.poll()
        self._poller.register(sock, select.POLLIN)

    @classmethod
    def start(cls, env: Mapping[str, str], preload: Sequence[str], timeout: float) -> _Zygote:
        """Start a zygote and wait until it has imported everything (or refused a module)."""
        work_dir = tempfile.mkdtemp(prefix="df-zygote-")
        log_path = os.path.join(work_dir, "zygote.log")
        ours, theirs = socket.socketpair()
        zygote_env = {k: v for k, v in env.items() if not _PER_RUN_ENV.fullmatch(k)}
        zygote_env.setdefault("MPLBACKEND", _INLINE_BACKEND)
        package_root = str(Path(__file__).resolve().parent.parent)
        argv = [
            sys.executable, "-c", _BOOT, str(theirs.fileno()), json.dumps(list(preload)),
            str(os.getpid()), package_root,
        ]  # fmt: skip
        try:
            with open(log_path, "ab") as zlog:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=zlog,
                    stderr=zlog,
                    env=zygote_env,
                    pass_fds=[theirs.fileno()],
                    cwd="/",  # pins no directory; kernels move to their run's
                    start_new_session=True,  # Ctrl-C in a terminal goes to ductaflow, not here
                )
        except OSError as exc:
            ours.close()
            shutil.rmtree(work_dir, ignore_errors=True)
            raise WarmUnavailable(f"the zygote could not be started: {exc}") from None
        finally:
            theirs.close()
        zygote = cls(proc, ours, work_dir, list(preload))
        try:
            zygote.info = zygote._wait_for(lambda m: m.get("op") in ("ready", "refused"), timeout)
        except WarmUnavailable:
            zygote.close()
            raise
        return zygote

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def idle(self) -> bool:
        """No kernel of this zygote is running."""
        with self._lock:
            return not self._kernels

    def alive(self) -> bool:
        self.pump(0.0)
        return not self.gone and self.proc.poll() is None

    def describe_end(self) -> str:
        """How the zygote ended, with the end of its log."""
        how = describe_exit(self.proc.poll())
        try:
            with open(os.path.join(self.work_dir, "zygote.log"), encoding="utf-8") as zlog:
                tail = zlog.read().strip().splitlines()[-5:]
        except OSError:
            tail = []
        return f"the zygote (pid {self.pid}) {how}" + (": " + " | ".join(tail) if tail else "")

    def spawn(
        self, args: Sequence[str], cwd: str, env: Mapping[str, str], log_path: Path
    ) -> _ForkedKernel:
        """Fork a kernel: ``python -m ipykernel_launcher *args`` in ``cwd`` with ``env``."""
        with self._lock:
            self._next_id += 1
            rid = self._next_id
            request = {
                "op": "spawn", "id": rid, "args": list(args), "cwd": cwd, "env": dict(env),
                "log": str(log_path),
            }  # fmt: skip
            self._send(request)
            reply = self._wait_for(lambda m: m.get("id") == rid, SPAWN_TIMEOUT)
            if "error" in reply:
                if reply.get("kind") == "os":
                    raise OSError(reply["error"])
                raise WarmUnavailable(reply["error"])
            kernel = _ForkedKernel(self, int(reply["pid"]))
            self._kernels[kernel.pid] = kernel
            self.last_used = time.monotonic()
            return kernel

    def signal(self, pid: int, signum: int) -> None:
        """Have the zygote signal a kernel's process group (directly, if the zygote is gone)."""
        with self._lock:
            if not self.gone:
                with contextlib.suppress(WarmUnavailable):
                    self._send({"op": "signal", "pid": pid, "sig": int(signum)})
                    return
        with contextlib.suppress(OSError):  # the kernel died with the zygote; its group may not
            os.killpg(pid, signum)

    def pump(self, timeout: float) -> None:
        """Read what the zygote has sent (exit codes, replies), waiting at most ``timeout`` s."""
        with self._lock:
            if self.gone:
                return
            try:
                ready = self._poller.poll(max(0, int(timeout * 1000)))
                data = self.sock.recv(1 << 16) if ready else None
            except OSError:
                data = b""
            if data is None:
                return
            if not data:
                self.gone = True
                return
            self._buffer += data
            *lines, self._buffer = self._buffer.split(b"\n")
            for line in lines:
                message = json.loads(line)
                if message.get("op") == "exit":
                    kernel = self._kernels.pop(int(message["pid"]), None)
                    if kernel is not None:
                        kernel.returncode = int(message["code"])
                elif "id" in message:
                    self._replies[int(message["id"])] = message
                else:
                    self._replies[0] = message  # the start-up report

    def _send(self, message: Mapping[str, Any]) -> None:
        try:
            self.sock.sendall(json.dumps(message).encode() + b"\n")
        except OSError:
            self.gone = True
            raise WarmUnavailable(self.describe_end()) from None

    def _wait_for(self, match: Any, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                for key, message in list(self._replies.items()):
                    if match(message):
                        return self._replies.pop(key)
                if self.gone:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self.proc.wait(1.0)
                    raise WarmUnavailable(self.describe_end())
                left = deadline - time.monotonic()
                if left <= 0:
                    raise WarmUnavailable(
                        f"the zygote (pid {self.pid}) did not answer in {timeout:g} s"
                    )
                self.pump(min(left, 1.0))

    def close(self, timeout: float = 5.0) -> None:
        """Stop the zygote; it kills the kernels it forked before it exits."""
        with self._lock:
            self.gone = True
            with contextlib.suppress(OSError):
                self.sock.close()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.work_dir, ignore_errors=True)

    def forget(self) -> None:
        """In a forked copy of the owner: drop this handle without touching the zygote."""
        with contextlib.suppress(OSError):
            self.sock.close()
        self.proc.returncode = 0  # not our child here: never wait for it


def _zygote_key(env: Mapping[str, str], preload: Sequence[str]) -> tuple[Any, ...]:
    kept = tuple(sorted((k, v) for k, v in env.items() if not _PER_RUN_ENV.fullmatch(k)))
    return (sys.executable, kept, tuple(preload))


_NOTED: set[str] = set()
_NOTED_LOCK = threading.Lock()


def _note_once(level: int, message: str) -> None:
    """Log ``message`` the first time this process sees it."""
    with _NOTED_LOCK:
        if message in _NOTED:
            return
        _NOTED.add(message)
    log.log(level, message)


class ZygoteRegistry:
    """The zygotes of this process, one per (Python, kernel environment, preload list).

    A zygote starts on first use, is started again if it died, and is closed (with its kernels) by
    ``close()``, at interpreter exit, or when this process dies. After a ``fork()`` of this
    process, the child sees an empty registry.
    """

    def __init__(
        self, max_zygotes: int = MAX_ZYGOTES, startup_timeout: float = ZYGOTE_STARTUP_TIMEOUT
    ) -> None:
        self.max_zygotes = max_zygotes
        self.startup_timeout = startup_timeout
        self._zygotes: dict[tuple[Any, ...], _Zygote] = {}
        self._failed: dict[tuple[Any, ...], str] = {}
        self._deaths: dict[tuple[Any, ...], int] = {}
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._hooked = False

    def running(self, env: Mapping[str, str], preload: Sequence[str] = ()) -> _Zygote | None:
        """The zygote for ``env`` and ``preload`` if it runs now, without starting one."""
        key = _zygote_key(env, preload)
        with self._lock:
            zygote = self._zygotes.get(key) if self._pid == os.getpid() else None
            if zygote is None or not zygote.alive():
                return None
            zygote.last_used = time.monotonic()
            return zygote

    def zygote_for(self, env: Mapping[str, str], preload: Sequence[str] = ()) -> _Zygote:
        """The running zygote for kernels with ``env`` and ``preload``; start it if need be.

        Raises WarmUnavailable when no zygote can serve them.
        """
        key = _zygote_key(env, preload)
        with self._lock:
            if self._pid != os.getpid():
                self._forget()
            if key in self._failed:
                raise WarmUnavailable(self._failed[key])
            zygote = self._zygotes.get(key)
            if zygote is not None:
                if zygote.alive():
                    zygote.last_used = time.monotonic()
                    return zygote
                end = zygote.describe_end()
                del self._zygotes[key]
                zygote.close()
                self._deaths[key] = deaths = self._deaths.get(key, 0) + 1
                if deaths > MAX_ZYGOTE_DEATHS:
                    self._failed[key] = f"{end} (zygotes died {deaths} times)"
                    raise WarmUnavailable(self._failed[key])
                log.warning("warm kernels: %s; starting a new zygote", end)
            self._make_room()
            try:
                zygote = self._start(env, list(preload))
            except WarmUnavailable as exc:
                self._failed[key] = str(exc)
                raise
            self._zygotes[key] = zygote
            return zygote

    def _make_room(self) -> None:
        if len(self._zygotes) < self.max_zygotes:
            return
        idle = [(z.last_used, key) for key, z in self._zygotes.items() if z.idle]
        if not idle:
            raise WarmUnavailable(
                f"{self.max_zygotes} zygotes (one per kernel environment) are busy"
            )
        self._zygotes.pop(min(idle)[1]).close()

    def _start(self, env: Mapping[str, str], preload: list[str]) -> _Zygote:
        if not self._hooked:
            self._hooked = True
            _REGISTRIES.add(self)
            _hook_process()
        while True:
            zygote = _Zygote.start(env, preload, self.startup_timeout)
            info = zygote.info
            for name, why in info.get("skipped", {}).items():
                _note_once(
                    logging.WARNING,
                    f"--preload {name}: cannot be imported ({why}); warm kernels start without it",
                )
            if info.get("op") == "ready":
                log.debug("warm kernels: zygote pid %d ready (%s)", zygote.pid, info)
                return zygote
            zygote.close()
            module, threads = info.get("module"), ", ".join(info.get("threads", ()))
            if module not in preload:
                raise WarmUnavailable(f"importing ipykernel left threads running ({threads})")
            _note_once(
                logging.WARNING,
                f"--preload {module}: importing it starts threads ({threads}), and forking a "
                "process with threads is unsafe; warm kernels start without it",
            )
            preload = preload[: preload.index(module)] + preload[preload.index(module) + 1 :]

    @property
    def zygote_pids(self) -> list[int]:
        """Process ids of the zygotes running now."""
        with self._lock:
            return [z.pid for z in self._zygotes.values() if z.proc.poll() is None]

    def close(self) -> None:
        """Stop every zygote (and so every kernel they forked)."""
        with self._lock:
            zygotes, self._zygotes = list(self._zygotes.values()), {}
            self._failed.clear()
            self._deaths.clear()
        if self._pid != os.getpid():
            for zygote in zygotes:
                zygote.forget()
            return
        for zygote in zygotes:
            zygote.close()

    def _forget(self) -> None:
        for zygote in self._zygotes.values():
            zygote.forget()
        self._zygotes.clear()
        self._failed.clear()
        self._deaths.clear()
        self._pid = os.getpid()

    def _after_fork(self) -> None:
        self._lock = threading.Lock()  # another thread may have held it at the fork
        self._forget()


_REGISTRIES: weakref.WeakSet[ZygoteRegistry] = weakref.WeakSet()
_HOOKED = False
_DEFAULT: ZygoteRegistry | None = None
_DEFAULT_LOCK = threading.Lock()


def _close_all() -> None:
    for registry in list(_REGISTRIES):
        registry.close()


def _forget_all() -> None:
    global _DEFAULT_LOCK, _NOTED_LOCK
    _DEFAULT_LOCK, _NOTED_LOCK = threading.Lock(), threading.Lock()  # a thread may have held one
    for registry in list(_REGISTRIES):
        registry._after_fork()


def _hook_process() -> None:
    """Close zygotes at exit, and forget them in a forked child (once per process)."""
    global _HOOKED
    if not _HOOKED:
        _HOOKED = True
        atexit.register(_close_all)
        os.register_at_fork(after_in_child=_forget_all)


def default_registry() -> ZygoteRegistry:
    """The registry shared by every ``WarmStarter`` of this process that is not given one."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = ZygoteRegistry()
        return _DEFAULT


class _ForkProvisioner(LocalProvisioner):
    """Launches the kernel by asking a zygote to fork it; the standard way if it cannot."""

    registry: ZygoteRegistry
    preload: tuple[str, ...] = ()
    log_path: Path

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> dict[str, Any]:
        env = dict(kwargs.get("env") or os.environ)
        env["JPY_PARENT_PID"] = str(os.getpid())  # as jupyter_client's launcher sets it
        cwd = str(kwargs.get("cwd") or os.getcwd())
        try:
            args = _launcher_args(cmd)
            zygote = self.registry.running(env, self.preload) or await asyncio.to_thread(
                self.registry.zygote_for, env, self.preload
            )
            # in this thread, so that a cancelled start cannot leave an unknown kernel behind
            self.process = zygote.spawn(args, cwd, env, self.log_path)
        except WarmUnavailable as exc:
            why = f"warm kernels unavailable, starting kernels the standard way: {exc}"
            _note_once(logging.WARNING, why)
            with open(self.log_path, "ab") as klog:
                return await super().launch_kernel(
                    cmd, **{**kwargs, "stdout": klog, "stderr": klog}
                )
        self.pid = self.pgid = self.process.pid
        self.cwd = cwd
        return self.connection_info

    async def send_signal(self, signum: int) -> None:
        if isinstance(self.process, _ForkedKernel):
            self.process.send_signal(signum)
        else:
            await super().send_signal(signum)


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
        self, preload: Sequence[str] = (), *, registry: ZygoteRegistry | None = None
    ) -> None:
        if isinstance(preload, str):
            preload = [preload]
        for name in preload:
            if not isinstance(name, str) or not _MODULE_NAME.fullmatch(name):
                raise ConfigError(f"--preload {name!r}: not a module name (e.g. pandas, numpy)")
        self.preload = tuple(dict.fromkeys(preload))
        self.registry = registry

    def __reduce__(self) -> tuple[Any, ...]:
        return (WarmStarter, (self.preload,))

    def __repr__(self) -> str:
        return f"WarmStarter(preload={list(self.preload)!r})"

    async def start(self, cwd: Path, env: Mapping[str, str], log_path: Path) -> AsyncKernelManager:
        sock_dir = log_path.parent
        km = _WarmKernelManager(
            kernel_name=_THIS_PYTHON,
            kernel_spec_manager=_ThisPythonSpecs(),
            transport="ipc",
            ip=os.path.join(sock_dir, "k"),
            connection_file=os.path.join(sock_dir, "kernel.json"),
        )
        provisioner = _ForkProvisioner(kernel_id=None, kernel_spec=km.kernel_spec, parent=km)
        provisioner.registry = self.registry or default_registry()
        provisioner.preload = self.preload
        provisioner.log_path = log_path
        km.provisioner = provisioner
        try:
            await km.start_kernel(cwd=str(cwd), env=dict(env), extra_arguments=list(_KERNEL_ARGS))
        except BaseException:  # e.g. cancelled after the fork: nobody else would kill it
            if provisioner.process is not None:
                with contextlib.suppress(Exception):
                    provisioner.process.kill()
            raise
        return km


def warm_unavailable_reason(kernel: str | None = None) -> str | None:
    """Why kernels cannot be forked here (for ``--kernel kernel``), or None when they can."""
    if not sys.platform.startswith("linux"):
        return f"forking kernels is only done on Linux, not {sys.platform}"
    if kernel is not None and kernel != _THIS_PYTHON:
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
        _note_once(logging.INFO, f"warm kernels off: {why}; kernels start the standard way")
    return StandardStarter(kernel)


# -- the zygote's side ---------------------------------------------------------------------------
#: Run by ``python -c``: argv = fd, preload (JSON), owner pid, the directory holding ductaflow.
_BOOT = """\
# the ductaflow zygote: forks ipykernel kernels (ps | grep ipykernel finds them)
import os, sys
environ = dict(os.environ)
if sys.path and sys.path[0] == "":
    del sys.path[0]
sys.path.insert(0, sys.argv[4])
import ductaflow.warm
sys.path.remove(sys.argv[4])
ductaflow.warm._zygote_main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), environ)
"""


def _zygote_main(fd: int, preload_json: str, owner: int, environ: dict[str, str]) -> None:
    """The zygote: import, report, then fork kernels on request until the owner goes away.

    Returns in the zygote when it is done, and in each forked child once its kernel has ended.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = socket.socket(fileno=fd)
    report = _import_all(json.loads(preload_json), environ)
    server = _ZygoteServer(conn, owner)
    if not server.send(report) or report["op"] != "ready":
        return
    request = server.serve()
    if request is not None:  # in a forked child
        _become_kernel(request)


def _other_threads(grace: float = 0.2) -> list[str]:
    """Names of threads other than this one still running after ``grace`` seconds."""
    deadline = time.monotonic() + grace
    for thread in threading.enumerate():
        if thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
    return [t.name for t in threading.enumerate() if t is not threading.current_thread()]


_LAUNCHER = "ipykernel_launcher"
_ENV_SET: dict[str, str] = {}
_ENV_UNSET: list[str] = []


def _import_all(preload: list[str], before: Mapping[str, str]) -> dict[str, Any]:
    """Import what a kernel imports, then ``preload``; refuse a module that leaves threads."""
    global _ENV_SET, _ENV_UNSET, _LAUNCHER
    import ipykernel.kernelapp  # noqa: F401  (the one import that must work)

    for name in _KERNEL_MODULES:
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    threads = _other_threads()
    if threads:
        return {"op": "refused", "module": None, "threads": threads}
    skipped: dict[str, str] = {}
    for name in preload:
        try:
            importlib.import_module(name)
        except Exception as exc:
            skipped[name] = f"{type(exc).__name__}: {exc}"
        threads = _other_threads()
        if threads:
            return {"op": "refused", "module": name, "threads": threads}
    # what imports did to the environment (debugpy sets PYDEVD_USE_FRAME_EVAL), kernels redo
    _ENV_SET = {k: v for k, v in os.environ.items() if before.get(k) != v}
    _ENV_UNSET = [k for k in before if k not in os.environ]
    spec = importlib.util.find_spec("ipykernel_launcher")
    _LAUNCHER = str(spec.origin) if spec is not None else "ipykernel_launcher"
    gc.collect()
    gc.freeze()  # forked kernels' collections skip (and so do not copy) the zygote's objects
    return {
        "op": "ready",
        "pid": os.getpid(),
        "skipped": skipped,
        "native_threads": len(os.listdir("/proc/self/task")) - 1,
    }


class _ZygoteServer:
    """The zygote's loop: fork kernels, signal them, reap them and report their exit codes."""

    def __init__(self, conn: socket.socket, owner: int) -> None:
        self.conn = conn
        self.owner = owner
        self.children: set[int] = set()
        self.buffer = b""
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)

    def send(self, message: Mapping[str, Any]) -> bool:
        try:
            self.conn.sendall(json.dumps(message).encode() + b"\n")
        except OSError:
            return False
        return True

    def serve(self) -> dict[str, Any] | None:
        """Serve until the owner goes; return a request in a forked child, None in the zygote."""
        try:
            request = self._loop()
        except BaseException:
            self._shutdown()
            raise
        if request is None:
            self._shutdown()
        return request

    def _loop(self) -> dict[str, Any] | None:
        poller = select.poll()
        poller.register(self.conn, select.POLLIN)
        poller.register(self.wake_r, select.POLLIN)
        while True:
            ready = {fd for fd, _ in poller.poll(1000)}
            if self.wake_r in ready:
                with contextlib.suppress(OSError):
                    while os.read(self.wake_r, 512):
                        pass
            if not self._reap() or os.getppid() != self.owner:
                return None
            if self.conn.fileno() not in ready:
                continue
            data = self.conn.recv(1 << 16)
            if not data:
                return None
            self.buffer += data
            *lines, self.buffer = self.buffer.split(b"\n")
            for line in lines:
                request = json.loads(line)
                if request["op"] == "spawn":
                    child = self._spawn(request)
                    if child is not None:
                        return child
                elif request["op"] == "signal":
                    self._signal(int(request["pid"]), int(request["sig"]))

    def _reap(self) -> bool:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return True
            if pid == 0:
                return True
            self.children.discard(pid)
            code = os.waitstatus_to_exitcode(status)
            if not self.send({"op": "exit", "pid": pid, "code": code}):
                return False

    def _signal(self, pid: int, signum: int) -> None:
        if pid not in self.children:
            return  # reaped already: the pid may belong to another process by now
        try:
            os.killpg(pid, signum)
        except OSError:
            with contextlib.suppress(OSError):
                os.kill(pid, signum)

    def _spawn(self, request: dict[str, Any]) -> dict[str, Any] | None:
        rid = request["id"]
        threads = [t.name for t in threading.enumerate() if t is not threading.current_thread()]
        if threads:
            self.send({"id": rid, "error": f"the zygote has threads ({', '.join(threads)})"})
            return None
        try:
            if not os.path.isdir(request["cwd"]):
                raise FileNotFoundError(f"No such directory: {request['cwd']!r}")
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
            log_fd = os.open(request["log"], flags, 0o666)
        except OSError as exc:
            self.send({"id": rid, "error": str(exc), "kind": "os"})
            return None
        zygote_pid = os.getpid()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        try:
            pid = os.fork()
        except OSError as exc:
            os.close(log_fd)
            self.send({"id": rid, "error": f"fork failed: {exc}"})
            return None
        if pid == 0:
            self._close_in_child()
            return {**request, "log_fd": log_fd, "zygote": zygote_pid}
        os.close(log_fd)
        self.children.add(pid)
        self.send({"id": rid, "pid": pid})
        return None

    def _close_in_child(self) -> None:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.close(self.wake_r)
        os.close(self.wake_w)
        self.conn.close()

    def _shutdown(self) -> None:
        """Kill the kernels still running and reap them."""
        for pid in self.children:
            self._signal(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5.0
        while self.children and time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid:
                self.children.discard(pid)
            else:
                time.sleep(0.01)
        with contextlib.suppress(OSError):
            self.conn.close()


def _reseed() -> None:
    """Give this kernel its own random state (forked kernels would otherwise share it)."""
    import random

    random.seed()
    if "numpy.random" in sys.modules:
        with contextlib.suppress(Exception):
            sys.modules["numpy.random"].seed()
    if "torch" in sys.modules:
        with contextlib.suppress(Exception):
            sys.modules["torch"].seed()


def _become_kernel(request: dict[str, Any]) -> None:
    """In a forked child: turn into ``python -m ipykernel_launcher ARGS`` for this run."""
    os.setsid()
    set_parent_death_signal(signal.SIGKILL, request["zygote"], fallback=False)
    log_fd = request["log_fd"]
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    os.environ.update(_ENV_SET)
    for name in _ENV_UNSET:
        os.environ.pop(name, None)
    time.tzset()
    _reseed()
    sys.argv = [_LAUNCHER, *request["args"]]
    sys.orig_argv = [sys.executable, "-m", "ipykernel_launcher", *request["args"]]
    # ductaflow is not imported in a standard kernel: a flow that imports it gets it afresh
    ours = {n: sys.modules.pop(n) for n in list(sys.modules) if n.split(".")[0] == "ductaflow"}
    from ipykernel.kernelapp import launch_new_instance

    try:
        launch_new_instance()
    finally:
        ours.clear()
