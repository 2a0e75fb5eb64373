"""Fault 5 (disk full): the sweep ends with its summary line and one error line; every run
that finished is in the index."""

from __future__ import annotations

from pathlib import Path

from conftest import read_json, run_cli
from faultkit import index_rows, one_error_line, tmpfs, write_flow, write_spec


def test_a_full_disk_ends_the_sweep_cleanly(tmp_path: Path) -> None:
    write_flow(tmp_path)
    spec = write_spec(tmp_path, grid={"x": list(range(10))}, base={"size": 200_000})
    with tmpfs(tmp_path / "disk", size="1m") as disk:
        root = disk / "runs"
        proc = run_cli("sweep", spec, "--runs-root", root, "-j", "2", "--no-progress",
                       cwd=tmp_path)  # fmt: skip
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert proc.stdout.splitlines()[-1].startswith("s: stopped:"), proc.stdout
        assert "disk is full" in one_error_line(proc.stderr)
        finished = {
            d.name
            for d in (root / "s").iterdir()
            if (d / "status.json").exists() and read_json(d / "status.json")["status"] == "ok"
        }
        assert finished, "no run finished before the disk was full"
        indexed = {r["run"] for r in index_rows(root) if r["status"] == "ok"}
        assert finished <= indexed, "a finished run is missing from the index"
        assert len(finished) < 10
