"""Configs: JSON loading with exact error positions, dotted keys, canonical hashing.

A config is a JSON object (a ``dict`` with ``str`` keys). Dotted keys (``model.depth``) address
nested dicts. A config's identity is the sha256 of its canonical JSON, so key order never matters.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import keyword
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = [
    "canonical_json",
    "check_key",
    "config_hash",
    "flatten",
    "gc_paused",
    "get_dotted",
    "is_variable_name",
    "load_config",
    "load_json",
    "parse_scalar",
    "parse_set",
    "set_dotted",
]

_KEY_PART = re.compile(r"[^\s.{}]+")
_MISSING = object()


def load_json(path: str | Path, *, what: str = "config") -> Any:
    """Read a JSON file; a syntax error is reported with its line and column."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} file not found; check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read {what} file ({exc})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path}:{exc.lineno}:{exc.colno}: invalid JSON in {what} file: {exc.msg}"
        ) from None


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a config file that must hold a JSON object."""
    data = load_json(path)
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: a config must be a JSON object ({{...}}), not {type(data).__name__}"
        )
    return data


def parse_scalar(text: str) -> Any:
    """A value from the command line or a CSV cell: JSON where it parses, else the string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def check_key(key: str, *, where: str) -> list[str]:
    """Split a dotted key into its parts; raise ConfigError naming ``where`` if it is not a key."""
    parts = key.split(".")
    if not key or not all(_KEY_PART.fullmatch(p) for p in parts):
        raise ConfigError(
            f"{where}: {key!r} is not a config key; use names without spaces or braces, "
            "joined by dots (model.depth)"
        )
    return parts


def parse_set(items: Iterable[str]) -> list[tuple[str, Any]]:
    """Parse ``--set key=value`` items into ``(dotted key, value)`` pairs."""
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set model.depth=4")
        key = key.strip()
        check_key(key, where=f"--set {item!r}")
        pairs.append((key, parse_scalar(value)))
    return pairs


def set_dotted(config: Mapping[str, Any], key: str, value: Any) -> dict[str, Any]:
    """Return a copy of ``config`` with ``key`` (dotted) set to ``value``.

    Only the dicts along the key's path are copied; everything else is shared, which keeps
    expanding large sweeps cheap. Intermediate dicts are created where missing.
    """
    parts = key.split(".")
    root = dict(config)
    node = root
    for i, part in enumerate(parts[:-1]):
        child = node.get(part, _MISSING)
        if child is _MISSING:
            child = {}
        elif not isinstance(child, dict):
            prefix = ".".join(parts[: i + 1])
            raise ConfigError(
                f"key {key!r}: {prefix!r} holds a {type(child).__name__}, not a dict, "
                "so it cannot take a nested key"
            )
        node[part] = child = dict(child)
        node = child
    node[parts[-1]] = value
    return root


def get_dotted(config: Mapping[str, Any], key: str, default: Any = _MISSING) -> Any:
    """The value at a dotted key; ``default`` (or KeyError) where it is absent."""
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            if default is _MISSING:
                raise KeyError(key)
            return default
        node = node[part]
    return node


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Scalar leaves of a config as ``{dotted key: value}``; lists and empty dicts are left out."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, dotted + "."))
        elif not isinstance(value, list):
            out[dotted] = value
    return out


def canonical_json(value: Any) -> str:
    """One text per JSON value: sorted keys, no spaces, unicode kept."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def config_hash(config: Mapping[str, Any]) -> str:
    """sha256 of a config's canonical JSON (hex)."""
    return hashlib.sha256(canonical_json(config).encode("utf-8")).hexdigest()


def is_variable_name(key: str) -> bool:
    """Whether a top-level key can become a variable in the kernel."""
    return key.isidentifier() and not keyword.iskeyword(key)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many small acyclic objects.

    Expanding or planning 100,000 runs allocates millions of dicts; the collector's repeated
    passes over them cost ~40% of the time and nothing they build is cyclic.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
