"""The run engine: execute a run's flows, each as a notebook in its own kernel, recording it all.

``execute_run`` never raises for what a run does: a failing cell, a timeout, a dead kernel or a
missing flow all end up in the returned ``RunResult`` and in ``status.json``. The one exception it
lets out is ``RunInterrupted`` (a ``KeyboardInterrupt``), after the interrupted run is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

from .capture import KERNEL_SETUP, CapturingClient, FlowCapture, output_name
from .checks import INJECTED_TAG, flow_kernel, is_clean_exit
from .errors import DuctaflowError, ExecutionError
from .kernel import STARTUP_TIMEOUT, Kernel, KernelStarter, StandardStarter, open_kernel
from .notebook import (
    add_error_output,
    build_notebook,
    flow_cell_number,
    mark_failure,
    mark_stopped,
    read_flow,
    save_notebook,
)
from .process import now, one_line, strip_ansi
from .rundir import CONFIG_FILE, atomic_write_text, attempt_entry, provenance, write_status
from .spec import (
    DIED,
    FAILED,
    INTERRUPTED,
    OK,
    RUNNING,
    TIMEOUT,
    FlowRef,
    FlowResult,
    RunOptions,
    RunResult,
    RunSpec,
    RunWarning,
)

__all__ = ["RunInterrupted", "execute_run", "first_kernel", "kernel_env", "run_flow"]


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) stopped a run; ``result`` is what was recorded for it."""

    def __init__(self, result: RunResult) -> None:
        super().__init__(f"{result.run_dir}: interrupted")
        self.result = result


@dataclass
class _Interrupt:
    """Set by a signal handler or the parent watchdog; tells interrupted from a dead kernel."""

    signum: int | None = None
    reason: str | None = None
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    def __call__(self, signum: int, reason: str | None = None) -> None:
        if self.signum is None:
            self.signum = signum
            self.reason = reason
            for task in self.tasks:
                task.cancel()


async def _watch(parent: int | None, stop: threading.Event | None, interrupt: _Interrupt) -> None:
    """Stop the run when the process that asked for it dies (we get re-parented), or on ``stop``.

    ``stop`` is how a sweep stops runs executing in its threads: signals reach the main thread only.
    """
    while True:
        if parent is not None and os.getppid() != parent:
            interrupt(signal.SIGTERM, f"its conductor (pid {parent}) died")
            return
        if stop is not None and stop.is_set():
            interrupt(signal.SIGINT, "its conductor was stopped (Ctrl-C or SIGTERM)")
            return
        await asyncio.sleep(0.1)


#: Least seconds between two saves of a running flow's notebook (each save also waits at least
#: 10 times what the last one took, so saving costs at most ~10% of a run).
AUTOSAVE_INTERVAL = 0.2


class _Autosave:
    """Saves a running flow's notebook soon after each cell: at once when the last save is old
    enough, else when it will be (from the event loop, while the next cell runs)."""

    def __init__(self, nb: Any, path: Path) -> None:
        self.nb, self.path = nb, path
        self.interval = AUTOSAVE_INTERVAL
        self.last = time.monotonic()  # the notebook was saved before its kernel started
        self._pending: asyncio.TimerHandle | None = None

    def cell_done(self) -> None:
        if self._pending is not None:
            return  # a save is already due; it will include this cell
        wait = self.last + self.interval - time.monotonic()
        if wait <= 0:
            self.save()
        else:
            self._pending = asyncio.get_running_loop().call_later(wait, self.save)

    def save(self) -> None:
        self._pending = None
        t0 = time.monotonic()
        try:
            save_notebook(self.nb, self.path, validate=False)
        except OSError:  # the disk refused; the flow's final save reports it
            return
        self.last = time.monotonic()
        self.interval = max(AUTOSAVE_INTERVAL, 10 * (self.last - t0))

    def cancel(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None


@dataclass
class _Flow:
    """The state of one flow's execution, filled in as it goes."""

    ref: FlowRef
    notebook_path: Path
    sha256: str
    status: str = RUNNING
    error: str | None = None
    traceback: str | None = None
    failed_cell: int | None = None
    stopped_at_cell: int | None = None
    nb: Any = None
    kernel: Kernel | None = None
    #: index of the cell executing now (None between cells and after the last one)
    current: int | None = None
    #: its ``<flow>_output.txt`` and runtime warnings
    capture: FlowCapture | None = None


async def _execute_flow(
    ref: FlowRef,
    spec: RunSpec,
    options: RunOptions,
    starter: KernelStarter,
    deadline: float | None,
    interrupt: _Interrupt,
) -> tuple[FlowResult, list[str]]:
    """Execute one flow in a kernel of its own; every failure is in the returned result."""
    state = _Flow(ref, spec.run_dir / ref.notebook_name, ref.sha256)
    started, t0 = now(), time.perf_counter()
    checks: list[str] = []
    autosave: _Autosave | None = None
    capture = state.capture = FlowCapture.open(
        ref.name, spec.run_dir / output_name(ref.name), options.output_limit
    )
    try:
        flow_nb, state.sha256 = read_flow(ref.path)
        state.nb, checks = build_notebook(
            flow_nb, spec.config, config_hash=spec.config_hash, ref=ref
        )
        save_notebook(state.nb, state.notebook_path)
        autosave = _Autosave(state.nb, state.notebook_path)
        await _run_cells(state, spec, options, starter, deadline, autosave)
        state.status = OK
    except (Exception, asyncio.CancelledError) as exc:
        _classify_failure(state, exc, options, deadline, interrupt)
    finally:
        try:
            if autosave is not None:
                autosave.cancel()
            if state.kernel is not None:
                await asyncio.shield(state.kernel.stop())
            if state.nb is not None:
                _finish_notebook(state)
        finally:
            stop = state.stopped_at_cell
            note = f"stopped cleanly at cell {stop}" if stop is not None else state.error
            capture.end(state.status, note, time.perf_counter() - t0)
            capture.close()
    kernel = state.kernel
    result = FlowResult(
        name=ref.name,
        path=str(ref.path),
        sha256=state.sha256,
        status=state.status,
        notebook=ref.notebook_name,
        started=started,
        finished=now(),
        duration_s=round(time.perf_counter() - t0, 4),
        error=state.error,
        traceback=state.traceback,
        failed_cell=state.failed_cell,
        kernel_start_s=round(kernel.start_s, 4) if kernel is not None else None,
        stopped_at_cell=state.stopped_at_cell,
    )
    warnings = [RunWarning("check", text, ref.name) for text in checks]
    return result, [*warnings, *capture.warnings]


def kernel_env(run_dir: Path, ref: FlowRef) -> dict[str, str]:
    """The environment of the kernel that runs flow ``ref`` in ``run_dir``."""
    return {
        **os.environ,
        "DUCTAFLOW_RUN_DIR": str(run_dir),
        "DUCTAFLOW_FLOW": str(ref.path),
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    }


def first_kernel(spec: RunSpec, options: RunOptions) -> dict[str, str] | None:
    """The environment of the run's first kernel, when a ``WarmStarter`` starts it (None when
    the flow brings its own kernelspec)."""
    if options.kernel is None and flow_kernel(spec.flows[0].facts, None) is not None:
        return None
    return kernel_env(spec.run_dir, spec.flows[0])


async def _run_cells(
    state: _Flow,
    spec: RunSpec,
    options: RunOptions,
    starter: KernelStarter,
    deadline: float | None,
    autosave: _Autosave,
) -> None:
    """Start the flow's kernel in the run directory and execute its code cells in order."""
    run_dir = spec.run_dir
    env = kernel_env(run_dir, state.ref)
    startup = STARTUP_TIMEOUT
    if deadline is not None:
        startup = max(0.1, min(startup, deadline - time.monotonic()))
    if options.kernel is None and (own := flow_kernel(state.ref.facts, None)) is not None:
        starter = StandardStarter(own)  # an .ipynb flow's own kernelspec
    state.kernel = kernel = await open_kernel(starter, run_dir, env, startup_timeout=startup)
    nb = state.nb
    client = CapturingClient(
        nb,
        km=kernel.km,
        record_timing=True,
        resources={"metadata": {"path": str(run_dir)}},
    )
    client.kc = kernel.kc
    client.capture = capture = state.capture
    # warnings and log records out of the kernel (see capture); its reply is not waited for:
    # the kernel runs it before the first cell, and nbclient skips messages that are not a cell's
    kernel.kc.execute(KERNEL_SETUP, silent=True, store_history=False, stop_on_error=False)

    def cell_timeout(_cell: Any) -> float | None:
        limits = [options.timeout] if options.timeout else []
        if deadline is not None:
            limits.append(max(0.001, deadline - time.monotonic()))
        return min(limits) if limits else None

    client.timeout_func = cell_timeout
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        state.current = index
        if capture is not None and cell.source.strip():
            injected = INJECTED_TAG in cell.metadata.get("tags", [])
            capture.start_cell(None if injected else flow_cell_number(nb, index))
        await client.async_execute_cell(cell, index, execution_count=client.code_cells_executed + 1)
        autosave.cell_done()
    state.current = None


def _classify_failure(
    state: _Flow,
    exc: BaseException,
    options: RunOptions,
    deadline: float | None,
    interrupt: _Interrupt,
) -> None:
    """The status, error line and traceback of a flow that did not end ``ok``."""
    timed_out = deadline is not None and time.monotonic() >= deadline - 0.01
    if isinstance(exc, CellExecutionError) and is_clean_exit(exc.ename, exc.evalue):
        if state.nb is not None and state.current is not None:  # sys.exit(0): a clean stop
            state.stopped_at_cell = mark_stopped(state.nb, state.current, exc.evalue)
        state.status, state.current = OK, None
    elif isinstance(exc, CellExecutionError):
        state.status = FAILED
        state.error = one_line(f"{exc.ename}: {exc.evalue}")
        state.traceback = strip_ansi(str(exc))
    elif isinstance(exc, CellTimeoutError):
        state.status = TIMEOUT
        if timed_out:
            state.error = f"RunTimeout: the run exceeded --run-timeout {options.run_timeout:g} s"
        else:
            state.error = f"CellTimeout: the cell exceeded --timeout {options.timeout:g} s"
    elif isinstance(exc, DeadKernelError):
        if interrupt.signum is not None:
            state.status, state.error = INTERRUPTED, _interrupted_error(interrupt)
        else:
            state.status = DIED
            assert state.kernel is not None
            state.error = f"DeadKernel: {state.kernel.exit_description()} while running the cell"
            state.traceback = state.kernel.log_tail() or None
    elif isinstance(exc, asyncio.CancelledError):
        state.status, state.error = INTERRUPTED, _interrupted_error(interrupt)
    elif isinstance(exc, ExecutionError):  # the kernel did not start
        state.status = TIMEOUT if timed_out else DIED
        state.error = one_line(str(exc))
        state.traceback = str(exc)
    elif isinstance(exc, DuctaflowError):  # the flow cannot be read
        state.status, state.error = FAILED, one_line(str(exc))
    else:  # a fault of ductaflow's own: record it, never hide it
        state.status = FAILED
        state.error = one_line(f"ductaflow internal error: {type(exc).__name__}: {exc}")
        state.traceback = "".join(traceback.format_exception(exc))


def _finish_notebook(state: _Flow) -> None:
    """Save the flow's notebook; a failed one marked at the cell where it stopped."""
    nb, current = state.nb, state.current
    if current is not None and state.status != OK:
        cell = nb.cells[current]
        if state.status != FAILED:
            name, _, message = (state.error or "").partition(": ")
            add_error_output(cell, name, message)
        state.failed_cell = flow_cell_number(nb, current)
        mark_failure(nb, current, state.status, state.error or state.status)
    save_notebook(nb, state.notebook_path)


def _interrupted_error(interrupt: _Interrupt) -> str:
    if interrupt.reason:
        return f"Interrupted: the run was stopped because {interrupt.reason}"
    name = signal.Signals(interrupt.signum).name if interrupt.signum else "a cancel"
    return f"Interrupted: the run was stopped by {name}"


async def _attempt(
    spec: RunSpec,
    options: RunOptions,
    starter: KernelStarter,
    interrupt: _Interrupt,
    earlier: list[dict[str, Any]],
    base: dict[str, Any],
) -> RunResult:
    """One attempt at the run; ``earlier``: the attempts before it (``attempt_log``)."""
    started, t0 = now(), time.perf_counter()
    deadline = time.monotonic() + options.run_timeout if options.run_timeout else None
    flows: list[FlowResult] = [FlowResult.not_run(ref) for ref in spec.flows]
    warnings: list[RunWarning] = []

    def record(status: str, finished: str | None = None, **kw: Any) -> RunResult:
        result = RunResult(
            run_dir=spec.run_dir,
            status=status,
            started=started,
            finished=finished,
            duration_s=round(time.perf_counter() - t0, 4) if finished else None,
            config_hash=spec.config_hash,
            flows=tuple(flows),
            attempts=len(earlier) + 1,
            warnings=tuple(dict.fromkeys(warnings)),
            sweep=spec.sweep,
            name=spec.name,
            env_hash=options.env_hash,
            git_commit=options.git_commit,
            **kw,
        )
        write_status(result, _with_log(result, base, earlier))
        return result

    record(RUNNING)
    for i, ref in enumerate(spec.flows):
        flow_result, flow_warnings = await _execute_flow(
            ref, spec, options, starter, deadline, interrupt
        )
        flows[i] = flow_result
        warnings.extend(flow_warnings)
        raised = [w for w in flow_warnings if w.runtime]
        if flow_result.status == OK and raised and options.strict_warnings:
            return record(FAILED, now(), error=_strict_error(raised), failed_flow=ref.name)
        if flow_result.status != OK:
            return record(
                flow_result.status,
                now(),
                error=flow_result.error,
                traceback=flow_result.traceback,
                failed_flow=ref.name,
            )
        if i + 1 < len(spec.flows):
            record(RUNNING)
    return record(OK, now())


def _strict_error(raised: list[RunWarning]) -> str:
    n = sum(w.count for w in raised)
    return one_line(
        f"StrictWarnings: the flow raised {n} warning{'s' if n != 1 else ''} "
        f"({raised[0]}); --strict-warnings counts a warning as a failure"
    )


async def _execute_run_async(
    spec: RunSpec,
    options: RunOptions,
    starter: KernelStarter,
    parent: int | None,
    stop: threading.Event | None,
    earlier: Sequence[Mapping[str, Any]] = (),
) -> tuple[RunResult, _Interrupt]:
    interrupt = _Interrupt()
    task = asyncio.current_task()
    assert task is not None
    interrupt.tasks.append(task)
    loop = asyncio.get_running_loop()
    handled: list[int] = []
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
                loop.add_signal_handler(signum, interrupt, signum)
                handled.append(signum)
    watching = parent is not None or stop is not None
    watchdog = asyncio.ensure_future(_watch(parent, stop, interrupt)) if watching else None
    try:
        base = {**provenance(), "pid": os.getpid()}
        result = None
        log = [dict(entry) for entry in earlier]
        for _retry in range(options.retries + 1):
            try:
                result = await _attempt(spec, options, starter, interrupt, log, base)
            except asyncio.CancelledError:
                # cancelled between flows: record it as interrupted
                result = RunResult(
                    spec.run_dir, INTERRUPTED, None, now(), None, spec.config_hash,
                    tuple(FlowResult.not_run(r) for r in spec.flows), _interrupted_error(interrupt),
                    attempts=len(log) + 1, sweep=spec.sweep, name=spec.name,
                    env_hash=options.env_hash, git_commit=options.git_commit,
                )  # fmt: skip
                write_status(result, _with_log(result, base, log))
            log.append(_entry(result, base))
            if result.ok or interrupt.signum is not None or result.status == INTERRUPTED:
                break
        assert result is not None
        return result, interrupt
    finally:
        if watchdog is not None:
            watchdog.cancel()
        for signum in handled:
            loop.remove_signal_handler(signum)


def _entry(result: RunResult, base: Mapping[str, Any]) -> dict[str, Any]:
    return attempt_entry({**base, **result.to_json()})


def _with_log(
    result: RunResult, base: Mapping[str, Any], earlier: list[dict[str, Any]]
) -> dict[str, Any]:
    """What ``status.json`` holds besides the result: provenance and every attempt so far."""
    return {**base, "attempt_log": [*earlier, _entry(result, base)]}


def execute_run(
    spec: RunSpec,
    options: RunOptions | None = None,
    starter: KernelStarter | None = None,
    *,
    stop_with_parent: bool = False,
    stop: threading.Event | None = None,
    earlier: Sequence[Mapping[str, Any]] = (),
) -> RunResult:
    """Execute one run (its flows in order, each in a fresh kernel) and record it.

    Writes ``CONFIG.json``, one executed notebook per flow and ``status.json`` into
    ``spec.run_dir``. Raises ``RunInterrupted`` after recording, when Ctrl-C or SIGTERM stopped
    it, when ``stop`` was set (how a run in another thread is stopped), or (with
    ``stop_with_parent``, for pool workers) when this process's parent died.
    ``earlier``: this run's attempts before this one (``attempt_log`` entries, e.g. one a
    dead worker lost); ``status.json`` keeps them, and counts them in ``attempts``.
    """
    options = options or RunOptions()
    if starter is None:
        from .warm import make_starter

        starter = make_starter(options.kernel, options.warm, options.preload)
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        spec.run_dir / CONFIG_FILE, json.dumps(spec.config, indent=2, ensure_ascii=False) + "\n"
    )
    parent = os.getppid() if stop_with_parent else None
    result, interrupt = _run_here_or_aside(
        lambda stop: _execute_run_async(spec, options, starter, parent, stop, earlier), stop
    )
    if interrupt.signum is not None or result.status == INTERRUPTED:
        raise RunInterrupted(result)
    return result


def _run_here_or_aside(make: Any, stop: threading.Event | None) -> tuple[RunResult, _Interrupt]:
    """``asyncio.run(make(stop))``; in a thread of its own where this one already runs an event
    loop (a notebook or IPython used as the conductor), Ctrl-C then stopping it through ``stop``.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make(stop))
    stop = stop or threading.Event()
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = asyncio.run(make(stop))
        except BaseException as exc:  # handed to the caller below
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="ductaflow-run")
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.1)
    except KeyboardInterrupt:
        stop.set()  # the run records itself interrupted and ends
        thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def run_flow(
    flow: str | Path,
    config: Mapping[str, Any],
    run_dir: str | Path,
    timeout: float | None = None,
    *,
    run_timeout: float | None = None,
    kernel: str | None = None,
    warm: bool = False,
    preload: tuple[str, ...] = (),
) -> RunResult:
    """Execute one flow with ``config`` in ``run_dir`` and return what happened.

    The flow runs as a notebook in a fresh kernel whose working directory is ``run_dir``.
    Raises ``FlowError`` for a missing flow and ``ConfigError`` for a config that is not a JSON
    object; every failure of the run itself is in the result (and ``status.json``).
    """
    from .config import config_hash
    from .errors import ConfigError
    from .kernel import check_kernel_name

    if not isinstance(config, Mapping):
        raise ConfigError(f"config must be a dict, not {type(config).__name__}")
    try:
        config = json.loads(json.dumps(config))  # a private copy that is plain JSON
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"config is not JSON data: {exc}") from None
    check_kernel_name(kernel)
    spec = RunSpec(
        run_dir=Path(run_dir).absolute(),
        config=config,
        flows=(FlowRef.from_path(flow),),
        config_hash=config_hash(config),
    )
    options = RunOptions(
        timeout=timeout, run_timeout=run_timeout, kernel=kernel, warm=warm, preload=tuple(preload)
    )
    return execute_run(spec, options)
