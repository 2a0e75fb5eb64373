"""The environment a sweep ran in: Python, platform, installed distributions, the flows' commit.

Recorded once per sweep as ``<runs root>/.environment/<hash>.json`` (one file per distinct
environment, shared by the sweeps of a runs root; a dot folder, so that a sweep's folder holds only
its runs and the index never takes it for a sweep); each run's ``status.json`` names the hash
(``env_hash``) and the flows' commit (``git_commit``), so a strange result can be traced to the
packages it ran with, and runs of one sweep that ran in different environments can be told apart.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ENVIRONMENT_DIR",
    "Environment",
    "capture_environment",
    "git_state",
    "record_environment",
]

log = logging.getLogger("ductaflow")

ENVIRONMENT_DIR = ".environment"
_GIT_TIMEOUT_S = 10.0


def git_state(path: Path) -> dict[str, Any] | None:
    """``{"commit", "dirty", "root"}`` of the git repository holding ``path``, or None.

    ``dirty`` is True when tracked files differ from the commit (untracked files do not count:
    a runs root inside the repository would make every tree dirty).
    """
    git = shutil.which("git")
    if git is None:
        return None
    where = path if path.is_dir() else path.parent
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}  # a status must never take the index lock

    def ask(*args: str) -> str | None:
        try:
            proc = subprocess.run(
                [git, "-C", str(where), *args],
                capture_output=True, text=True, timeout=_GIT_TIMEOUT_S, env=env,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    found = (ask("rev-parse", "HEAD", "--show-toplevel") or "").splitlines()
    if not found:
        return None
    status = ask("status", "--porcelain", "--untracked-files=no")
    return {"commit": found[0], "dirty": bool(status), "root": found[1] if len(found) > 1 else None}


def _distributions() -> dict[str, str]:
    """Name and version of each installed distribution, read from its metadata's header (what
    ``importlib.metadata`` gives as ``metadata["Name"]`` and ``version``, at a fifth of its
    cost: no email parser)."""
    from importlib import metadata

    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name, version = _name_version(
            dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
        )
        if name and name not in found:  # the first on sys.path is the one imported
            found[name] = version or ""
    return dict(sorted(found.items(), key=lambda item: item[0].lower()))


def _name_version(text: str) -> tuple[str | None, str | None]:
    """The ``Name`` and ``Version`` fields of a core-metadata header (the first of each)."""
    name = version = None
    for line in text.partition("\n\n")[0].splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        if name is None and key == "Name":
            name = value.strip()
        elif version is None and key == "Version":
            version = value.strip()
    return name, version


@dataclass(frozen=True)
class Environment:
    """One environment record and its hash (over the canonical JSON of the record)."""

    record: dict[str, Any]
    hash: str

    @property
    def git_commit(self) -> str | None:
        git = self.record.get("git")
        return git.get("commit") if isinstance(git, dict) else None

    def write(self, root: Path) -> Path:
        """``<root>/.environment/<hash>.json``, written once (atomically) and then kept."""
        from .rundir import write_json

        path = root / ENVIRONMENT_DIR / f"{self.hash}.json"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json(path, self.record)
        return path


def capture_environment(flows: Iterable[Path] = ()) -> Environment:
    """This process's environment: what its kernels run with (they use this Python)."""
    flows = list(flows)
    record: dict[str, Any] = {
        "python": sys.executable,
        "python_version": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "distributions": _distributions(),
        "git": git_state(flows[0]) if flows else None,
    }
    canonical = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return Environment(record, hashlib.sha256(canonical.encode()).hexdigest()[:12])


def record_environment(root: Path, flows: Iterable[Path] = ()) -> Environment | None:
    """Capture this environment and write its record under ``root``; None (logged) when the
    disk refuses: a missing record never stops a run."""
    t0 = time.perf_counter()
    env = capture_environment(flows)
    try:
        path = env.write(root)
    except OSError as exc:
        log.warning("%s: the environment record could not be written (%s)", root, exc)
        return None
    log.info("environment %s recorded in %.2f s -> %s", env.hash, time.perf_counter() - t0, path)
    return env
