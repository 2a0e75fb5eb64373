"""Fault 7: ``ductaflow index`` while a sweep runs loses no row and shows no stale status.

The rebuild scanned the run directories before taking the index lock, so a run that finished
(and appended its row) meanwhile was overwritten by the older scan.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from faultkit import copy_flow, index_rows, write_flow, write_spec
from helpers import DEADLINE, run_cli, wait_for

from ductaflow.index import IndexFile, build_row
from ductaflow.rundir import RunLock, file_lock, read_status, write_json


def waits_for_lock(path: Path) -> bool:
    """Whether a thread of this process is blocked in ``flock`` on ``path`` (``/proc/locks``
    lists a blocked request as ``-> FLOCK ... PID MAJOR:MINOR:INODE``)."""
    inode = str(path.stat().st_ino)
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" in fields and fields[-4] == str(os.getpid()) and fields[-3].split(":")[-1] == inode:
            return True
    return False


def test_a_rebuild_waits_for_the_lock_before_it_scans(tmp_path: Path) -> None:
    write_flow(tmp_path)
    spec = write_spec(tmp_path, grid={"x": [1, 2]})
    proc = run_cli("sweep", spec, "-j", "2", "--no-report", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    root = tmp_path / "runs"
    first, second = sorted((root / "s").iterdir())
    finished = read_status(second)
    assert finished is not None
    write_json(second / "status.json", {**finished, "status": "running", "finished": None})
    claim = RunLock(second)  # the run is in flight, claimed by its worker
    assert claim.acquire()
    newcomer = root / "s" / "x=9-newcomer"

    index = IndexFile(root)
    with file_lock(root / ".index.lock"):  # a worker appending, as a rebuild starts
        rebuild = threading.Thread(target=index.rebuild)
        rebuild.start()
        # the rebuild is blocked on the lock (an event, not a pause it hopefully reached it in)
        wait_for(lambda: waits_for_lock(root / ".index.lock"), what="the rebuild to wait")
        # meanwhile: `second` finishes, a new run finishes, both append their rows
        write_json(second / "status.json", finished)
        claim.release()
        shutil.copytree(first, newcomer)
        status = json.loads((newcomer / "status.json").read_text())
        write_json(newcomer / "status.json", {**status, "name": newcomer.name})
        header = next(csv.reader(io.StringIO((root / "index.csv").read_text())))
        with open(root / "index.csv", "a", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            for run_dir in (second, newcomer):
                row = build_row(run_dir, read_status(run_dir))
                row["run_dir"] = index.key(row["run_dir"])
                writer.writerow([row.get(c, "") for c in header])
    rebuild.join(DEADLINE)
    rows = {r["run"]: r["status"] for r in index_rows(root)}
    assert rows == {first.name: "ok", second.name: "ok", newcomer.name: "ok"}, rows


def test_index_in_a_loop_during_a_real_sweep(tmp_path: Path) -> None:
    copy_flow(tmp_path, "work.py")
    spec = write_spec(tmp_path, flow="work.py", grid={"x": list(range(8))}, base={"sleep": 0.3})
    root = tmp_path / "runs"
    sweep = subprocess.Popen(
        [sys.executable, "-m", "ductaflow", "sweep", str(spec), "-j", "4", "--no-report",
         "--no-progress"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    rebuilds = 0
    while sweep.poll() is None:
        if root.is_dir():
            IndexFile(root).rebuild()
            rebuilds += 1
        time.sleep(0.02)
    out, err = sweep.communicate()
    assert sweep.returncode == 0, out + err
    assert "8 ok" in out and rebuilds > 3, (out, rebuilds)
    rows = index_rows(root)
    assert len(rows) == 8 and {r["status"] for r in rows} == {"ok"}, rows
