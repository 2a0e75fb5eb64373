"""What a flow's kernel says while it runs: ``<flow>_output.txt`` and the run's warnings.

Two halves, one on each side of the kernel's messages:

- ``KERNEL_SETUP``, source sent to each kernel (silently, before its first cell; standard library
  and IPython only, so any Python kernel runs it): Python warnings and ``logging`` records at
  WARNING or above are each published as a small ``display_data`` message of ductaflow's own
  MIME type, and a record that reaches no handler is written to stderr as
  ``LEVEL:logger:message`` (Python's ``logging.lastResort`` replaced; a flow that configures
  logging itself keeps its own handlers and format).
- ``FlowCapture``, in the engine: every iopub message of a running cell passes through it
  (``CapturingClient.process_message``). Stream text and tracebacks go to ``<flow>_output.txt``
  as they arrive (one write and flush a message, so ``tail -f`` follows a run), under a header
  per cell, up to ``RunOptions.output_limit`` bytes; ductaflow's own warning messages are
  collected as ``RunWarning`` records and kept out of the notebook.
"""

from __future__ import annotations

import contextlib
from typing import IO, Any

from nbclient import NotebookClient

from .process import strip_ansi
from .spec import RunWarning

__all__ = [
    "KERNEL_SETUP",
    "MAX_LISTED",
    "OUTPUT_SUFFIX",
    "WARNING_MIME",
    "CapturingClient",
    "FlowCapture",
    "output_name",
]

#: ``<flow>_output.txt``: the text a flow's cells wrote, beside its executed notebook.
OUTPUT_SUFFIX = "_output.txt"
#: The MIME type of the ``display_data`` messages that carry a warning out of a kernel.
WARNING_MIME = "application/vnd.ductaflow.warning+json"
#: Distinct warnings listed per flow in ``status.json`` (the rest are counted in one record).
MAX_LISTED = 50


def output_name(flow: str) -> str:
    """File name of a flow's captured text in its run directory."""
    return f"{flow}{OUTPUT_SUFFIX}"


KERNEL_SETUP = f"""
def _ductaflow_capture():
    import logging, sys, warnings
    try:
        from IPython.display import publish_display_data
    except ImportError:
        return
    mime, busy = {WARNING_MIME!r}, []
    machinery = ("ipykernel", "traitlets", "IPKernelApp", "jupyter_client", "tornado")

    def publish(kind, category, message):
        if busy:
            return
        busy.append(1)
        try:
            publish_display_data({{mime: {{"kind": kind, "category": category,
                                           "message": message[:2000]}}}})
        except Exception:
            pass
        finally:
            busy.clear()

    show = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        where = "" if "ipykernel_" in str(filename) else f" ({{filename}}:{{lineno}})"
        publish("warning", getattr(category, "__name__", str(category)), f"{{message}}{{where}}")
        show(message, category, filename, lineno, file, line)
        if file is None:
            sys.stderr.flush()

    warnings.showwarning = showwarning
    factory = logging.getLogRecordFactory()

    def record_factory(*args, **kwargs):
        record = factory(*args, **kwargs)
        if record.levelno >= logging.WARNING and not record.name.startswith(machinery):
            try:
                text = record.getMessage()
            except Exception:
                text = str(record.msg)
            publish("log", record.levelname, f"{{record.name}}: {{text}}")
        return record

    logging.setLogRecordFactory(record_factory)

    class ToStderr(logging.Handler):
        def emit(self, record):
            try:
                sys.stdout.flush()
                sys.stderr.write(self.format(record) + "\\n")
                sys.stderr.flush()
            except Exception:
                self.handleError(record)

    last = ToStderr(logging.NOTSET)
    last.setFormatter(logging.Formatter("%(levelname)s:%(name)s:%(message)s"))
    logging.lastResort = last

try:
    _ductaflow_capture()
except Exception:
    pass
del _ductaflow_capture
"""


class FlowCapture:
    """One flow's ``_output.txt`` and warnings, fed with the iopub messages of its cells."""

    def __init__(self, flow: str, fh: IO[str] | None, limit: int) -> None:
        self.flow = flow
        self.fh = fh
        self.limit = limit
        self.written = 0
        self.truncated = False
        self.cell: int | None = None
        self._pending = ""  # the injected cell's header, written before its first output
        self._warnings: dict[tuple[str, int | None, str, str], int] = {}
        self._unlisted = 0

    @classmethod
    def open(cls, flow: str, path: Any, limit: int) -> FlowCapture:
        """A capture writing to ``path`` (truncated); a disk that refuses only loses the text."""
        try:
            fh: IO[str] | None = open(path, "w", encoding="utf-8", errors="backslashreplace")
        except OSError:
            fh = None
        return cls(flow, fh, limit)

    # -- the text file ----------------------------------------------------------------------
    def write(self, text: str) -> None:
        if self.fh is None or self.truncated or not text:
            return
        if self._pending:
            text, self._pending = self._pending + text, ""
        size = len(text.encode("utf-8", "backslashreplace"))
        if self.written + size > self.limit:
            room = max(0, self.limit - self.written)
            text = text.encode("utf-8", "backslashreplace")[:room].decode("utf-8", "ignore")
            text += (
                f"\n[ductaflow: output truncated at {self.limit:,} bytes (output_limit); "
                "the executed notebook has all of it]\n"
            )
            self.truncated = True
        self.written += size
        try:
            self.fh.write(text)
            self.fh.flush()
        except (OSError, ValueError):
            self.close()

    def start_cell(self, number: int | None) -> None:
        """The header of a cell's block; ``number`` is the flow's cell number (None: the
        injected cell, headed only when it writes something)."""
        self.cell, self._pending = number, ""
        if number is None:
            self._pending = "===== injected parameters =====\n"
        else:
            self.write(f"===== cell {number} =====\n")

    def end(self, status: str, error: str | None, seconds: float) -> None:
        self._pending = ""
        tail = f": {error}" if error else ""
        self.write(f"===== the flow ended {status} in {seconds:.2f} s{tail} =====\n")

    def close(self) -> None:
        if self.fh is not None:
            with contextlib.suppress(OSError, ValueError):
                self.fh.close()
            self.fh = None

    # -- messages ---------------------------------------------------------------------------
    def message(self, msg: dict[str, Any]) -> bool:
        """Take in one iopub message of the running cell; False when it is ductaflow's own
        (a warning record, to be kept out of the notebook)."""
        kind = msg.get("msg_type")
        content = msg.get("content") or {}
        if kind == "stream":
            self.write(content.get("text") or "")
        elif kind == "error":
            lines = content.get("traceback") or [f"{content.get('ename')}: {content.get('evalue')}"]
            self.write(strip_ansi("\n".join(lines)) + "\n")
        elif kind == "display_data" and WARNING_MIME in (content.get("data") or {}):
            record = content["data"][WARNING_MIME]
            if isinstance(record, dict):
                self.add_warning(
                    str(record.get("kind") or "warning"),
                    str(record.get("category") or ""),
                    str(record.get("message") or ""),
                )
            return False
        return True

    def add_warning(self, kind: str, category: str, message: str) -> None:
        key = (kind, self.cell, category, message)
        if key in self._warnings:
            self._warnings[key] += 1
        elif len(self._warnings) < MAX_LISTED:
            self._warnings[key] = 1
        else:
            self._unlisted += 1

    @property
    def warnings(self) -> list[RunWarning]:
        """The flow's runtime warnings: identical ones (same cell, category, text) counted once."""
        out = [
            RunWarning(kind, message, self.flow, cell, category, count)
            for (kind, cell, category, message), count in self._warnings.items()
        ]
        if self._unlisted:
            note = f"{self._unlisted} more warnings, not listed (see the output file)"
            out.append(RunWarning("warning", note, self.flow, None, "ductaflow", self._unlisted))
        return out


class CapturingClient(NotebookClient):
    """An nbclient client that hands each output message of a cell to a ``FlowCapture``."""

    capture: FlowCapture | None = None

    def process_message(self, msg: dict[str, Any], cell: Any, cell_index: int) -> Any:
        capture = self.capture
        if capture is not None and not capture.message(msg):
            return None
        return super().process_message(msg, cell, cell_index)
