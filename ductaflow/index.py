"""``runs/index.csv``: one row per run directory under a runs root, and its DataFrame view.

Rows are built from each run's ``status.json``, ``CONFIG.json`` and ``results.json``. While a sweep
runs, each finished run is *appended* as one line (under a lock, in one write), so the cost per run
stays constant and a conductor killed at any point leaves every finished run in the index. The
whole file is rewritten atomically only when its columns change and when a sweep starts and ends;
readers keep the last row of each ``run_dir``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from .config import flatten
from .lifecycle import UNFINISHED_ERROR, shown_status
from .rundir import (
    CONFIG_FILE,
    STATUS_FILE,
    atomic_write_text,
    file_lock,
    read_status,
)

__all__ = [
    "BASE_COLUMNS",
    "INDEX_FILE",
    "UNFINISHED_ERROR",
    "IndexFile",
    "build_row",
    "load_index",
    "scan_rows",
]

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
_PREFIX_ORDER = ("param.", "result.", "flow.")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


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
    state, error = shown_status(run_dir, status.get("status", ""), status.get("error"))
    row = {
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
    }
    row.update({f"param.{k}": v for k, v in flatten(config).items()})
    results = _read_json(run_dir / RESULTS_FILE)
    if isinstance(results, dict):
        row.update({f"result.{k}": v for k, v in results.items()})
    for flow in status.get("flows", ()):
        if isinstance(flow, dict) and flow.get("duration_s") is not None:
            row[f"flow.{flow.get('name')}.duration_s"] = flow["duration_s"]
    return {k: _cell(v) for k, v in row.items()}


def run_dirs(root: Path) -> Iterator[Path]:
    """Run directories under a runs root: ``<root>/<sweep>/<run>/`` with a ``status.json``."""
    with contextlib.suppress(FileNotFoundError):
        for sweep in sorted(os.scandir(root), key=lambda e: e.name):
            if not sweep.is_dir() or sweep.name.startswith("."):
                continue
            for run in sorted(os.scandir(sweep.path), key=lambda e: e.name):
                if run.is_dir() and os.path.exists(os.path.join(run.path, STATUS_FILE)):
                    yield Path(run.path)


def scan_rows(root: Path) -> list[dict[str, str]]:
    """Rows for every run directory under ``root``, read from disk."""
    return [build_row(d, read_status(d)) for d in run_dirs(Path(root).absolute())]


def order_columns(columns: Iterable[str]) -> list[str]:
    present = set(columns)
    ordered = list(BASE_COLUMNS)
    for prefix in _PREFIX_ORDER:
        ordered += sorted(c for c in present if c.startswith(prefix))
    ordered += sorted(present - set(ordered))
    return ordered


class IndexFile:
    """``<root>/index.csv``, written under ``<root>/.index.lock`` by any number of conductors."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).absolute()
        self.path = self.root / INDEX_FILE
        self._lock_path = self.root / ".index.lock"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with file_lock(self._lock_path):
            yield

    def _read(self) -> list[dict[str, str]]:
        try:
            with open(self.path, newline="", encoding="utf-8") as fh:
                return [row for row in csv.DictReader(fh) if row.get("run_dir")]
        except FileNotFoundError:
            return []
        except (OSError, csv.Error, UnicodeDecodeError):
            return scan_rows(self.root)  # unreadable: rebuild from the run directories

    def _header(self) -> list[str] | None:
        try:
            with open(self.path, newline="", encoding="utf-8") as fh:
                return next(csv.reader([fh.readline()]), None)
        except (FileNotFoundError, csv.Error, UnicodeDecodeError):
            return None

    def _write(self, rows: Iterable[Mapping[str, str]]) -> None:
        rows = sorted(rows, key=lambda row: row["run_dir"])
        columns = order_columns({k for row in rows for k in row})
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.path, buf.getvalue())

    def merge(self, rows: Iterable[Mapping[str, str]]) -> None:
        """Replace (or add) the rows of these run directories; keep every other row."""
        with self._locked():
            merged = {row["run_dir"]: row for row in self._read()}
            merged.update((row["run_dir"], row) for row in rows)
            self._write(merged.values())

    def append(self, row: Mapping[str, str]) -> None:
        """Add one finished run: one appended line, or a rewrite when it brings new columns."""
        with self._locked():
            header = self._header()
            if header is None or not set(row) <= set(header):
                merged = {r["run_dir"]: r for r in self._read()}
                merged[row["run_dir"]] = dict(row)
                self._write(merged.values())
                return
            buf = io.StringIO()
            csv.writer(buf, lineterminator="\n").writerow([row.get(c, "") for c in header])
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            try:
                os.write(fd, buf.getvalue().encode("utf-8"))
            finally:
                os.close(fd)

    def compact(self) -> None:
        """Rewrite the file with one row per run directory."""
        self.merge(())

    def rebuild(self) -> list[dict[str, str]]:
        """Rewrite the index from the run directories alone."""
        rows = scan_rows(self.root)
        with self._locked():
            self._write(rows)
        return rows


def load_index(root: str | Path = "runs", *, rebuild: bool = False) -> Any:
    """``<root>/index.csv`` as a DataFrame with typed columns, one row per run directory.

    Built from the run directories when the file is missing (or when ``rebuild``).
    """
    import pandas as pd

    index = IndexFile(root)
    if rebuild or not index.path.exists():
        index.rebuild()
    text_columns = {c: "string" for c in ("sweep", "run", "run_dir", "status", "error")}
    frame = pd.read_csv(index.path, dtype={**text_columns, "config_hash": "string"})
    frame = frame.drop_duplicates("run_dir", keep="last").reset_index(drop=True)
    for column in ("started", "finished"):
        frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    frame["duration_s"] = frame["duration_s"].astype("float64")
    frame["attempts"] = frame["attempts"].astype("Int64")
    return frame
