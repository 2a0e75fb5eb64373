"""Configs: JSON loading with exact error positions, dotted keys, canonical hashing.

A config is a JSON object (a ``dict`` with ``str`` keys). Dotted keys (``model.depth``) address
nested dicts. A config's identity is the sha256 of its canonical JSON, so key order never matters.

Every value must be JSON that UTF-8 can hold: ``check_value`` refuses a lone surrogate
(``"\\ud800"``) and an integer over Python's int-to-str digit limit (4,300 digits), and it runs
where config enters (a config file, a spec, ``--set``, a CSV cell), so each is checked once.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import keyword
import re
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = [
    "RESERVED_NAMES",
    "Overlay",
    "canonical_json",
    "check_key",
    "check_value",
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
#: Top-level config keys that never become kernel variables (they stay in ``config`` only):
#: the names the injected cell binds (``notebook.injected_source``) and IPython's own names in a
#: kernel's namespace. Dunder names (``__builtins__``) and ``_<N>`` / ``_i<N>`` are reserved too.
RESERVED_NAMES = frozenset(
    {"config", "_ductaflow_json", "In", "Out", "get_ipython", "exit", "quit", "_", "_i", "_ii"}
    | {"_iii", "_ih", "_oh", "_dh"}
)
_IPYTHON_HISTORY = re.compile(r"_i?\d+|_+")


def _path_text(path: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in path)


def check_value(value: Any, *, where: str, path: tuple[Any, ...] = ()) -> None:
    """Raise ConfigError, naming ``where`` and the key, if ``value`` is not JSON UTF-8 can hold.

    Refused: a string (or key) with a lone surrogate, which no UTF-8 file can store, and an
    integer beyond Python's int-to-str digit limit, which no JSON text can be written for.
    """
    stack = [(path, value)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            _check_text(value, where, path, "value")
        elif isinstance(value, int) and not isinstance(value, bool):
            _check_int(value, where, path)
        elif isinstance(value, Mapping):
            for key, item in value.items():
                _check_text(str(key), where, (*path, key), "key")
                stack.append(((*path, key), item))
        elif isinstance(value, list | tuple):
            stack.extend(((*path, i), item) for i, item in enumerate(value))


def _check_text(text: str, where: str, path: tuple[Any, ...], what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = text[exc.start : exc.end].encode("utf-8", "backslashreplace").decode()
        at = f"key {_path_text(path)!r}: " if path else ""
        raise ConfigError(
            f"{where}: {at}the {what} holds {bad}, a lone surrogate that "
            "is not valid UTF-8; give the text it stands for"
        ) from None


def _check_int(number: int, where: str, path: tuple[Any, ...]) -> None:
    limit = sys.get_int_max_str_digits()
    if limit and number.bit_length() > 3 * limit:  # a cheap bound, exact below
        try:
            str(number)
        except ValueError:
            at = f"key {_path_text(path)!r}: " if path else ""
            raise ConfigError(
                f"{where}: {at}an integer of over {limit} digits is past "
                "Python's int-to-str limit; give it as a string"
            ) from None


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
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path}:{exc.lineno}:{exc.colno}: invalid JSON in {what} file: {exc.msg}"
        ) from None
    except ValueError:  # an integer over the digit limit
        raise ConfigError(
            f"{path}: {what} file: an integer of over {sys.get_int_max_str_digits()} digits is "
            "past Python's int-to-str limit; give it as a string"
        ) from None
    check_value(data, where=str(path))
    return data


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a config file that must hold a JSON object."""
    data = load_json(path)
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: a config must be a JSON object ({{...}}), not {type(data).__name__}"
        )
    return data


def parse_scalar(text: str, *, where: str = "value") -> Any:
    """A value from the command line or a CSV cell: JSON where it parses, else the string.

    Raises ConfigError (naming ``where``) for a value UTF-8 or JSON cannot hold (see
    ``check_value``).
    """
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text
    except ValueError:  # an integer over the digit limit: not a silent string
        limit = sys.get_int_max_str_digits()
        raise ConfigError(
            f"{where}: an integer of over {limit} digits is past Python's int-to-str limit; "
            "give it as a string (in quotes)"
        ) from None
    check_value(value, where=where)
    return value


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
        where = f"--set {item if len(item) <= 60 else item[:50] + '...'!r}"
        check_key(key, where=where)
        check_value({key: None}, where=where)
        pairs.append((key, parse_scalar(value, where=f"{where}: key {key!r}")))
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
    """sha256 of a config's canonical JSON (hex).

    Raises ConfigError for a config UTF-8 or JSON cannot hold (checked only then, at no cost).
    """
    try:
        return hashlib.sha256(canonical_json(config).encode("utf-8")).hexdigest()
    except (UnicodeEncodeError, ValueError):
        check_value(config, where="config")
        raise


class Overlay:
    """Many configs that are one base with the same dotted keys set: built and hashed at speed.

    ``apply(values)`` is the config that ``set_dotted`` of each key in turn gives (same dicts,
    same key order), with each dict along the keys' paths copied once, not once per key.
    ``hash(config, texts)`` is ``config_hash(config)`` of such a config, given each value's
    ``canonical_json`` (``texts``, in the keys' order): the config's canonical JSON is a
    template of the base with the texts put in, so expanding 100,000 runs formats text instead
    of encoding 100,000 configs (the texts of a grid's values are made once per value).

    Only for keys of which none is another's prefix (``Overlay.of`` gives None otherwise): then
    the keys' order cannot change the config's shape. The template is checked against
    ``canonical_json`` on its first config; any doubt falls back to ``config_hash``.
    """

    _SLOT = "\x00ductaflow-slot-{}\x00"
    _SLOT_JSON = re.compile(r'"\\u0000ductaflow-slot-(\d+)\\u0000"')

    def __init__(self, base: Mapping[str, Any], keys: tuple[str, ...]) -> None:
        self.base = base
        self.keys = keys
        #: the dicts to copy and the values to set: ``(part, value index, None, None)`` or
        #: ``(part, None, base dict there, its own steps)``, parts in the order keys reach them
        self._steps = _overlay_steps(base, [(i, k.split(".")) for i, k in enumerate(keys)])
        #: the canonical JSON as a ``str.format`` template of the texts ({0}: the first key's)
        self._template: str | None = None
        self._made = self._verified = False

    @classmethod
    def of(cls, base: Mapping[str, Any], keys: Iterable[str]) -> Overlay | None:
        """An overlay of these keys on ``base``, or None: a key is another's prefix, or a
        dict's place along a key's path holds something else (``set_dotted`` says what)."""
        keys = tuple(keys)
        if len(set(keys)) != len(keys):
            return None
        for key in keys:
            if any(other.startswith(key + ".") for other in keys):
                return None
            node: Any = dict(base)
            for part in key.split(".")[:-1]:
                node = node.get(part, {}) if isinstance(node, dict) else None
                if not isinstance(node, dict):
                    return None
        return cls(base, keys)

    def apply(self, values: Sequence[Any]) -> dict[str, Any]:
        """The base with each key set to its value, as ``set_dotted`` in turn makes it."""
        return _overlay(self.base, self._steps, values)

    def _make_template(self) -> str | None:
        slots = [self._SLOT.format(i) for i in range(len(self.keys))]
        try:
            text = canonical_json(self.apply(slots))
        except (TypeError, ValueError):
            return None
        pieces = self._SLOT_JSON.split(text)
        order = pieces[1::2]
        if sorted(map(int, order)) != list(range(len(self.keys))):
            return None  # a slot's text is in the base too, or went missing: no template
        out = [pieces[0].replace("{", "{{").replace("}", "}}")]
        for i, piece in zip(order, pieces[2::2], strict=True):
            out.append(f"{{{i}}}" + piece.replace("{", "{{").replace("}", "}}"))
        return "".join(out)

    def hash(self, config: Mapping[str, Any], texts: Sequence[str | None]) -> str:
        """``config_hash(config)``, where ``config`` is ``apply(values)`` and ``texts`` the
        ``canonical_json`` of each value (None for one that has none: then ``config_hash``)."""
        if not self._made:
            self._made = True
            self._template = self._make_template()
        template = self._template
        if template is None or None in texts:
            return config_hash(config)
        try:
            data = template.format(*texts).encode("utf-8")
        except UnicodeEncodeError:  # config_hash says where
            return config_hash(config)
        if not self._verified:  # once: the template gives canonical_json's very text
            self._verified = True
            if data != canonical_json(config).encode("utf-8"):
                self._template = None
                return config_hash(config)
        return hashlib.sha256(data).hexdigest()


_Steps = list[tuple[str, "int | None", "Mapping[str, Any] | None", "_Steps | None"]]


def _overlay_steps(base: Mapping[str, Any], paths: list[tuple[int, list[str]]]) -> _Steps:
    """How ``Overlay.apply`` builds a config: ``paths`` are ``(value index, key parts)``."""
    order: dict[str, list[tuple[int, list[str]]]] = {}
    for i, path in paths:
        order.setdefault(path[0], []).append((i, path[1:]))
    steps: _Steps = []
    for part, subs in order.items():
        if len(subs) == 1 and not subs[0][1]:
            steps.append((part, subs[0][0], None, None))
        else:
            child = base.get(part, {})
            steps.append((part, None, child, _overlay_steps(child, subs)))
    return steps


def _overlay(base: Mapping[str, Any], steps: _Steps, values: Sequence[Any]) -> dict[str, Any]:
    node = dict(base)
    for part, i, child, inner in steps:
        if inner is None:
            node[part] = values[i]  # type: ignore[index]
        else:
            node[part] = _overlay(child, inner, values)  # type: ignore[arg-type]
    return node


def is_variable_name(key: str) -> bool:
    """Whether a top-level key can become a variable in the kernel: a Python name that is not
    a keyword nor reserved (``RESERVED_NAMES``, dunder names, IPython's ``_<N>``)."""
    if not key.isidentifier() or keyword.iskeyword(key) or key in RESERVED_NAMES:
        return False
    return not (key.startswith("__") and key.endswith("__")) and not _IPYTHON_HISTORY.fullmatch(key)


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
