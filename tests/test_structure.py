"""The package's shape, checked: no import cycles, no private name crossing modules, no module
past its size, and a cheap ``import ductaflow``.

``python tests/test_structure.py`` prints the module table (lines, what each imports) and the
import graph, for a closing note or a review.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "ductaflow"
MAX_LINES = 650


@dataclass
class Module:
    name: str
    path: Path
    lines: int
    imports: set[str] = field(default_factory=set)
    #: (imported module, private name) pairs
    private: list[tuple[str, str]] = field(default_factory=list)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def modules() -> dict[str, Module]:
    """Every module of the package with the package modules it imports (lazy imports too)."""
    found = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
    result = {}
    for name, path in found.items():
        source = path.read_text(encoding="utf-8")
        mod = Module(name, path, source.count("\n"))
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                mod.imports |= {a.name for a in node.names if a.name in found}
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(name, path.name == "__init__.py", node)
                if not target.startswith("ductaflow"):
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    if sub in found:
                        mod.imports.add(sub)
                        continue
                    if target in found:
                        mod.imports.add(target)
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        mod.private.append((target, alias.name))
        mod.imports.discard(name)
        result[name] = mod
    return result


def cycles(mods: dict[str, Module]) -> list[list[str]]:
    """Import cycles among the modules; the package ``__init__`` re-exports lazily, so not it."""
    graph = {n: sorted(m.imports - {"ductaflow"}) for n, m in mods.items() if n != "ductaflow"}
    found: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in graph.get(node, ()):
            if state.get(target) == 1:
                found.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node)
    return found


def test_no_import_cycles() -> None:
    assert cycles(modules()) == []


def test_no_private_name_crosses_modules() -> None:
    crossing = [f"{m.name} imports {t}.{n}" for m in modules().values() for t, n in m.private]
    assert crossing == []


def test_no_module_past_its_size() -> None:
    big = {m.name: m.lines for m in modules().values() if m.lines > MAX_LINES}
    assert big == {}


def test_the_checks_can_fail(tmp_path: Path) -> None:
    """The cycle finder finds a cycle, so an empty answer above means something."""
    a = Module("ductaflow.a", tmp_path / "a.py", 1, {"ductaflow.b"})
    b = Module("ductaflow.b", tmp_path / "b.py", 1, {"ductaflow.a"})
    assert cycles({"ductaflow.a": a, "ductaflow.b": b}) == [
        ["ductaflow.a", "ductaflow.b", "ductaflow.a"]
    ]


def test_import_ductaflow_loads_no_heavy_dependency() -> None:
    """Flows import ductaflow inside every kernel: it must not pull pandas, nbclient or zmq."""
    code = (
        "import sys, ductaflow; "
        "print(sorted(m for m in ('pandas', 'nbclient', 'zmq', 'joblib', 'jupytext') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _table() -> str:
    mods = modules()
    lines = ["| module | lines | imports (ductaflow.) |", "|---|---:|---|"]
    for mod in sorted(mods.values(), key=lambda m: m.name):
        deps = ", ".join(sorted(i.removeprefix("ductaflow.") for i in mod.imports))
        lines.append(f"| {mod.name.removeprefix('ductaflow.')} | {mod.lines} | {deps} |")
    lines.append(f"\ncycles: {cycles(mods) or 'none'}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(_table())
