"""What a flow itself calls. Imported inside kernels, so it imports nothing heavy.

``parameters(globals())``, as the last line of a flow's ``parameters`` cell, makes the flow run as
a plain script too: ``python flow/01_data_prep.py --config c.json --set alpha=0.3`` sets ``config``
and the same variables that ductaflow injects into a notebook run. Script mode is for ``.py`` flows
(percent or light format, both plain Python); a ``.md`` or ``.ipynb`` flow runs as a notebook
only. Under ductaflow, where the injected cell follows, and in an interactive kernel, it changes
nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

__all__ = ["parameters", "record"]


def _in_kernel() -> bool:
    return "ipykernel" in sys.modules or ("IPython" in sys.modules and _has_ipython_shell())


def _has_ipython_shell() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    return get_ipython() is not None


def parameters(namespace: dict[str, Any], argv: list[str] | None = None) -> None:
    """Set ``config`` and its top-level variables in ``namespace`` from the command line.

    In a notebook run by ductaflow (or any kernel) it does nothing; in an interactive kernel it
    only sets ``config = {}`` where the flow has none, so later cells can read it.
    """
    if os.environ.get("DUCTAFLOW_RUN_DIR"):
        return
    if argv is None and _in_kernel():
        namespace.setdefault("config", {})
        return
    from .config import is_variable_name, load_config, parse_set, set_dotted
    from .errors import InputError

    parser = argparse.ArgumentParser(
        prog=os.path.basename(sys.argv[0]) if sys.argv else "flow",
        description="Run this ductaflow flow as a plain script.",
    )
    parser.add_argument("--config", help="a JSON config file")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a key"
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        config: dict[str, Any] = load_config(args.config) if args.config else {}
        for key, value in parse_set(args.set):
            config = set_dotted(config, key, value)
    except InputError as exc:
        parser.exit(2, f"error: {exc}\n")
    namespace["config"] = config
    for key, value in config.items():
        if not isinstance(value, dict) and is_variable_name(key):
            namespace[key] = value


def _utf8(name: str, text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = text[exc.start : exc.end].encode("utf-8", "backslashreplace").decode()
        raise ValueError(
            f"record({name!r}, ...): the {what} holds {bad}, a lone surrogate that is not valid "
            "UTF-8 and cannot be stored; record the text it stands for"
        ) from None


def _scalar(name: str, value: Any) -> Any:
    """A result value checked to be a scalar that JSON and UTF-8 can hold (else this run
    fails here, in the flow's cell, rather than in the index later)."""
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        value = value.item()
    _utf8(name, name, "name")
    if isinstance(value, str):
        _utf8(name, value, "value")
    elif isinstance(value, int) and not isinstance(value, bool):
        try:
            str(value)
        except ValueError:
            raise ValueError(
                f"record({name!r}, ...): an integer past Python's int-to-str digit limit cannot "
                "be stored; record it as a float or a string"
            ) from None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"record({name!r}, ...): a result is a number, string, bool or None")


def record(name: str | dict[str, Any], value: Any = None) -> dict[str, Any]:
    """Record named scalar results of this run: ``record("rmse", 0.12)`` or ``record({...})``.

    In a run they go to ``results.json`` in the run directory (merged, written atomically) and
    from there into ``runs/index.csv`` as ``result.<name>`` columns. Everywhere they are shown.
    """
    import json

    items = dict(name) if isinstance(name, dict) else {name: value}
    results = {str(k): _scalar(str(k), v) for k, v in items.items()}
    run_dir = os.environ.get("DUCTAFLOW_RUN_DIR")
    if run_dir:
        path = os.path.join(run_dir, "results.json")
        try:
            with open(path, encoding="utf-8") as fh:
                merged = json.load(fh)
        except (OSError, ValueError):
            merged = {}
        merged.update(results)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(merged, fh, indent=2)
        os.replace(tmp, path)
    text = "\n".join(f"result {k} = {v!r}" for k, v in results.items())
    if _in_kernel():
        from IPython.display import Markdown, display

        rows = "\n".join(f"| {k} | {v!r} |" for k, v in results.items())
        display(Markdown(f"| result | value |\n|---|---|\n{rows}"))
    else:
        print(text)
    return results
