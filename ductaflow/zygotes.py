"""The zygotes this process owns: the parent side of ``ductaflow.zygote``, standard library only.

``ZygoteRegistry`` keeps one zygote per (Python, kernel environment, preload list), starts it on
first use, starts it again if it died, and closes it (with its kernels) at exit. A ``Zygote`` is
the handle on one zygote process and its socket: ``spawn`` asks it to fork a kernel and returns a
``ForkedKernel``, the part of ``subprocess.Popen`` that jupyter_client uses, whose exit code and
signals go through the zygote. ``ductaflow.warm`` plugs these kernels into jupyter_client.

Lifetimes. The owner holds one end of a socket pair; the zygote exits, killing its kernels, as
soon as that end closes (the owner exited, or was killed) or its parent changes. Each kernel asks
for ``SIGKILL`` when the zygote dies (``PR_SET_PDEATHSIG``), so a killed zygote takes its kernels
with it. After a ``fork()`` of the owner, the child sees empty registries.
"""

from __future__ import annotations

import atexit
import contextlib
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
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .process import describe_exit, scratch_dir
from .zygote import BOOT

__all__ = [
    "ENGINE_KERNEL_ENV",
    "MAX_ZYGOTES",
    "MAX_ZYGOTE_DEATHS",
    "SPAWN_TIMEOUT",
    "ZYGOTE_STARTUP_TIMEOUT",
    "ForkedKernel",
    "WarmUnavailable",
    "Zygote",
    "ZygoteRegistry",
    "default_registry",
    "launch_env",
    "note_once",
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
#: What the engine adds to every kernel's environment (``ductaflow.engine``), for ``prestart``.
ENGINE_KERNEL_ENV = {"PYDEVD_DISABLE_FILE_VALIDATION": "1"}
#: What ``IPKernelApp`` sets when MPLBACKEND is unset; a preloaded matplotlib must see it too.
_INLINE_BACKEND = "module://matplotlib_inline.backend_inline"


class WarmUnavailable(RuntimeError):
    """A zygote cannot be used (here, or for this environment); kernels start the standard way."""


class ForkedKernel:
    """A kernel process forked by a zygote, with the part of ``subprocess.Popen`` jupyter uses.

    It is the zygote's child, not ours: its exit code comes from the zygote, and signals go
    through the zygote, which can only signal a pid it has not reaped (so never a reused pid).
    """

    stdin = stdout = stderr = None

    def __init__(self, zygote: Zygote, pid: int) -> None:
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


class Zygote:
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
        self._kernels: dict[int, ForkedKernel] = {}
        #: kernels forked so far (a zygote nobody used can be discarded)
        self.forked = 0
        self._next_id = 0
        self._poller = select.poll()
        self._poller.register(sock, select.POLLIN)

    @classmethod
    def start(
        cls,
        env: Mapping[str, str],
        preload: Sequence[str],
        timeout: float,
        launched: Callable[[subprocess.Popen[bytes] | None], None] | None = None,
    ) -> Zygote:
        """Start a zygote and wait until it has imported everything (or refused a module).

        ``launched`` is called with its process as soon as it runs (so that another thread can
        kill it while it boots), and with None once it is ready or gone.
        """
        work_dir = tempfile.mkdtemp(prefix="df-zygote-", dir=scratch_dir(lasting=True))
        log_path = os.path.join(work_dir, "zygote.log")
        ours, theirs = socket.socketpair()
        zygote_env = {k: v for k, v in env.items() if not _PER_RUN_ENV.fullmatch(k)}
        zygote_env.setdefault("MPLBACKEND", _INLINE_BACKEND)
        package_root = str(Path(__file__).resolve().parent.parent)
        argv = [
            sys.executable, "-c", BOOT, str(theirs.fileno()), json.dumps(list(preload)),
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
        if launched is not None:
            launched(proc)
        try:
            zygote.info = zygote._wait_for(lambda m: m.get("op") in ("ready", "refused"), timeout)
        except WarmUnavailable:
            zygote.close()
            raise
        finally:
            if launched is not None:
                launched(None)
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
    ) -> ForkedKernel:
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
            kernel = ForkedKernel(self, int(reply["pid"]))
            self._kernels[kernel.pid] = kernel
            self.forked += 1
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


def launch_env(env: Mapping[str, str]) -> dict[str, str]:
    """The environment a forked kernel is launched with: ``env``, and ``JPY_PARENT_PID`` as
    jupyter_client's launcher sets it. Zygotes are keyed by it (less the per-run variables)."""
    return {**env, "JPY_PARENT_PID": str(os.getpid())}


def _zygote_key(env: Mapping[str, str], preload: Sequence[str]) -> tuple[Any, ...]:
    kept = tuple(sorted((k, v) for k, v in env.items() if not _PER_RUN_ENV.fullmatch(k)))
    return (sys.executable, kept, tuple(preload))


_NOTED: set[str] = set()
_NOTED_LOCK = threading.Lock()


def note_once(level: int, message: str) -> None:
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
        self._zygotes: dict[tuple[Any, ...], Zygote] = {}
        self._failed: dict[tuple[Any, ...], str] = {}
        self._deaths: dict[tuple[Any, ...], int] = {}
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._hooked = False
        #: zygotes booting now, by key, and the keys whose prestart was discarded meanwhile
        #: (guarded by ``_boot_lock``: ``_lock`` is held by the thread that boots)
        self._booting: dict[tuple[Any, ...], subprocess.Popen[bytes]] = {}
        self._discarded: set[tuple[Any, ...]] = set()
        self._boot_lock = threading.Lock()
        self._prestarts: dict[threading.Thread, tuple[Any, ...]] = {}

    def running(self, env: Mapping[str, str], preload: Sequence[str] = ()) -> Zygote | None:
        """The zygote for ``env`` and ``preload`` if it runs now, without starting one.

        Never waits: while another thread starts a zygote, it returns None (called from event
        loops, which must not block for a zygote's start).
        """
        key = _zygote_key(env, preload)
        if not self._lock.acquire(blocking=False):
            return None
        try:
            zygote = self._zygotes.get(key) if self._pid == os.getpid() else None
            if zygote is None or not zygote.alive():
                return None
            zygote.last_used = time.monotonic()
            return zygote
        finally:
            self._lock.release()

    def prestart(
        self, env: Mapping[str, str] | None = None, preload: Sequence[str] = ()
    ) -> threading.Thread:
        """Begin starting the zygote for ``env`` and ``preload`` in a thread; return at once.

        ``env`` is a kernel's environment as the engine builds it (default: this process's, plus
        what the engine adds). A kernel start that needs this zygote while it boots waits for it
        rather than starting another. A zygote that cannot start is remembered, as on first use:
        the first run then starts its kernel the standard way and the log says why. The thread
        is returned, for whoever wants to wait (``join``); nobody has to.
        """
        kernel_env = launch_env({**os.environ, **ENGINE_KERNEL_ENV} if env is None else env)
        kernel_env.pop("PYTHONEXECUTABLE", None)  # as jupyter_client drops it for Python kernels
        key = _zygote_key(kernel_env, preload)
        for thread, known in self._prestarts.items():
            if known == key:  # begun already (the CLI begins it before its own imports)
                return thread

        def start() -> None:
            try:
                self.zygote_for(kernel_env, preload)
            except Exception as exc:  # remembered by zygote_for; said by the first run
                log.debug("warm kernels: prestarting a zygote: %s", exc)

        thread = threading.Thread(target=start, name="ductaflow-zygote-prestart", daemon=True)
        self._prestarts[thread] = key
        log.debug("warm kernels: prestarting a zygote (preload %s)", list(preload) or "none")
        thread.start()
        return thread

    def discard(self, prestarted: threading.Thread) -> None:
        """Stop the zygote that ``prestart`` began, unless it has forked a kernel: the sweep
        turned out not to need it (its kernels start elsewhere, or the standard way, or it
        stopped early). One still booting is killed, not waited for; nothing of it is left.
        """
        key = self._prestarts.pop(prestarted, None)
        if key is None:
            return
        with self._boot_lock:
            self._discarded.add(key)
            booting = self._booting.get(key)
        if booting is not None:
            log.debug("warm kernels: the zygote is not needed; killing it while it boots")
            with contextlib.suppress(OSError):
                booting.kill()
        prestarted.join()
        with self._lock:
            with self._boot_lock:
                self._discarded.discard(key)
            zygote = self._zygotes.get(key)
            if zygote is None or zygote.forked:
                return
            del self._zygotes[key]
        log.debug("warm kernels: the zygote is not needed; closing it")
        zygote.close()

    def zygote_for(self, env: Mapping[str, str], preload: Sequence[str] = ()) -> Zygote:
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
                zygote = self._start(env, list(preload), key)
            except WarmUnavailable as exc:
                with self._boot_lock:
                    if key in self._discarded:  # killed on purpose: no reason to stay cold
                        raise
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

    def _start(self, env: Mapping[str, str], preload: list[str], key: tuple[Any, ...]) -> Zygote:
        if not self._hooked:
            self._hooked = True
            _REGISTRIES.add(self)
            _hook_process()

        def launched(proc: subprocess.Popen[bytes] | None) -> None:
            with self._boot_lock:
                if proc is None:
                    self._booting.pop(key, None)
                    return
                self._booting[key] = proc
                if key not in self._discarded:
                    return
            proc.kill()  # discarded before it ran

        while True:
            zygote = Zygote.start(env, preload, self.startup_timeout, launched)
            info = zygote.info
            for name, why in info.get("skipped", {}).items():
                note_once(
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
            note_once(
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

    def close(self, *, wait: bool = True) -> None:
        """Stop every zygote (and so every kernel they forked).

        With ``wait=False`` (at interpreter exit), a zygote still starting in another thread is
        not waited for: its socket closes with this process, and it exits then by itself.
        """
        if not self._lock.acquire(timeout=-1 if wait else 0):
            return
        try:
            zygotes, self._zygotes = list(self._zygotes.values()), {}
            self._failed.clear()
            self._deaths.clear()
        finally:
            self._lock.release()
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
        self._boot_lock = threading.Lock()
        self._booting, self._discarded, self._prestarts = {}, set(), {}
        self._forget()


_REGISTRIES: weakref.WeakSet[ZygoteRegistry] = weakref.WeakSet()
_HOOKED = False
_DEFAULT: ZygoteRegistry | None = None
_DEFAULT_LOCK = threading.Lock()


def _close_all() -> None:
    for registry in list(_REGISTRIES):
        registry.close(wait=False)


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
