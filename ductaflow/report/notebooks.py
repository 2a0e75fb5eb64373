"""Executed notebooks as HTML beside them, rendered with nbconvert only when missing or stale.

The HTML loads nothing from the network (no require.js, MathJax or Mermaid from a CDN).
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..rundir import atomic_write_text

__all__ = ["NOTEBOOK_TEMPLATE", "html_is_fresh", "refresh_notebooks"]

log = logging.getLogger("ductaflow")

#: The nbconvert template of executed notebooks, a package file in ``ductaflow/report/templates``.
NOTEBOOK_TEMPLATE = "notebook.html.j2"


@functools.lru_cache(maxsize=1)
def _exporter() -> Any:
    """One nbconvert exporter per process: its first render compiles the templates (~1 s).

    nbconvert's lab template, less what it loads from a CDN (require.js, MathJax, Mermaid, the
    widget manager): ``templates/notebook.html.j2`` extends it with those blocks empty, so an
    executed notebook opens offline like the report that links it.
    """
    from nbconvert import HTMLExporter

    return HTMLExporter(
        template_name="lab",
        extra_template_paths=[str(Path(__file__).with_name("templates"))],
        template_file=NOTEBOOK_TEMPLATE,
    )


def _render(notebook: Path, target: Path) -> None:
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    name = f"{notebook.parent.name} · {notebook.stem}"
    body, _ = _exporter().from_notebook_node(nb, resources={"metadata": {"name": name}})
    atomic_write_text(target, body)


def html_is_fresh(notebook: str | Path, target: str | Path) -> bool:
    """Whether ``target`` (the notebook's HTML) exists and is not older than the notebook."""
    try:
        return os.stat(target).st_mtime_ns >= os.stat(notebook).st_mtime_ns
    except FileNotFoundError:
        return False


def refresh_notebooks(notebooks: Iterable[str | Path]) -> dict[Path, Path | None]:
    """Render each notebook to ``.html`` beside it when that is missing or older than it.

    Returns each notebook's HTML file, or None when it could not be rendered (logged).
    """
    t0 = time.perf_counter()
    done: dict[Path, Path | None] = {}
    rendered = 0
    for path in map(Path, notebooks):
        target = path.with_suffix(".html")
        if html_is_fresh(path, target):
            done[path] = target
            continue
        try:
            _render(path, target)
        except Exception as exc:  # one bad notebook never stops the report
            log.warning("%s: cannot render to HTML (%s: %s)", path, type(exc).__name__, exc)
            done[path] = None
            continue
        rendered += 1
        done[path] = target
    if rendered:
        log.info("rendered %d notebooks to HTML in %.1f s", rendered, time.perf_counter() - t0)
    return done
