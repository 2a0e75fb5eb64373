"""The run table of a large report as data: compact columnar JSON that the page's script pages.

Past ``TABLE_ROWS_MAX`` runs an HTML row per run makes the page too big to write and to open
(~1.3 kB a row). Instead the page holds the table as columns, dictionary-encoded where values
repeat (status, sweep, text parameters, errors, tracebacks, the set of notebook links of a
run), numbers as numbers; ``templates/table.js`` renders it a page at a time, sorts and filters
it, failures first. Every run stays reachable with its notebook and ``CONFIG.json`` links.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..rundir import CONFIG_FILE
from ..spec import ERROR_ANCHOR
from .data import (
    ReportData,
    RunDetail,
    cell_value,
    flow_links,
    flows_from_columns,
    relative_href,
    traceback_tail,
)
from .fmt import GOOD, STATUS_COLORS, STATUS_ORDER, as_text, is_missing, status_rank

__all__ = ["PAGE_ROWS", "TABLE_ROWS_MAX", "RunTable", "run_table"]

#: Up to this many runs the table is HTML rows; past it, data paged by the page's script.
TABLE_ROWS_MAX = 2_000
#: Rows per page of a data table.
PAGE_ROWS = 100
#: Codes of a column with at most this many distinct values are one of these characters a row.
ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class RunTable:
    """All runs of a report as JSON-ready columns (see ``templates/table.js`` for the reader)."""

    n_runs: int
    columns: Mapping[str, Any]

    def to_json(self) -> str:
        """Compact JSON that is safe inside ``<script type="application/json">``."""
        text = json.dumps(self.columns, separators=(",", ":"), ensure_ascii=False)
        return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


class _Codes:
    """Dictionary encoding: each distinct value once, a small integer per row."""

    def __init__(self) -> None:
        self.values: list[Any] = []
        self.index: dict[Hashable, int] = {}
        self.codes: list[int] = []

    def add(self, key: Hashable, make: Any = None) -> None:
        code = self.index.get(key)
        if code is None:
            code = self.index[key] = len(self.values)
            self.values.append(key if make is None else make())
        self.codes.append(code)

    def packed(self) -> str | list[int]:
        """The codes as one character each when there are few values, else a list."""
        if len(self.values) > len(ALPHABET):
            return self.codes
        return "".join([ALPHABET[c] for c in self.codes])


def _column(column: Any, *, result: bool) -> dict[str, Any]:
    """A parameter or result column: numbers as numbers, anything else dictionary-encoded."""
    from pandas.api import types

    if types.is_numeric_dtype(column) and not types.is_bool_dtype(column):
        nums = column.astype(float).tolist()
        ints = bool(types.is_integer_dtype(column))
        cells = [None if v != v else v if math.isfinite(v) else str(v) for v in nums]
        codes = _Codes()
        for v in cells:
            codes.add(v)
            if len(codes.values) > len(cells) // 4:
                return {"num": cells, "int": ints}
        return {"nums": codes.values, "codes": codes.packed(), "int": ints}
    codes = _Codes()
    for v in column.tolist():
        key = None if is_missing(v) else as_text(v)
        codes.add(key, lambda v=v: _cell(v, result))
    if len(codes.values) == len(codes.codes):  # every value distinct: in row order
        return {"values": codes.values}
    return {"values": codes.values, "codes": codes.packed()}


def _cell(value: Any, result: bool) -> list[Any]:
    cell = cell_value(value, result=result)
    return [cell.text, cell.title] if cell.title else [cell.text]


def run_table(
    frame: Any,
    data: ReportData,
    details: Mapping[str, RunDetail] | None = None,
    base: str | Path | None = None,
) -> RunTable:
    """The runs of ``frame`` (the index rows ``data`` was made from) as a ``RunTable``.

    Rows are in the order of the HTML table: failures first, then by sweep and run.
    """
    details = details or {}
    base_dir = Path(base).absolute() if base is not None else None
    frame = frame.reset_index(drop=True)
    statuses = [as_text(s) for s in frame["status"].tolist()]
    sweeps = [as_text(s) for s in frame["sweep"].tolist()]
    runs = [as_text(s) for s in frame["run"].tolist()]
    order = sorted(range(len(frame)), key=lambda i: (status_rank(statuses[i]), sweeps[i], runs[i]))
    frame = frame.iloc[order].reset_index(drop=True)
    statuses = [statuses[i] for i in order]
    sweeps = [sweeps[i] for i in order]
    runs = [runs[i] for i in order]
    run_dirs = [as_text(d) for d in frame["run_dir"].tolist()]  # as write_report keys details
    flow_cols = [c for c in frame.columns if c.startswith("flow.") and c.endswith(".duration_s")]

    status_codes, sweep_codes, parent_codes = _Codes(), _Codes(), _Codes()
    link_codes, error_codes, tb_codes = _Codes(), _Codes(), _Codes()
    names: dict[int, str] = {}  # rows whose directory is not named after the run
    shared: dict[int, int] = {}  # id of a detail in ``details`` -> its links' code
    records = frame[["status", "run", *flow_cols]].to_dict("records") if not details else None
    for i, (status, sweep, run, run_dir) in enumerate(
        zip(statuses, sweeps, runs, run_dirs, strict=True)
    ):
        status_codes.add(status)
        sweep_codes.add(sweep)
        parent, _, name = run_dir.rpartition(os.sep)  # normalized: as os.path.split
        parent_codes.add(parent, lambda p=parent: relative_href(Path(p), base_dir) + "/")
        if name != run:
            names[i] = name
        detail = details.get(run_dir)
        if detail is None:  # made for this row alone
            record = records[i] if records is not None else frame.iloc[i].to_dict()
            detail = flows_from_columns(record, flow_cols)
            link_codes.add(detail.flows, lambda f=detail.flows: _links(f))
        elif (code := shared.get(id(detail))) is None:
            link_codes.add(detail.flows, lambda f=detail.flows: _links(f))
            shared[id(detail)] = link_codes.codes[-1]
        else:  # a detail that many runs share (their sweep's ok flows): its code, unhashed
            link_codes.codes.append(code)
        bad = status not in GOOD
        tb = detail.traceback if bad else None
        tb_codes.add(tb or "", lambda tb=tb: traceback_tail(tb))
    attempts = frame["attempts"].tolist() if "attempts" in frame else []
    # rows of runs that took more than one attempt: how many (few, so by row)
    retried = {i: int(n) for i, n in enumerate(attempts) if not is_missing(n) and int(n) > 1}
    # rows of optimize sweeps' best trials (one a sweep), marked ★ as in the HTML table
    best_runs = {(h.sweep, h.best_run) for h in data.histories}
    best = {i: 1 for i, key in enumerate(zip(sweeps, runs, strict=True)) if key in best_runs}
    for error in frame["error"].tolist() if "error" in frame else [None] * len(frame):
        error_codes.add(as_text(error))
    durations = [
        None if d != d or not math.isfinite(d) else round(d, 3)
        for d in frame["duration_s"].astype(float).tolist()
    ]
    param_cols = [f"param.{p}" for p in data.param_columns]
    result_cols = [f"result.{r}" for r in data.result_columns]
    columns = [
        {"name": c.split(".", 1)[1], "kind": kind, **_column(frame[c], result=result)}
        for cols, kind, result in ((param_cols, "param", False), (result_cols, "result", True))
        for c in cols
    ]
    payload = {
        "n": len(frame),
        "page": PAGE_ROWS,
        "statuses": status_codes.values,
        "status": status_codes.packed(),
        "order": [s for s in STATUS_ORDER if s in status_codes.index],
        "colors": STATUS_COLORS,
        "sweeps": sweep_codes.values,
        "sweep": sweep_codes.packed() if len(sweep_codes.values) > 1 else [],
        "run": runs,
        "parents": parent_codes.values,
        "parent": parent_codes.packed(),
        "names": names,
        "retried": retried,
        "best": best,
        "columns": columns,
        "duration": durations,
        "links": link_codes.values,
        "link": link_codes.packed(),
        "errors": error_codes.values,
        "error": error_codes.packed(),
        "tracebacks": tb_codes.values,
        "traceback": tb_codes.packed(),
        "config": CONFIG_FILE,
        "alphabet": ALPHABET,
    }
    return RunTable(len(frame), payload)


def _links(flows: Any) -> dict[str, Any]:
    """A run's notebook links relative to its directory: ``[label, file, status, title]``."""
    links, error_href = flow_links(flows, "", ERROR_ANCHOR)
    return {
        "nb": [[n.label, n.href and n.href[1:], n.status, n.title] for n in links],
        "err": error_href and error_href[1:],
    }
