"""Run recorded runs again, in place, from their run directories alone (``ductaflow rerun``).

Each run is rebuilt from its ``CONFIG.json`` and the flows its ``status.json`` records (by path,
as the files are now: a flow whose sha256 changed since the run is named in a warning) and
executed again in the same directory, by the executor, as a sweep of its own. The attempt before
is kept: ``status.json``'s ``attempt_log`` lists every attempt, the last one included
(``started``, ``ended``, ``host``, ``job_id``, ``status``, ``error``), ``attempts`` counts them,
and the run's row in ``index.csv`` is replaced.

``select_runs`` picks runs from the index by a pandas query, where ``param.alpha`` may be
written as it is (dotted column names are backtick-quoted before ``DataFrame.query``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import config_hash
from .debug import load_run, recorded_flows
from .errors import InputError
from .executor import SweepOptions, SweepReport, execute_runs
from .index import INDEX_FILE, IndexFile, build_row, load_index
from .lifecycle import UNFINISHED_ERROR
from .process import now
from .rundir import STATUS_FILE, attempt_entry, is_claimed, read_status, write_json
from .spec import INTERRUPTED, OK, RUNNING, FlowRef, Outcome, RunSpec

__all__ = [
    "ATTEMPT_LOG",
    "Rerun",
    "RerunReport",
    "quote_columns",
    "rebuild_spec",
    "rerun_runs",
    "select_runs",
]

log = logging.getLogger("ductaflow")

#: The key of ``status.json`` that lists a run's earlier attempts.
ATTEMPT_LOG = "attempt_log"
#: The name the executor shows (progress bar, log) for a rerun.
RERUN_NAME = "rerun"
#: prefixes of the dotted columns of the index: ``param.a``, ``result.r``, ``flow.f.duration_s``
_PREFIXES = "param|result|flow"


@dataclass(frozen=True)
class Rerun:
    """A recorded run, rebuilt to run again: its spec, and its status before the rerun."""

    spec: RunSpec
    before: dict[str, Any]
    #: flows whose file changed since the run executed them
    changed: tuple[Path, ...] = ()

    @property
    def root(self) -> Path:
        """The runs root the run belongs to: ``<root>/<sweep>/<run>``."""
        return self.spec.run_dir.parent.parent


def rebuild_spec(run_dir: str | Path) -> Rerun:
    """The run of ``run_dir`` as a ``RunSpec`` again, from its ``CONFIG.json`` and the flows its
    ``status.json`` records. ``InputError`` for a directory that is not a run, a run another
    process executes now, or a flow file that is gone (named, with the run)."""
    run_dir = Path(run_dir).absolute()
    status, config = load_run(run_dir)
    if is_claimed(run_dir):
        raise InputError(f"{run_dir}: another process is running it now; rerun it once it ends")
    records = recorded_flows(status)
    if not records:
        raise InputError(f"{run_dir / STATUS_FILE}: the run records no flows; nothing to rerun")
    flows, changed = [], []
    for record in records:
        try:
            ref = FlowRef.from_path(record["path"])
        except InputError as exc:
            raise InputError(f"{run_dir}: cannot rerun: {exc}") from None
        if record.get("sha256") and record["sha256"] != ref.sha256:
            log.warning(
                "%s: flow %s changed since this run executed it (sha256 %.8s -> %.8s); "
                "it reruns as the file is now",
                run_dir, os.path.normpath(ref.path), record["sha256"], ref.sha256,
            )  # fmt: skip
            changed.append(ref.path)
        flows.append(ref)
    spec = RunSpec(
        run_dir=run_dir,
        config=config,
        flows=tuple(flows),
        sweep=str(status.get("sweep") or run_dir.parent.name),
        name=str(status.get("name") or run_dir.name),
        config_hash=config_hash(config),
    )
    return Rerun(spec, status, tuple(changed))


def _attempts(status: Mapping[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """The attempts a ``status.json`` records, the last one included, and how many it counts
    (a ductaflow that kept no ``attempt_log`` recorded only the last attempt, and counted the
    retries of one sweep in ``attempts``)."""
    entries = status.get(ATTEMPT_LOG)
    log = [dict(e) for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []
    if not log or log[-1].get("started") != status.get("started"):
        log.append(attempt_entry(dict(status)))
    if log[-1].get("status") == RUNNING:  # its process ended before it recorded the attempt
        log[-1].update(status=INTERRUPTED, error=UNFINISHED_ERROR)
    counted = status.get("attempts")
    return log, max(len(log), counted if isinstance(counted, int) else 0)


def _keep_attempts(rerun: Rerun) -> bool:
    """Carry the earlier attempts into the run's new ``status.json``: ``attempt_log`` lists
    every attempt (the last one included) and ``attempts`` counts them. False when the run did
    not execute again (its status is the one from before)."""
    run_dir = rerun.spec.run_dir
    now = read_status(run_dir)
    if now is None or now.get("started") == rerun.before.get("started"):
        return False
    earlier, counted = _attempts(rerun.before)
    new, added = _attempts(now)
    known = {e.get("started") for e in earlier}
    carried = [e for e in new if e.get("started") in known]  # the engine kept some itself
    new = [e for e in new if e.get("started") not in known]
    now[ATTEMPT_LOG] = [*earlier, *new]
    now["attempts"] = counted + added - len(carried)
    write_json(run_dir / STATUS_FILE, now)
    return True


@dataclass
class RerunReport:
    """What ``rerun_runs`` did: one sweep report per runs root, and the runs that belong to
    no indexed runs root (``ductaflow run --run-dir``), executed alone and not indexed."""

    reports: list[SweepReport] = field(default_factory=list)
    alone: list[Outcome] = field(default_factory=list)

    @property
    def outcomes(self) -> list[Outcome]:
        return [*(o for r in self.reports for o in r.outcomes), *self.alone]

    @property
    def ok(self) -> bool:
        """True when every rerun run ended ``ok`` (and no sweep was stopped)."""
        return all(r.ok for r in self.reports) and all(
            o.result is None or o.result.ok for o in self.alone
        )

    @property
    def interrupted(self) -> bool:
        """True when Ctrl-C (or SIGTERM) stopped the rerun."""
        return any(r.interrupted for r in self.reports) or any(
            o.result is not None and o.result.status == INTERRUPTED for o in self.alone
        )

    def lines(self) -> list[str]:
        """One line per rerun run (status, directory, attempt, error), then each summary."""
        lines = []
        for outcome in self.outcomes:
            result = outcome.result
            if result is None:
                continue
            status = read_status(result.run_dir) or {}
            line = f"{result.status}: {result.run_dir} (attempt {status.get('attempts', '?')})"
            if not result.ok and result.error:
                line += f": {result.error}"
            lines.append(line)
        return lines + [r.summary() for r in self.reports]


def rerun_runs(
    run_dirs: Iterable[str | Path],
    options: SweepOptions | None = None,
    *,
    only_failed: bool = False,
) -> RerunReport:
    """Run these recorded runs again in place, a sweep per runs root they belong to.

    Every run is rebuilt (and checked) before any executes: ``InputError`` for a directory that
    is not a run. ``only_failed``: leave the runs that ended ``ok`` alone. ``options``: how they
    execute (its ``runs_root`` is each run's own; ``force`` is implied).
    """
    seen: dict[Path, Rerun] = {}
    for run_dir in run_dirs:
        rerun = rebuild_spec(run_dir)
        seen.setdefault(rerun.spec.run_dir, rerun)
    chosen = [r for r in seen.values() if not only_failed or r.before.get("status") != OK]
    by_root: dict[Path, list[Rerun]] = {}
    for rerun in chosen:
        by_root.setdefault(rerun.root, []).append(rerun)
    opts = options or SweepOptions(progress=False)
    done = RerunReport()
    for root, reruns in by_root.items():
        indexed = (root / INDEX_FILE).is_file()
        alone = [r for r in reruns if not indexed and not r.before.get("sweep")]
        swept = [r for r in reruns if r not in alone]
        for rerun in alone:  # a run of `ductaflow run` somewhere: no runs root to index
            if not done.interrupted:
                done.alone.append(_run_alone(rerun.spec, opts))
        if swept and not done.interrupted:
            group = dataclasses.replace(opts, runs_root=root, force=True, only=None, dry_run=False)
            done.reports.append(execute_runs(RERUN_NAME, [r.spec for r in swept], group))
        for rerun in alone:
            _keep_attempts(rerun)
        kept = [r.spec.run_dir for r in swept if _keep_attempts(r)]
        if kept:
            IndexFile(root).merge(build_row(d, read_status(d)) for d in kept)
            _refresh_reports(root, {r.spec.sweep for r in swept})
    return done


def _run_alone(spec: RunSpec, options: SweepOptions) -> Outcome:
    """Execute one run under its claim, as a sweep's worker would, without an index."""
    from .task import run_task

    # one kernel: a warm process would only add its own start to it
    return run_task(spec, dataclasses.replace(options.run, warm=False), force=True, since=now())


def _refresh_reports(root: Path, sweeps: Iterable[str]) -> None:
    """Rewrite the HTML reports these sweeps already have, so they show the reruns."""
    from .report import write_report

    for sweep in sorted(sweeps):
        if not (root / sweep / "report.html").is_file():
            continue
        try:
            write_report(root, sweep=sweep, render_notebooks="failed")
        except Exception as exc:  # a report problem never undoes a rerun
            log.warning("%s: the report could not be rewritten (%s)", root / sweep, exc)


def quote_columns(query: str, columns: Iterable[str]) -> str:
    """``query`` with each column name that is not a Python name (``param.alpha``) in backticks,
    as ``DataFrame.query`` wants it; text in quotes or backticks already is left as it is."""
    names = sorted((str(c) for c in columns if not str(c).isidentifier()), key=len, reverse=True)
    # known names first, longest first; then any other prefixed name (an unknown one is said)
    known = "".join(f"{re.escape(n)}|" for n in names)
    pattern = re.compile(rf"(?<![\w.`])(?:{known}(?:{_PREFIXES})\.[\w.]*\w)(?!\w)")
    literal = re.compile(r"""('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|`[^`]*`)""")
    parts = literal.split(query)
    for i in range(0, len(parts), 2):  # the parts between literals
        parts[i] = pattern.sub(lambda m: f"`{m.group(0)}`", parts[i])
    return "".join(parts)


def select_runs(root: str | Path, where: str, *, only_failed: bool = False) -> list[Path]:
    """The run directories of ``<root>/index.csv`` whose rows match the pandas query ``where``
    (``param.alpha > 0.5 and status == 'failed'``). ``InputError`` for a query that cannot be
    evaluated there, in one line with the columns it can use."""
    frame = load_index(root)
    if frame.empty:
        raise InputError(f"{root}: no runs recorded there; give the runs root with --root")
    columns = ", ".join(map(str, frame.columns[:16])) + (", ..." if len(frame.columns) > 16 else "")
    query = quote_columns(where, frame.columns)
    unknown = [n for n in re.findall(r"`([^`]*)`", query) if n not in frame.columns]
    if unknown:
        raise InputError(
            f"--where {where!r}: no column {unknown[0]!r} in {root}/index.csv; it has {columns}"
        )
    try:
        picked = frame.query(query, engine="python")
    except Exception as exc:  # a syntax error, an unknown name, a comparison of wrong types
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(
            f"--where {where!r}: {type(exc).__name__}: {reason}; the index has the columns "
            f"{columns}"
        ) from None
    if only_failed:
        picked = picked[picked["status"] != OK]
    return [Path(d) for d in picked["run_dir"]]
