"""``runs/index.csv``: one row per run directory under a runs root, and its DataFrame view.

Rows are built from each run's ``status.json``, ``CONFIG.json`` and ``results.json``. While a sweep
runs, each finished run is *appended* as one line (under a lock, in one write), so the cost per run
stays constant and a conductor killed at any point leaves every finished run in the index. The
whole file is rewritten atomically only when its columns change and when a sweep starts and ends;
readers keep the last row of each ``run_dir``.

The file is a cache of the run directories. ``run_dir`` is recorded relative to the runs root
(``<sweep>/<run>``), so a runs root can be moved, copied or zipped. Every full read checks it:
its header, each row's field count, a cut-short last line, and its rows against the run
directories on disk. Damage (an invalid byte, a broken quote, an empty file, a lost row, a
directory in its place) is logged as one warning and repaired from the run directories. Rebuilds,
repairs and appends all hold ``.index.lock``.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import logging
import operator
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from .config import flatten
from .errors import StorageError
from .lifecycle import UNFINISHED_ERROR, shown_status
from .rundir import (
    CONFIG_FILE,
    LABELS_FILE,
    STATUS_FILE,
    atomic_write_text,
    file_lock,
    is_claimed,
    move_aside,
    read_status,
    storage_error,
)
from .spec import RUNNING, count_warnings

__all__ = [
    "BASE_COLUMNS",
    "INDEX_FILE",
    "UNFINISHED_ERROR",
    "IndexFile",
    "build_row",
    "load_index",
    "parse_index",
    "scan_rows",
]

log = logging.getLogger("ductaflow")

INDEX_FILE = "index.csv"
RESULTS_FILE = "results.json"
BASE_COLUMNS = (
    "sweep",
    "run",
    "run_dir",
    "status",
    "started",
    "finished",
    "duration_s",
    "attempts",
    "error",
    "config_hash",
)
#: Columns after ``BASE_COLUMNS`` when present (an index written before them still reads):
#: the number of warnings, the environment record's hash and the flows' git commit.
RECORD_COLUMNS = ("warnings", "env_hash", "git_commit")
_PREFIX_ORDER = ("param.", "result.", "flow.")


def _text(text: str) -> str:
    """``text``, with what UTF-8 cannot hold (a lone surrogate) as a backslash escape."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, bool | int | float):
        try:
            return str(value)
        except ValueError:  # an int over Python's digit limit, from a hand-written file
            return f"<int of about {value.bit_length() * 0.30103:.0f} digits>"
    return _text(json.dumps(value, ensure_ascii=False))


def _read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def build_row(
    run_dir: Path,
    status: Mapping[str, Any] | None,
    config: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """The index row of a run directory (all values as CSV text)."""
    status = dict(status or {})
    if config is None:
        loaded = _read_json(run_dir / CONFIG_FILE)
        config = loaded if isinstance(loaded, dict) else {}
    row = _base_row(run_dir, status)
    labels = _read_json(run_dir / LABELS_FILE)  # sample, trial: see RunSpec.labels
    if isinstance(labels, dict):
        row.update({_text(str(k)): v for k, v in labels.items() if str(k) not in row})
    row.update({f"param.{_text(k)}": v for k, v in flatten(config).items()})
    results = _read_json(run_dir / RESULTS_FILE)
    if isinstance(results, dict):
        row.update({f"result.{_text(str(k))}": v for k, v in results.items()})
    for flow in status.get("flows", ()):
        if isinstance(flow, dict) and flow.get("duration_s") is not None:
            row[f"flow.{_text(str(flow.get('name')))}.duration_s"] = flow["duration_s"]
    return {k: _cell(v) for k, v in row.items()}


def _base_row(run_dir: Path, status: Mapping[str, Any]) -> dict[str, Any]:
    """The ``BASE_COLUMNS`` and ``RECORD_COLUMNS`` of a run's row: its ``status.json`` alone."""
    state, error = shown_status(run_dir, status.get("status", ""), status.get("error"))
    return {
        "sweep": status.get("sweep") or run_dir.parent.name,
        "run": status.get("name") or run_dir.name,
        "run_dir": str(run_dir),
        "status": state,
        "started": status.get("started"),
        "finished": status.get("finished"),
        "duration_s": status.get("duration_s"),
        "attempts": status.get("attempts"),
        "error": error,
        "config_hash": status.get("config_hash"),
        "warnings": count_warnings(status.get("warnings")) if status else None,
        "env_hash": status.get("env_hash"),
        "git_commit": status.get("git_commit"),
    }


def run_dirs(root: Path, skip: Iterable[str] = ()) -> Iterator[Path]:
    """Run directories under a runs root: ``<root>/<sweep>/<run>/`` with a ``status.json``.

    Those whose ``<sweep>/<run>`` is in ``skip`` are left out unlooked at: each sweep folder is
    listed once, and only a directory not in ``skip`` costs a look for its ``status.json``.
    """
    known: dict[str, set[str]] = {}
    for key in skip:
        sweep, _, name = key.partition("/")
        known.setdefault(sweep, set()).add(name)
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for sweep in sorted(os.scandir(root), key=lambda e: e.name):
            if not sweep.is_dir() or sweep.name.startswith("."):
                continue
            try:
                names = set(os.listdir(sweep.path)) - known.get(sweep.name, set())
            except OSError:  # a sweep folder that cannot be listed holds no readable run
                continue
            for name in sorted(names):
                path = os.path.join(sweep.path, name)
                if os.path.isdir(path) and os.path.exists(os.path.join(path, STATUS_FILE)):
                    yield Path(path)


def scan_rows(root: Path, *, base: bool = False) -> list[dict[str, str]]:
    """Rows for every run directory under ``root``, read from disk; with ``base``, only the
    columns its ``status.json`` gives (``BASE_COLUMNS``, ``RECORD_COLUMNS``: one file a run,
    not four, for ``ductaflow status``)."""
    dirs = run_dirs(Path(root).absolute())
    if not base:
        return [build_row(d, read_status(d)) for d in dirs]
    return [{k: _cell(v) for k, v in _base_row(d, read_status(d) or {}).items()} for d in dirs]


def order_columns(columns: Iterable[str]) -> list[str]:
    present = set(columns)
    ordered = list(BASE_COLUMNS) + [c for c in RECORD_COLUMNS if c in present]
    for prefix in _PREFIX_ORDER:
        ordered += sorted(c for c in present if c.startswith(prefix))
    ordered += sorted(present - set(ordered))
    return ordered


def parse_index(text: str) -> tuple[list[dict[str, str]], str | None]:
    """The rows of an ``index.csv`` text, and what is wrong with it (None when it is sound).

    Sound means: a header that starts with ``BASE_COLUMNS`` and names each column once, every
    row with one field per column and a ``run_dir``, and a last line that ends the file.
    """
    header, records, problem = _parse_fields(text)
    return [dict(zip(header, fields, strict=True)) for fields in records], problem


def _parse_fields(text: str) -> tuple[list[str], list[list[str]], str | None]:
    """``parse_index`` as the header and each row's fields: checked whole, at C speed; a text
    that is not sound is read again line by line (``_parse_slowly``) to say where."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
        records = list(reader)
    except (csv.Error, StopIteration):
        return _parse_slowly(text)
    if (
        header[: len(BASE_COLUMNS)] != list(BASE_COLUMNS)
        or len(set(header)) != len(header)
        or not text.endswith("\n")
        or (records and set(map(len, records)) != {len(header)})
        or not all(map(operator.itemgetter(BASE_COLUMNS.index("run_dir")), records))
    ):
        return _parse_slowly(text)
    return header, records, None


def _parse_slowly(text: str) -> tuple[list[str], list[list[str]], str | None]:
    """``_parse_fields`` row by row: what is wrong, and at which line."""
    if not text.strip():
        return [], [], "it is empty"
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
        if header[: len(BASE_COLUMNS)] != list(BASE_COLUMNS):
            return [], [], f"its header is not ductaflow's ({','.join(BASE_COLUMNS[:3])},...)"
        if len(set(header)) != len(header):
            return [], [], "its header names a column twice"
        records = []
        for fields in reader:
            if len(fields) != len(header):
                return (
                    [],
                    [],
                    (f"line {reader.line_num} has {len(fields)} fields, the header {len(header)}"),
                )
            if not fields[BASE_COLUMNS.index("run_dir")]:
                return [], [], f"line {reader.line_num} has no run_dir"
            records.append(fields)
    except csv.Error as exc:
        return [], [], f"line {reader.line_num} is not valid CSV ({exc})"
    if not text.endswith("\n"):
        return [], [], "its last line is cut short"
    return header, records, None


def _csv_text(rows: Iterable[Mapping[str, str]]) -> str:
    rows = sorted(rows, key=lambda row: row["run_dir"])
    columns = order_columns({k for row in rows for k in row})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


#: errnos after which a reader goes on without writing its repair to disk
_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


class IndexFile:
    """``<root>/index.csv``, written under ``<root>/.index.lock`` by any number of conductors.

    Rows handed to it may carry an absolute ``run_dir``; it records each relative to the root.
    Disk refusals (read-only, full, permission) are raised as ``StorageError``.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).absolute()
        self.path = self.root / INDEX_FILE
        self._lock_path = self.root / ".index.lock"
        self._prefix = str(self.root).rstrip("/") + "/"

    # -- run_dir: relative on disk, absolute in memory ------------------------------------------
    def key(self, run_dir: str | Path) -> str:
        """A run directory as the index records it: ``<sweep>/<run>``, relative to the root.

        An absolute path outside the root (an index written before ``run_dir`` was relative,
        in a root since moved or copied) keeps its last two parts, which is where it now is.
        """
        fast = self._plain_key(os.fspath(run_dir))
        if fast is not None:
            return fast
        path = Path(run_dir)
        if not path.is_absolute():
            return path.as_posix()
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return Path(*path.parts[-2:]).as_posix()

    def _plain_key(self, text: str) -> str | None:
        """``key`` of a text that needs no parsing (a relative ``<sweep>/<run>``, or one under
        the root): what ``Path`` would give, at a fraction of its cost (300,000 keys are made
        when a 100,000-run index is read). None for anything else."""
        if os.sep != "/":
            return None
        if text.startswith(self._prefix):
            text = text[len(self._prefix) :]
        elif text.startswith("/"):
            return None
        parts = text.split("/")
        return None if "" in parts or "." in parts else text

    def resolve_text(self, key: str) -> str:
        """``str(resolve(key))``, without a ``Path`` when the key is plain."""
        plain = self._plain_key(key)
        return self._prefix + plain if plain is not None else str(self.resolve(key))

    def resolve(self, key: str) -> Path:
        """The run directory a recorded ``run_dir`` names, under this root."""
        return self.root / self.key(key)

    def _normal(self, row: Mapping[str, str]) -> dict[str, str]:
        return {**row, "run_dir": self.key(row["run_dir"])}

    # -- locking, reading, checking -------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise storage_error(self.root, exc, "create the runs root") from None
        with file_lock(self._lock_path):
            yield

    def _load(self, fix: bool) -> tuple[list[str], list[list[str]] | None, str | None, str]:
        """The file's header and rows (None when there is no file), what is wrong with it, and
        its text."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return [], None, None, ""
        except IsADirectoryError:
            if not fix:
                return [], [], "it is a directory", ""
            try:
                target = move_aside(self.path)
            except OSError as exc:
                raise storage_error(self.path, exc, "move the directory aside") from None
            return [], [], f"it was a directory (moved to {target.name})", ""
        except OSError as exc:
            raise storage_error(self.path, exc, "read the index") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            return [], [], f"it is not valid UTF-8 (byte {exc.start})", ""
        return (*_parse_fields(text), text)

    def _checked(
        self, fix: bool = True, rows: bool = True
    ) -> tuple[list[dict[str, str]] | None, bool, str | None]:
        """The index's rows checked against the run directories, repaired where they differ;
        whether they differ from the file (then the caller writes them); and the file's text
        when it is already ``_csv_text`` of the rows (sorted, one row per run, plain keys).
        Without ``rows``, the rows are None when that text stands for them.

        Each sweep folder is listed once: a run directory the file lists is taken as listed
        (the file is appended to as each run ends), and only one it does not list, or one it
        records ``running``, is looked into. No file is opened per listed run.
        """
        header, records, problem, text = self._load(fix)
        if records is None or problem is not None:
            dirs = {self.key(d): d for d in run_dirs(self.root)}
            if problem is not None and (dirs or problem != "it is empty"):
                log.warning(
                    "%s: %s; rebuilt it from the %d run directories", self.path, problem, len(dirs)
                )
            return [self._normal(build_row(d, read_status(d))) for d in dirs.values()], True, None
        at, state = header.index("run_dir"), header.index("status")
        by_key: dict[str, list[str] | dict[str, str]] = {}
        renamed = False
        for fields in records:  # the last row of a run_dir wins
            key = fields[at]
            if self._plain_key(key) != key:
                fields, renamed = [*fields[:at], self.key(key), *fields[at + 1 :]], True
            by_key[fields[at]] = fields
        lost = [self.key(d) for d in run_dirs(self.root, skip=by_key) if not is_claimed(d)]
        # a run still recorded running is one whose row is not due yet (its process died and
        # no one has settled it): only a finished run without its row is damage to report
        finished = [
            k for k in lost if (read_status(self.resolve(k)) or {}).get("status") != RUNNING
        ]
        if finished:
            log.warning(
                "%s: %d run director%s missing from it (%s%s); added from the run directories",
                self.path, len(finished), "y was" if len(finished) == 1 else "ies were",
                finished[0], ", ..." if len(finished) > 1 else "",
            )  # fmt: skip
        stale = [  # recorded running, but no process holds the run any more
            k
            for k, fields in by_key.items()
            if fields[state] == RUNNING and self._is_run_dir(k) and not is_claimed(self.resolve(k))
        ]
        for k in [*lost, *stale]:
            by_key[k] = self._normal(build_row(self.resolve(k), read_status(self.resolve(k))))
        changed = bool(lost or stale or len(by_key) != len(records))
        keys = list(by_key)
        canonical = (
            not changed
            and not renamed
            and bool(records)
            and keys == sorted(keys)
            and header == order_columns(header)
        )
        if canonical and not rows:
            return None, False, text
        out = [
            v if isinstance(v, dict) else dict(zip(header, v, strict=True)) for v in by_key.values()
        ]
        return out, changed, text if canonical else None

    def _is_run_dir(self, key: str) -> bool:
        """Whether ``<root>/<key>`` is a run directory as ``run_dirs`` finds them."""
        sweep, _, name = key.partition("/")
        return (
            bool(sweep and name)
            and "/" not in name
            and not sweep.startswith(".")
            and os.path.exists(os.path.join(self.root, key, STATUS_FILE))
        )

    def _sound_tail(self) -> list[str] | None:
        """The header, when the file is one a line can be appended to (ends in a newline)."""
        try:
            with open(self.path, "rb") as fh:
                first = fh.readline()
                fh.seek(0, os.SEEK_END)
                if fh.tell() == 0:
                    return None
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    return None
            header = next(csv.reader([first.decode("utf-8")]), None)
        except (OSError, csv.Error, UnicodeDecodeError):
            return None
        if not header or header[: len(BASE_COLUMNS)] != list(BASE_COLUMNS):
            return None
        return header

    def _write(self, rows: Iterable[Mapping[str, str]]) -> None:
        text = _csv_text(rows)
        try:
            if self.path.is_dir():
                target = move_aside(self.path)
                log.warning("%s: a directory in its place; moved it to %s", self.path, target.name)
            atomic_write_text(self.path, text)
        except OSError as exc:
            raise storage_error(self.path, exc, "write the index") from None

    # -- the operations -------------------------------------------------------------------------
    def read(self) -> list[dict[str, str]]:
        """The rows, checked against the run directories; a repair is written back when the
        disk allows, else only logged (a read-only runs root still reads)."""
        return self._read()[0] or []

    def csv_text(self) -> str:
        """``read()`` as CSV text: the file's own when it needs no change (no row made and
        written again to be parsed again), else the rows written as the file is."""
        rows, text = self._read(rows=False)
        return text if text is not None else _csv_text(rows or ())

    def _read(self, rows: bool = True) -> tuple[list[dict[str, str]] | None, str | None]:
        try:
            with self._locked():
                got, changed, text = self._checked(rows=rows)
                if changed:
                    try:
                        self._write(got or ())
                    except StorageError as exc:
                        log.warning("%s; the repaired index is used in memory only", exc)
                return got, text
        except StorageError as exc:
            if exc.errno not in _READ_ONLY:
                raise
            got, _, text = self._checked(fix=False, rows=rows)
            return got, text

    def merge(self, rows: Iterable[Mapping[str, str]]) -> None:
        """Replace (or add) the rows of these run directories; keep (and check) every other."""
        with self._locked():
            merged = {row["run_dir"]: row for row in self._checked()[0] or ()}
            merged.update((r["run_dir"], r) for r in map(self._normal, rows))
            self._write(merged.values())

    def append(self, row: Mapping[str, str]) -> None:
        """Add one finished run: one appended line, or a rewrite when it brings new columns
        (or the file is not one a line can be added to)."""
        row = self._normal(row)
        with self._locked():
            header = self._sound_tail()
            if header is None or not set(row) <= set(header):
                merged = {r["run_dir"]: r for r in self._checked()[0] or ()}
                merged[row["run_dir"]] = row
                self._write(merged.values())
                return
            buf = io.StringIO()
            csv.writer(buf, lineterminator="\n").writerow([row.get(c, "") for c in header])
            data = buf.getvalue().encode("utf-8")
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
                try:
                    if os.write(fd, data) != len(data):
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                finally:
                    os.close(fd)
            except OSError as exc:
                raise storage_error(self.path, exc, "append to the index") from None

    def compact(self) -> None:
        """Rewrite the file with one row per run directory."""
        self.merge(())

    def rebuild(self) -> list[dict[str, str]]:
        """Rewrite the index from the run directories alone (under the lock, so that no run
        appended meanwhile is lost)."""
        with self._locked():
            rows = [self._normal(row) for row in scan_rows(self.root)]
            self._write(rows)
        return rows


def load_index(root: str | Path = "runs", *, rebuild: bool = False) -> Any:
    """``<root>/index.csv`` as a DataFrame with typed columns, one row per run directory.

    The file is checked (and repaired) against the run directories first, and built from them
    when it is missing (or when ``rebuild``). ``run_dir`` holds absolute paths under ``root``.
    """
    import pandas as pd

    index = IndexFile(root)
    csv_text = _csv_text(index.rebuild()) if rebuild else index.csv_text()
    text = {c: "string" for c in ("sweep", "run", "run_dir", "status", "error", "config_hash",
                                  "env_hash", "git_commit")}  # fmt: skip
    frame = pd.read_csv(io.StringIO(csv_text), dtype=text)
    frame["run_dir"] = pd.array([index.resolve_text(k) for k in frame["run_dir"]], dtype="string")
    for column in ("started", "finished"):
        frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    frame["duration_s"] = frame["duration_s"].astype("float64")
    frame["attempts"] = frame["attempts"].astype("Int64")
    if "warnings" in frame:
        frame["warnings"] = frame["warnings"].astype("Int64")
    return frame
