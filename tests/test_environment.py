"""The environment record: this machine's packages, and the commit and state of the flows' repo."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from ductaflow.environment import capture_environment, git_state

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def test_it_lists_the_packages_this_python_imports(tmp_path: Path) -> None:
    env = capture_environment()
    dists = env.record["distributions"]
    assert dists["pandas"] == metadata.version("pandas")
    assert dists["nbclient"] == metadata.version("nbclient")
    assert env.record["python"] == sys.executable
    path = env.write(tmp_path / "sweep")
    assert path == tmp_path / "sweep" / ".environment" / f"{env.hash}.json"
    assert json.loads(path.read_text(encoding="utf-8")) == env.record
    assert capture_environment().hash == env.hash  # the same environment, the same hash


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


@needs_git
def test_the_flows_commit_and_dirty_flag(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    flow = repo / "flow.py"
    flow.write_text("# %%\nx = 1\n", encoding="utf-8")
    _git(repo, "add", "flow.py")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "flow")
    commit = _git(repo, "rev-parse", "HEAD")

    clean = capture_environment([flow])
    assert clean.git_commit == commit
    assert clean.record["git"]["dirty"] is False
    (repo / "runs").mkdir()  # untracked output does not make the tree dirty
    (repo / "runs" / "x.txt").write_text("x", encoding="utf-8")
    assert git_state(flow)["dirty"] is False

    flow.write_text("# %%\nx = 2\n", encoding="utf-8")
    dirty = capture_environment([flow])
    assert dirty.record["git"] == {"commit": commit, "dirty": True, "root": str(repo)}
    assert dirty.hash != clean.hash


def test_no_repository_no_git_record(tmp_path: Path) -> None:
    flow = tmp_path / "flow.py"
    flow.write_text("# %%\n", encoding="utf-8")
    assert git_state(flow) is None
    assert capture_environment([flow]).git_commit is None
