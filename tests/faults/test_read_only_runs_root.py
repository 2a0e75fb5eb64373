"""Fault 5 (read-only): a runs root on a read-only file system gives one error line, no
traceback; the sweep prints its summary first; reading the index still works."""

from __future__ import annotations

from pathlib import Path

from conftest import run_cli
from faultkit import one_error_line, remount_read_only, tmpfs, write_flow, write_spec

from ductaflow.index import load_index


def test_sweep_index_and_report_on_a_read_only_root(tmp_path: Path) -> None:
    write_flow(tmp_path)
    spec = write_spec(tmp_path, grid={"x": [1, 2]})
    with tmpfs(tmp_path / "disk") as disk:
        root = disk / "runs"
        proc = run_cli("sweep", spec, "--runs-root", root, "-j", "2", "--no-report",
                       "--no-progress", cwd=tmp_path)  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        remount_read_only(disk)

        write_spec(tmp_path, grid={"x": [1, 2, 3]})  # one new run to make
        proc = run_cli("sweep", spec, "--runs-root", root, "--no-report", "--no-progress",
                       cwd=tmp_path)  # fmt: skip
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert proc.stdout.splitlines()[-1].startswith("s: stopped:"), proc.stdout
        assert "read-only" in one_error_line(proc.stderr)

        fresh = run_cli("sweep", spec, "--runs-root", disk / "fresh", "--no-report",
                        cwd=tmp_path)  # fmt: skip
        assert fresh.returncode == 1 and "read-only" in one_error_line(fresh.stderr)

        proc = run_cli("index", root, cwd=tmp_path)
        assert proc.returncode == 1 and "read-only" in one_error_line(proc.stderr)
        proc = run_cli("report", root, cwd=tmp_path)
        assert proc.returncode == 1 and "read-only" in one_error_line(proc.stderr)

        assert run_cli("status", root, cwd=tmp_path).returncode == 0
        frame = load_index(root)
        assert len(frame) == 2 and set(frame["status"]) == {"ok"}
