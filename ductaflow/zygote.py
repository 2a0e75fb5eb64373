"""The zygote process: the child side of warm kernels (``ductaflow.warm`` is the parent side).

Standard library only (and ``ductaflow.process``, itself stdlib only), so that importing this
module in the zygote brings in nothing that a kernel would not import anyway:
``tests/test_warm.py`` checks it in a fresh interpreter.

The zygote is started by ``python -c BOOT FD PRELOAD OWNER ROOT``. It imports what a kernel
imports (``KERNEL_MODULES``) and then the ``PRELOAD`` list, reports on the socket ``FD``, and then
serves requests, one JSON object a line, until its owner goes away:

=================================================  ==============================================
owner → zygote                                     zygote → owner
=================================================  ==============================================
                                                   ``{"op": "ready", "pid", "skipped", ...}``
                                                   or ``{"op": "refused", "module", "threads"}``
``{"op": "spawn", "id", "args", "cwd", "env",      ``{"id", "pid"}``, or ``{"id", "error"[,
"log"}``                                           "kind": "os"]}``
``{"op": "signal", "pid", "sig"}``                 (nothing)
                                                   ``{"op": "exit", "pid", "code"}`` per kernel
=================================================  ==============================================

Each ``spawn`` forks a child that becomes ``python -m ipykernel_launcher ARGS``: its own session
and process group, ``SIGKILL`` when the zygote dies, the run's working directory, environment
and log file, fresh random state. The zygote exits, killing its kernels, when the owner's end of
the socket closes or its parent changes.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import importlib.util
import json
import os
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .process import set_parent_death_signal

__all__ = ["BOOT", "KERNEL_MODULES", "main"]

#: Run by ``python -c``: argv = fd, preload (JSON), owner pid, the directory holding ductaflow.
BOOT = """\
# the ductaflow zygote: forks ipykernel kernels (ps | grep ipykernel finds them)
import os, sys
environ = dict(os.environ)
if sys.path and sys.path[0] == "":
    del sys.path[0]
sys.path.insert(0, sys.argv[4])
import ductaflow.zygote
sys.path.remove(sys.argv[4])
ductaflow.zygote.main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), environ)
"""

#: Modules a started kernel has imported; the zygote imports them before it forks.
KERNEL_MODULES = (
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


@dataclass
class _Imported:
    """What the zygote's imports left behind, for each kernel to redo or undo."""

    launcher: str = "ipykernel_launcher"
    env_set: dict[str, str] = field(default_factory=dict)
    env_unset: list[str] = field(default_factory=list)


def main(fd: int, preload_json: str, owner: int, environ: dict[str, str]) -> None:
    """The zygote: import, report, then fork kernels on request until the owner goes away.

    Returns in the zygote when it is done, and in each forked child once its kernel has ended.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = socket.socket(fileno=fd)
    report, imported = _import_all(json.loads(preload_json), environ)
    server = _ZygoteServer(conn, owner)
    if not server.send(report) or report["op"] != "ready":
        return
    request = server.serve()
    if request is not None:  # in a forked child
        _become_kernel(request, imported)


def _other_threads(grace: float = 0.2) -> list[str]:
    """Names of threads other than this one still running after ``grace`` seconds."""
    deadline = time.monotonic() + grace
    for thread in threading.enumerate():
        if thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
    return [t.name for t in threading.enumerate() if t is not threading.current_thread()]


def _import_all(preload: list[str], before: Mapping[str, str]) -> tuple[dict[str, Any], _Imported]:
    """Import what a kernel imports, then ``preload``; refuse a module that leaves threads."""
    import ipykernel.kernelapp  # noqa: F401  (the one import that must work)

    for name in KERNEL_MODULES:
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    threads = _other_threads()
    if threads:
        return {"op": "refused", "module": None, "threads": threads}, _Imported()
    skipped: dict[str, str] = {}
    for name in preload:
        try:
            importlib.import_module(name)
        except Exception as exc:
            skipped[name] = f"{type(exc).__name__}: {exc}"
        threads = _other_threads()
        if threads:
            return {"op": "refused", "module": name, "threads": threads}, _Imported()
    # what imports did to the environment (debugpy sets PYDEVD_USE_FRAME_EVAL), kernels redo
    spec = importlib.util.find_spec("ipykernel_launcher")
    imported = _Imported(
        launcher=str(spec.origin) if spec is not None else "ipykernel_launcher",
        env_set={k: v for k, v in os.environ.items() if before.get(k) != v},
        env_unset=[k for k in before if k not in os.environ],
    )
    gc.collect()
    gc.freeze()  # forked kernels' collections skip (and so do not copy) the zygote's objects
    report = {
        "op": "ready",
        "pid": os.getpid(),
        "skipped": skipped,
        "native_threads": len(os.listdir("/proc/self/task")) - 1,
    }
    return report, imported


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


def _become_kernel(request: dict[str, Any], imported: _Imported) -> None:
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
    os.environ.update(imported.env_set)
    for name in imported.env_unset:
        os.environ.pop(name, None)
    time.tzset()
    _reseed()
    sys.argv = [imported.launcher, *request["args"]]
    sys.orig_argv = [sys.executable, "-m", "ipykernel_launcher", *request["args"]]
    # ductaflow is not imported in a standard kernel: a flow that imports it gets it afresh
    ours = {n: sys.modules.pop(n) for n in list(sys.modules) if n.split(".")[0] == "ductaflow"}
    from ipykernel.kernelapp import launch_new_instance

    try:
        launch_new_instance()
    finally:
        ours.clear()
