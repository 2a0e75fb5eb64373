"""What a flow's source says, found with ``ast`` before any kernel starts.

``load_flow`` reads a flow in any Python notebook format Jupytext reads (percent or light ``.py``,
Markdown or MyST ``.md``, ``.ipynb``) and refuses, as a ``FlowError``, a file that cannot be a flow:
an unknown suffix, bytes that are not UTF-8, a notebook of another language, a code cell that is
not Python. It returns ``FlowFacts``: the names the flow reads, the ``config[...]`` keys it reads,
whether it hands ``config`` on whole, and the variables it assigns before reading them after its
``parameters`` cell (an assignment there overwrites an injected config value).

``check_runs`` turns those facts and the configs of the runs into warnings (or, with ``strict``,
an ``InputError``): a config key that a flow overwrites, a varied key that no flow reads.

IPython syntax is not Python: a cell magic (``%%bash``) is skipped whole, a line magic or shell
line (``%time``, ``!ls``, ``x = !ls``) is read as ``pass``.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import is_variable_name
from .errors import FlowError, SweepSpecError

__all__ = [
    "CONFIG_TAG",
    "ERROR_TAG",
    "FLOW_SUFFIXES",
    "INJECTED_TAG",
    "PAPERMILL_ERROR_TAG",
    "PARAMETERS_TAG",
    "STOPPED_TAG",
    "FlowFacts",
    "check_runs",
    "flow_cells",
    "flow_kernel",
    "inspect_notebook",
    "is_clean_exit",
    "load_flow",
    "overwrite_warnings",
    "read_flow_bytes",
    "read_notebook",
]

log = logging.getLogger("ductaflow")

PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"
#: The tag papermill gives the error-marker cells it adds to a failed run's notebook.
PAPERMILL_ERROR_TAG = "papermill-error-cell-tag"
CONFIG_TAG = "ductaflow-config"
ERROR_TAG = "ductaflow-error"
#: The marker after the cell whose ``sys.exit(0)`` stopped a flow cleanly.
STOPPED_TAG = "ductaflow-stopped"
#: Tags of cells ductaflow itself adds (its config table, failure and stop markers).
OWN_TAGS = frozenset({CONFIG_TAG, ERROR_TAG, STOPPED_TAG})
#: Suffixes of the Python notebook formats a flow may have (Jupytext reads them all).
FLOW_SUFFIXES = (".py", ".ipynb", ".md", ".markdown", ".myst", ".mystnb", ".mnb", ".Rmd")
_SHELL_OR_MAGIC = re.compile(r"^(\s*)[%!]")
_ASSIGNED_MAGIC = re.compile(r"^(\s*)([\w.\[\], ]+?)\s*=\s*[%!]")
_IPYTHON_SYNTAX = re.compile(r"^\s*[%!]|^[^#\n]*=\s*[%!]|\?\s*$", re.M)
_PY_LANGUAGES = {"python", "python3", "ipython", "ipython3", ""}


@dataclass(frozen=True)
class FlowFacts:
    """What a flow's source says about the config it reads (names, paths, line numbers)."""

    #: The flow file, for messages.
    path: str
    #: The Jupytext format it was read as: ``py:percent``, ``py:light``, ``md``, ``ipynb``, ...
    format: str
    #: Every name the flow reads as a variable.
    names: frozenset[str]
    #: Every ``config["a"]["b"]`` / ``config.get("a")`` path it reads, as tuples of keys.
    config_paths: frozenset[tuple[str, ...]]
    #: Whether the flow hands ``config`` on whole (``f(config)``, ``config.items()``, ...).
    passes_config: bool
    #: ``(name, cell, line)`` of each name first *assigned* after the injected cell.
    overwrites: tuple[tuple[str, int, int], ...]
    #: The kernelspec name in the notebook's metadata (None when it has none).
    kernel: str | None = None

    def reads(self, dotted: str) -> bool:
        """Whether the flow reads config key ``dotted`` (``a`` or ``a.b``), or may read it."""
        parts = tuple(dotted.split("."))
        if len(parts) == 1 and parts[0] in self.names:
            return True
        return any(p[: len(parts)] == parts or parts[: len(p)] == p for p in self.config_paths)


# -- reading -------------------------------------------------------------------------------------
def read_flow_bytes(path: Path) -> bytes:
    """A flow file's bytes; ``FlowError`` naming the file when it is missing or unreadable."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise FlowError(f"{path}: flow file not found; check the path") from None
    except OSError as exc:
        raise FlowError(f"{path}: cannot read flow file ({exc})") from None


def read_notebook(path: Path, data: bytes | None = None) -> tuple[Any, str]:
    """A flow file as a notebook (Jupytext detects the format), and the format's name."""
    suffix = _check_suffix(path)
    if data is None:
        data = read_flow_bytes(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FlowError(
            f"{path}: not a text file (invalid UTF-8 at byte {exc.start}); a flow is a notebook "
            "or a Jupytext text notebook"
        ) from None
    if "\x00" in text:
        raise FlowError(f"{path}: a binary file (NUL bytes); a flow is a text or .ipynb notebook")
    import jupytext
    from jupytext.formats import guess_format

    ext = ".ipynb" if suffix.lower() == ".ipynb" else suffix
    try:
        nb = jupytext.reads(text, fmt=ext)
    except Exception as exc:  # jupytext and nbformat raise many kinds
        raise FlowError(f"{path}: cannot be read as a {ext} notebook ({_short(exc)})") from None
    if ext == ".ipynb":
        fmt = "ipynb"
    else:
        name, _ = guess_format(text, ext)
        fmt = f"{ext.lstrip('.')}:{name}" if name else ext.lstrip(".")
    language = str(
        nb.metadata.get("kernelspec", {}).get("language")
        or nb.metadata.get("language_info", {}).get("name")
        or ""
    ).lower()
    if language not in _PY_LANGUAGES:
        raise FlowError(
            f"{path}: its kernelspec says language {language!r}; ductaflow runs Python flows "
            "only (use a Python kernel for this notebook)"
        )
    return nb, fmt


def _check_suffix(path: Path) -> str:
    suffix = path.suffix
    if suffix not in FLOW_SUFFIXES and suffix.lower() not in FLOW_SUFFIXES:
        raise FlowError(
            f"{path}: {suffix or 'no suffix'} is not a flow format; a flow is a Python notebook "
            f"Jupytext reads ({', '.join(FLOW_SUFFIXES)})"
        )
    return suffix


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def load_flow(path: Path, *, inspect: bool = True) -> tuple[str, FlowFacts | None]:
    """The sha256 of a flow file's bytes and its facts; ``FlowError`` for a file that cannot run.

    Without ``inspect`` the file is only read and hashed (its suffix checked): no Jupytext, whose
    import alone pulls in jupyter_client, zmq and tornado (~0.3 s), for a plan that runs nothing.
    """
    _check_suffix(path)
    data = read_flow_bytes(path)
    sha = hashlib.sha256(data).hexdigest()
    if not inspect:
        return sha, None
    nb, fmt = read_notebook(path, data)
    return sha, inspect_notebook(nb, str(path), fmt)


def flow_cells(nb: Any) -> list[Any]:
    """The flow's own cells: ductaflow's and papermill's markers (from an executed notebook used
    as a flow) left out, a stale injected cell kept (it is replaced where it stands)."""
    return [c for c in nb.cells if not _tags(c) & OWN_TAGS and not _is_papermill_marker(c)]


def _tags(cell: Any) -> set[str]:
    tags = cell.get("metadata", {}).get("tags", [])
    return set(tags) if isinstance(tags, list) else set()


def _is_papermill_marker(cell: Any) -> bool:
    if PAPERMILL_ERROR_TAG in _tags(cell):
        return True
    # papermill before 2.0 added its top marker untagged, as an %%html cell
    source = cell.get("source", "")
    return (
        cell.get("cell_type") == "code"
        and source.startswith("%%html\n<span")
        and ("An Exception was encountered at" in source)
    )


# -- the ast of a cell -----------------------------------------------------------------------------
_FLAGS = ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT


def _parse_cell(source: str, where: str) -> ast.Module | None:
    """A code cell's ast (None for a cell magic); IPython-only lines read as ``pass``."""
    if source.lstrip().startswith("%%"):
        return None
    if not _IPYTHON_SYNTAX.search(source):
        try:
            return compile(source, where, "exec", _FLAGS)  # type: ignore[no-any-return]
        except SyntaxError:
            pass
    lines = [
        _ASSIGNED_MAGIC.sub(r"\1\2 = None", line)
        if not _SHELL_OR_MAGIC.match(line)
        else _SHELL_OR_MAGIC.sub(r"\1pass  #", line)
        for line in source.splitlines()
    ]
    # ``obj?`` / ``obj??`` help lines
    lines = [re.sub(r"^(\s*)[\w.]+\?\??\s*$", r"\1pass", line) for line in lines]
    try:
        return compile("\n".join(lines), where, "exec", _FLAGS)  # type: ignore[no-any-return]
    except SyntaxError as exc:
        try:  # IPython's own transformer, for rarer IPython syntax (automagics, ...)
            from IPython.core.inputtransformer2 import TransformerManager

            code = TransformerManager().transform_cell(source)
            return compile(code, where, "exec", _FLAGS)  # type: ignore[no-any-return]
        except Exception:
            raise FlowError(
                f"{where}, line {exc.lineno}: {exc.msg}: {(exc.text or '').strip()[:80]!r}; "
                "fix the cell (the flow cannot run)"
            ) from None


def _config_path(node: ast.AST) -> tuple[str, ...] | None:
    """``("a", "b")`` for ``config["a"]["b"]`` or ``config.get("a").get("b")``; ``()`` for
    ``config``; None for anything else."""
    if isinstance(node, ast.Name):
        return () if node.id == "config" else None
    if isinstance(node, ast.Subscript):
        key = node.slice
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            base = _config_path(node.value)
            return None if base is None else (*base, key.value)
        return None
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "get"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        base = _config_path(node.func.value)
        return None if base is None else (*base, node.args[0].value)
    return None


def _nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node under ``tree``, each before its children (faster than ``ast.walk``)."""
    out: list[ast.AST] = []
    todo = [tree]
    node_type = ast.AST
    while todo:
        node = todo.pop()
        out.append(node)
        for name in node._fields:
            value = getattr(node, name, None)
            if type(value) is list:
                todo.extend(v for v in reversed(value) if isinstance(v, node_type))
            elif isinstance(value, node_type):
                todo.append(value)
    return out


def _reads(tree: ast.AST, names: set[str], paths: set[tuple[str, ...]]) -> bool:
    """Add the names ``tree`` reads and its ``config[...]`` paths; whether it uses ``config``
    whole. Outer nodes come first, so the inner links of a chain already seen are skipped."""
    seen: set[int] = set()
    whole = False
    name_t, sub_t, call_t, cmp_t, load_t = ast.Name, ast.Subscript, ast.Call, ast.Compare, ast.Load
    for node in _nodes(tree):
        kind = type(node)
        if kind is name_t:
            if type(node.ctx) is load_t:  # type: ignore[attr-defined]
                ident = node.id  # type: ignore[attr-defined]
                names.add(ident)
                if ident == "config" and id(node) not in seen:
                    whole = True
        elif kind is sub_t or kind is call_t:
            if id(node) in seen:
                continue
            path = _config_path(node)
            if path:
                paths.add(path)
                _consume(node, seen)
        elif kind is cmp_t:  # "key" in config
            assert isinstance(node, ast.Compare)
            if (
                len(node.ops) == 1
                and isinstance(node.ops[0], ast.In | ast.NotIn)
                and isinstance(node.left, ast.Constant)
                and isinstance(node.left.value, str)
                and (path := _config_path(node.comparators[0])) is not None
            ):
                paths.add((*path, node.left.value))
                _consume(node.comparators[0], seen)
    return whole


def _consume(node: ast.AST, seen: set[int]) -> None:
    """Mark the links of a config chain (down to the ``config`` name) as seen."""
    while True:
        seen.add(id(node))
        if isinstance(node, ast.Subscript):
            node = node.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            seen.add(id(node.func))
            node = node.func.value
        else:
            return


def _expr_events(node: ast.AST | None, out: list[tuple[str, str, int]]) -> None:
    """An expression's names: reads, then (walrus) stores; comprehension variables are local."""
    if node is None:
        return
    stores = []
    name_t, load_t, walrus_t = ast.Name, ast.Load, ast.NamedExpr
    for sub in _nodes(node):
        kind = type(sub)
        if kind is name_t and type(sub.ctx) is load_t:  # type: ignore[attr-defined]
            out.append(("load", sub.id, sub.lineno))  # type: ignore[attr-defined]
        elif kind is walrus_t and isinstance(sub.target, ast.Name):  # type: ignore[attr-defined]
            stores.append(("store", sub.target.id, sub.lineno))  # type: ignore[attr-defined]
    out.extend(stores)


def _target_events(node: ast.AST, out: list[tuple[str, str, int]]) -> None:
    for sub in _nodes(node):
        if isinstance(sub, ast.Name):
            kind = "store" if isinstance(sub.ctx, ast.Store) else "load"
            out.append((kind, sub.id, sub.lineno))


def _events(stmt: ast.stmt, out: list[tuple[str, str, int]]) -> None:
    """Append ``(load | store, name, line)`` of a module-level statement, in the order they
    happen. Bodies of functions, classes and lambdas run later: only the name defined counts."""
    if isinstance(stmt, ast.Expr | ast.Return):
        _expr_events(stmt.value, out)
    elif isinstance(stmt, ast.Assign):
        _expr_events(stmt.value, out)
        for target in stmt.targets:
            _target_events(target, out)
    elif isinstance(stmt, ast.AnnAssign):
        if stmt.value is not None:  # ``x: int`` assigns nothing
            _expr_events(stmt.value, out)
            _target_events(stmt.target, out)
    elif isinstance(stmt, ast.AugAssign):
        if isinstance(stmt.target, ast.Name):
            out.append(("load", stmt.target.id, stmt.lineno))
        _expr_events(stmt.value, out)
        _target_events(stmt.target, out)
    elif isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        for deco in stmt.decorator_list:
            _expr_events(deco, out)
        out.append(("store", stmt.name, stmt.lineno))
    elif isinstance(stmt, ast.Import | ast.ImportFrom):
        for alias in stmt.names:
            if alias.name != "*":
                out.append(("store", (alias.asname or alias.name).split(".")[0], stmt.lineno))
    elif isinstance(stmt, ast.For | ast.AsyncFor):
        _expr_events(stmt.iter, out)
        _target_events(stmt.target, out)
        _body_events([*stmt.body, *stmt.orelse], out)
    elif isinstance(stmt, ast.If | ast.While):
        _expr_events(stmt.test, out)
        _body_events([*stmt.body, *stmt.orelse], out)
    elif isinstance(stmt, ast.With | ast.AsyncWith):
        for item in stmt.items:
            _expr_events(item.context_expr, out)
            if item.optional_vars is not None:
                _target_events(item.optional_vars, out)
        _body_events(stmt.body, out)
    elif isinstance(stmt, ast.Try | getattr(ast, "TryStar", ast.Try)):
        _body_events(stmt.body, out)
        for handler in stmt.handlers:
            _expr_events(handler.type, out)
            if handler.name:
                out.append(("store", handler.name, handler.lineno))
            _body_events(handler.body, out)
        _body_events([*stmt.orelse, *stmt.finalbody], out)
    else:  # match, del, assert, raise, global, ...: their names are reads
        _expr_events(stmt, out)


def _body_events(body: list[ast.stmt], out: list[tuple[str, str, int]]) -> None:
    for stmt in body:
        _events(stmt, out)


def inspect_notebook(nb: Any, path: str, fmt: str) -> FlowFacts:
    """The facts of a flow notebook; ``FlowError`` when a code cell is not Python."""
    cells = flow_cells(nb)
    tagged = [i for i, c in enumerate(cells) if PARAMETERS_TAG in _tags(c)]
    injected = [i for i, c in enumerate(cells) if INJECTED_TAG in _tags(c)]
    # the injected cell replaces a stale one, else follows the parameters cell, else goes first
    after = injected[0] if injected else (tagged[0] if tagged else -1)
    names: set[str] = set()
    paths: set[tuple[str, ...]] = set()
    whole = False
    first: set[str] = set()
    overwrites: list[tuple[str, int, int]] = []
    for i, cell in enumerate(cells):
        if cell.cell_type != "code" or i in injected:
            continue
        tree = _parse_cell(cell.source, f"{path}: cell {i + 1}")
        if tree is None:
            continue
        whole = _reads(tree, names, paths) or whole
        if i <= after:
            continue
        events: list[tuple[str, str, int]] = []
        _body_events(tree.body, events)
        for kind, name, line in events:
            if name not in first:
                first.add(name)
                if kind == "store":
                    overwrites.append((name, i + 1, line))
    kernel = nb.metadata.get("kernelspec", {}).get("name")
    return FlowFacts(
        path=path,
        format=fmt,
        names=frozenset(names),
        config_paths=frozenset(paths),
        passes_config=whole,
        overwrites=tuple(overwrites),
        kernel=str(kernel) if kernel else None,
    )


# -- warnings ------------------------------------------------------------------------------------
def _injected(config: Mapping[str, Any], name: str) -> bool:
    return name in config and not isinstance(config[name], dict) and is_variable_name(name)


def _overwrite(path: str, name: str, cell: int, line: int) -> str:
    return (
        f"{path}: cell {cell}, line {line}: assigns {name!r} before reading it, so the config "
        f"value of {name!r} is overwritten; move the assignment into the cell tagged "
        f'"parameters" (or read config[{name!r}])'
    )


def overwrite_warnings(facts: FlowFacts, config: Mapping[str, Any]) -> list[str]:
    """Warnings for the config keys injected as variables that ``facts``' flow overwrites."""
    return [
        _overwrite(facts.path, name, cell, line)
        for name, cell, line in facts.overwrites
        if name != "config" and _injected(config, name)
    ]


def check_runs(
    flows: Sequence[FlowFacts],
    configs: Iterable[Mapping[str, Any]],
    varied: Iterable[str],
    *,
    strict: bool = False,
    where: str = "sweep",
    kernel: str | None = None,
) -> list[str]:
    """Warnings about a sweep's runs, from its flows' facts, logged; ``strict`` raises instead.

    Once per sweep: (a) a key injected as a variable that a flow assigns before reading it, in
    any run; (b) a key that the sweep varies (``varied``) and that no flow reads, unless a flow
    hands ``config`` on whole.
    """
    if kernel is None:
        _check_kernelspecs(flows)
    configs = configs if isinstance(configs, Sequence) else list(configs)
    keys: set[str] = set().union(*configs)  # every top-level key of every run, in one C loop
    warnings: list[str] = []
    for facts in flows:
        for name, cell, line in facts.overwrites:
            if name in keys and name != "config" and any(_injected(c, name) for c in configs):
                warnings.append(_overwrite(facts.path, name, cell, line))
    if strict and warnings:
        raise FlowError(_strict(warnings))
    unread: list[str] = []
    if not any(f.passes_config for f in flows):
        known = sorted({*(n for f in flows for n in f.names),
                        *(p[0] for f in flows for p in f.config_paths)})  # fmt: skip
        for key in varied:
            if any(f.reads(key) for f in flows):
                continue
            close = difflib.get_close_matches(key.split(".")[0], known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            unread.append(
                f"{where}: config key {key!r} is varied but no flow reads it (not as a variable, "
                f"not as config[{key.split('.')[0]!r}]){hint} Fix the key or read it in a flow"
            )
    if strict and unread:
        raise SweepSpecError(_strict(unread))
    for warning in [*warnings, *unread]:
        log.warning("warning: %s", warning)
    return [*warnings, *unread]


#: The kernelspec name that means "this Python" (what ductaflow runs by default).
DEFAULT_KERNEL = "python3"


def flow_kernel(facts: FlowFacts | None, kernel: str | None) -> str | None:
    """The kernelspec a flow runs in: ``--kernel``, else the flow's own (an ``.ipynb``'s
    kernelspec), else None for this Python (also for a kernelspec named ``python3``)."""
    if kernel is not None:
        return kernel
    if facts is None or facts.kernel in (None, DEFAULT_KERNEL):
        return None
    return facts.kernel


def _check_kernelspecs(flows: Sequence[FlowFacts]) -> None:
    wanted = {f.kernel: f.path for f in flows if flow_kernel(f, None) is not None}
    if not wanted:
        return
    from jupyter_client.kernelspec import KernelSpecManager

    installed = set(KernelSpecManager().find_kernel_specs())
    for name, path in wanted.items():
        if name not in installed:
            raise FlowError(
                f"{path}: its kernelspec {name!r} is not installed here (installed: "
                f"{', '.join(sorted(installed)) or 'none'}); install it or give --kernel NAME"
            )


def _strict(warnings: list[str]) -> str:
    more = f" (and {len(warnings) - 1} more)" if len(warnings) > 1 else ""
    return f"{warnings[0]}{more}; strict mode refuses to run (leave out --strict to run anyway)"


# -- how a flow ended ----------------------------------------------------------------------------
#: What IPython shows as the value of ``SystemExit`` for a clean exit code (0, None, False).
_CLEAN_EXIT_VALUES = {"", "0", "None", "False"}


def is_clean_exit(ename: str | None, evalue: str | None) -> bool:
    """Whether a cell's error is ``sys.exit(0)`` / ``sys.exit()`` / ``raise SystemExit``.

    IPython catches ``SystemExit`` in a cell and reports it like any error (ename
    ``SystemExit``, evalue ``str(code)``), so nbclient raises ``CellExecutionError`` for it.
    """
    return ename == "SystemExit" and (evalue or "").strip() in _CLEAN_EXIT_VALUES
