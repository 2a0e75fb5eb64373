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
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import is_variable_name
from .errors import FlowError, SweepSpecError

__all__ = [
    "FLOW_SUFFIXES",
    "INJECTED_TAG",
    "PAPERMILL_ERROR_TAG",
    "PARAMETERS_TAG",
    "FlowFacts",
    "check_runs",
    "flow_cells",
    "flow_kernel",
    "inspect_notebook",
    "is_clean_exit",
    "load_flow",
    "overwrite_warnings",
    "read_notebook",
]

log = logging.getLogger("ductaflow")

PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"
#: The tag papermill gives the error-marker cells it adds to a failed run's notebook.
PAPERMILL_ERROR_TAG = "papermill-error-cell-tag"
#: Tags of cells ductaflow itself adds (its config table and failure markers).
OWN_TAGS = frozenset({"ductaflow-config", "ductaflow-error", "ductaflow-stopped"})
#: Suffixes of the Python notebook formats a flow may have (Jupytext reads them all).
FLOW_SUFFIXES = (".py", ".ipynb", ".md", ".markdown", ".myst", ".mystnb", ".mnb", ".Rmd")
_SHELL_OR_MAGIC = re.compile(r"^(\s*)[%!]")
_ASSIGNED_MAGIC = re.compile(r"^(\s*)([\w.\[\], ]+?)\s*=\s*[%!]")
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
def read_notebook(path: Path, data: bytes | None = None) -> tuple[Any, str]:
    """A flow file as a notebook (Jupytext detects the format), and the format's name."""
    suffix = _check_suffix(path)
    if data is None:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise FlowError(f"{path}: flow file not found; check the path") from None
        except OSError as exc:
            raise FlowError(f"{path}: cannot read flow file ({exc})") from None
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


def load_flow(path: Path) -> tuple[str, FlowFacts]:
    """The sha256 of a flow file's bytes and its facts; ``FlowError`` for a file that cannot run."""
    _check_suffix(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FlowError(f"{path}: flow file not found; check the path") from None
    except OSError as exc:
        raise FlowError(f"{path}: cannot read flow file ({exc})") from None
    nb, fmt = read_notebook(path, data)
    return hashlib.sha256(data).hexdigest(), inspect_notebook(nb, str(path), fmt)


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


class _Reads(ast.NodeVisitor):
    """Names read and config paths read anywhere in a cell (functions included)."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.paths: set[tuple[str, ...]] = set()
        self.whole = False

    def _chain(self, node: ast.AST) -> bool:
        path = _config_path(node)
        if path is None:
            return False
        if path:
            self.paths.add(path)
        else:
            self.whole = True
        # still visit what the chain does not consume: .get defaults, slices of other subscripts
        inner = node
        while not isinstance(inner, ast.Name):
            if isinstance(inner, ast.Subscript):
                inner = inner.value
            else:
                assert isinstance(inner, ast.Call) and isinstance(inner.func, ast.Attribute)
                for arg in [*inner.args[1:], *inner.keywords]:
                    self.visit(arg)
                inner = inner.func.value
        return True

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if not self._chain(node):
            self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        if not self._chain(node):
            self.generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> None:  # "key" in config
        if (
            len(node.ops) == 1
            and isinstance(node.ops[0], ast.In | ast.NotIn)
            and isinstance(node.left, ast.Constant)
            and isinstance(node.left.value, str)
            and (path := _config_path(node.comparators[0])) is not None
        ):
            self.paths.add((*path, node.left.value))
            return
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self.names.add(node.id)
            if node.id == "config":
                self.whole = True


def _events(node: ast.AST) -> Iterator[tuple[str, str, int]]:
    """``("load" | "store", name, line)`` of module-level names, in the order they happen.

    Bodies of functions, classes and lambdas run later (or in their own scope): only the name
    they define counts. Comprehension variables are their own scope too.
    """
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        for sub in [*node.decorator_list, *getattr(node, "bases", ())]:
            yield from _events(sub)
        yield "store", node.name, node.lineno
        return
    if isinstance(node, ast.Lambda):
        return
    if isinstance(node, ast.AnnAssign) and node.value is None:
        return  # ``x: int`` assigns nothing
    if isinstance(node, ast.Assign | ast.AnnAssign | ast.NamedExpr):
        if node.value is not None:
            yield from _events(node.value)
        for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
            yield from _events(target)
        return
    if isinstance(node, ast.AugAssign):
        if isinstance(node.target, ast.Name):
            yield "load", node.target.id, node.lineno
        yield from _events(node.value)
        yield from _events(node.target)
        return
    if isinstance(node, ast.For | ast.AsyncFor):
        yield from _events(node.iter)
        yield from _events(node.target)
        for sub in [*node.body, *node.orelse]:
            yield from _events(sub)
        return
    if isinstance(node, ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp):
        local = {
            n.id for g in node.generators for n in ast.walk(g.target) if isinstance(n, ast.Name)
        }
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load) and sub.id not in local:
                yield "load", sub.id, sub.lineno
        return
    if isinstance(node, ast.Import | ast.ImportFrom):
        for alias in node.names:
            if alias.name != "*":
                yield "store", (alias.asname or alias.name).split(".")[0], node.lineno
        return
    if isinstance(node, ast.ExceptHandler):
        if node.type is not None:
            yield from _events(node.type)
        if node.name:
            yield "store", node.name, node.lineno
        for sub in node.body:
            yield from _events(sub)
        return
    if isinstance(node, ast.Name):
        if isinstance(node.ctx, ast.Load):
            yield "load", node.id, node.lineno
        elif isinstance(node.ctx, ast.Store):
            yield "store", node.id, node.lineno
        return
    for child in ast.iter_child_nodes(node):
        yield from _events(child)


def inspect_notebook(nb: Any, path: str, fmt: str) -> FlowFacts:
    """The facts of a flow notebook; ``FlowError`` when a code cell is not Python."""
    cells = flow_cells(nb)
    tagged = [i for i, c in enumerate(cells) if PARAMETERS_TAG in _tags(c)]
    injected = [i for i, c in enumerate(cells) if INJECTED_TAG in _tags(c)]
    # the injected cell replaces a stale one, else follows the parameters cell, else goes first
    after = injected[0] if injected else (tagged[0] if tagged else -1)
    reads = _Reads()
    first: dict[str, str] = {}
    overwrites: list[tuple[str, int, int]] = []
    for i, cell in enumerate(cells):
        if cell.cell_type != "code" or i in injected:
            continue
        tree = _parse_cell(cell.source, f"{path}: cell {i + 1}")
        if tree is None:
            continue
        reads.visit(tree)
        if i <= after:
            continue
        for stmt in tree.body:
            for kind, name, line in _events(stmt):
                if name not in first:
                    first[name] = kind
                    if kind == "store":
                        overwrites.append((name, i + 1, line))
    kernel = nb.metadata.get("kernelspec", {}).get("name")
    return FlowFacts(
        path=path,
        format=fmt,
        names=frozenset(reads.names),
        config_paths=frozenset(reads.paths),
        passes_config=reads.whole,
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
    warnings: list[str] = []
    for facts in flows:
        for name, cell, line in facts.overwrites:
            if name != "config" and any(_injected(c, name) for c in configs):
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
