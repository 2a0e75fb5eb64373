"""The sweep report: the data behind its charts and table, the page, and a real browser on it."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import time
from collections.abc import Mapping, Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import nbformat
import pytest

import ductaflow.report as report
from ductaflow.cli import main
from ductaflow.engine import execute_run
from ductaflow.errors import InputError
from ductaflow.executor import SweepOptions, execute_sweep
from ductaflow.index import IndexFile, load_index
from ductaflow.notebook import ERROR_ANCHOR
from ductaflow.report import (
    load_details,
    refresh_notebooks,
    render_html,
    report_data,
    write_report,
)
from ductaflow.rundir import write_json, write_status
from ductaflow.spec import FlowRef, FlowResult, RunOptions, RunResult, RunSpec
from ductaflow.sweep import Sweep

CHROMIUM = Path("/usr/bin/chromium")
HOSTILE = '<script>alert("x")</script>'


# -- a runs root made without kernels ------------------------------------------------------------
def make_run(
    root: Path,
    name: str,
    config: Mapping[str, Any],
    *,
    status: str = "ok",
    results: Mapping[str, Any] | None = None,
    flows: Sequence[str] = ("prep", "fit"),
    failing: str | None = None,
    error: str | None = None,
    duration: float = 2.0,
    sweep: str = "s",
    started: str = "2025-03-01T10:00:00.000+00:00",
) -> Path:
    """One run directory as the engine leaves it: CONFIG.json, results, status, notebooks."""
    run_dir = root / sweep / name
    run_dir.mkdir(parents=True)
    write_json(run_dir / "CONFIG.json", dict(config))
    if results is not None:
        write_json(run_dir / "results.json", dict(results))
    flow_results = []
    state = "ok"
    for flow in flows:
        if state != "ok":
            flow_results.append(
                FlowResult(flow, f"/f/{flow}.py", "0", "not-run", f"{flow}_executed.ipynb")
            )
            continue
        if flow == failing:
            state = status
        cell = 2 if flow == failing else None
        flow_results.append(
            FlowResult(
                flow,
                f"/f/{flow}.py",
                "0",
                state,
                f"{flow}_executed.ipynb",
                duration_s=duration / len(flows),
                error=error if cell else None,
                failed_cell=cell,
            )
        )
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
        nbformat.write(nb, run_dir / f"{flow}_executed.ipynb")
    write_status(
        RunResult(
            run_dir=run_dir,
            status=status,
            started=started,
            finished=started.replace("10:00:00", "10:00:02"),
            duration_s=duration,
            config_hash="h" + name,
            flows=tuple(flow_results),
            error=error,
            traceback=f"Traceback\n{error}" if error else None,
            failed_flow=failing,
            sweep=sweep,
            name=name,
        )
    )
    return run_dir


def standard_runs(root: Path) -> Path:
    """Four runs over alpha: one failed, one timed out; noise is the same everywhere."""
    make_run(root, "a1", {"alpha": 1, "noise": 0.3}, results={"score": 2.0, "n": 7}, duration=1.0)
    make_run(
        root,
        "a2",
        {"alpha": 2, "noise": 0.3},
        status="failed",
        failing="fit",
        error="ValueError: alpha 2 is bad",
        results={"score": 4.5, "n": 7},
        duration=3.0,
    )
    make_run(root, "a3", {"alpha": 3, "noise": 0.3}, results={"score": 6.0, "n": 7}, duration=2.0)
    make_run(
        root,
        "a4",
        {"alpha": 4, "noise": 0.3},
        status="timeout",
        failing="prep",
        error="CellTimeout: the cell exceeded --timeout 1 s",
        duration=10.0,
    )
    IndexFile(root).rebuild()
    return root


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    return standard_runs(tmp_path / "runs")


def data_for(root: Path, base: Path | None = None) -> report.ReportData:
    frame = load_index(root)
    return report_data(frame, details=load_details(frame["run_dir"]), base=base or root)


# -- the data behind the page --------------------------------------------------------------------
def test_public_api() -> None:
    assert set(report.__all__) >= {
        "report_data",
        "render_html",
        "write_report",
        "ReportData",
        "refresh_notebooks",
    }
    assert all(hasattr(report, name) for name in report.__all__)
    assert not hasattr(report, "render_notebook")  # dead: refresh_notebooks renders


def test_header_counts_and_times(runs: Path) -> None:
    header = data_for(runs).header
    assert header.title == "s"
    assert header.n_runs == 4
    assert header.counts == (("failed", 1), ("timeout", 1), ("ok", 2))
    assert header.n_bad == 2
    assert header.total_s == pytest.approx(16.0)
    assert header.median_s == pytest.approx(2.5)
    assert header.started is not None and header.started.isoformat().startswith("2025-03-01T10")
    assert header.wall_s == pytest.approx(2.0)
    assert header.constants == (("noise", "0.3"),)
    assert header.constant_results == (("n", "7"),)


def test_table_lists_failures_first(runs: Path) -> None:
    data = data_for(runs)
    assert [(r.run, r.status) for r in data.rows] == [
        ("a2", "failed"),
        ("a4", "timeout"),
        ("a1", "ok"),
        ("a3", "ok"),
    ]
    assert data.param_columns == ("alpha",)  # noise is the same everywhere: in the header
    assert data.result_columns == ("n", "score")
    failed = data.rows[0]
    assert failed.error == "ValueError: alpha 2 is bad"
    assert [v.text for v in failed.params] == ["2"]
    assert [v.text for v in failed.results] == ["7", "4.5"]
    assert failed.results[1].sort == 4.5
    assert "alpha 2 is bad" in failed.traceback


def test_only_varied_params_are_charted(runs: Path) -> None:
    data = data_for(runs)
    assert [c.param for c in data.status_by_param] == ["alpha"]
    bars = {b.label: dict(b.counts) for b in data.status_by_param[0].bars}
    assert bars == {"1": {"ok": 1}, "2": {"failed": 1}, "3": {"ok": 1}, "4": {"timeout": 1}}
    # score varies and is charted against alpha; n is the same everywhere: not charted
    assert [(s.result, s.param) for s in data.results] == [("score", "alpha")]


def test_result_series_has_one_point_per_run_that_recorded_it(runs: Path) -> None:
    (series,) = data_for(runs).results
    assert series.categories == ("1", "2", "3", "4")
    points = sorted((p.run, p.x, p.y, p.status) for p in series.points)
    # a4 recorded nothing: no point; a2 recorded a score before it failed: a failed point
    assert points == [("a1", 0, 2.0, "ok"), ("a2", 1, 4.5, "failed"), ("a3", 2, 6.0, "ok")]


def test_many_numeric_values_get_an_axis_and_bins(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    for i in range(30):
        alpha = 10.0 ** (i / 10 - 1)  # 0.1 .. 79: three decades
        status = "failed" if i % 10 == 0 else "ok"
        make_run(
            root,
            f"r{i:02d}",
            {"alpha": alpha},
            status=status,
            failing="fit" if status != "ok" else None,
            error="E: x" if status != "ok" else None,
            results={"loss": float(i)},
            duration=1.0 + i,
        )
    IndexFile(root).rebuild()
    data = data_for(root)
    (series,) = data.results
    assert series.categories == () and series.log_x
    assert sorted(p.x for p in series.points)[0] == pytest.approx(0.1)
    (status,) = data.status_by_param
    assert 2 <= len(status.bars) <= report.MAX_STATUS_BARS
    assert sum(b.total for b in status.bars) == 30
    assert sum(dict(b.counts).get("failed", 0) for b in status.bars) == 3
    hist = data.durations
    assert hist.n == 30
    assert hist.edges[0] <= 1.0 and hist.edges[-1] >= 30.0
    assert sum(dict(hist.counts)["failed"]) == 3
    page = render_html(data)
    assert "alpha (log scale)" in page and page.count('<circle class="pt') == 30


def test_failed_runs_link_to_their_error(runs: Path) -> None:
    data = data_for(runs)
    by_run = {r.run: r for r in data.rows}
    failed = by_run["a2"]
    prep, fit = failed.notebooks
    assert fit.href == f"s/a2/fit_executed.html#{ERROR_ANCHOR}"
    assert fit.status == "failed" and "cell 2" in fit.title
    assert prep.href == "s/a2/prep_executed.html"
    assert failed.error_href == fit.href
    timed_out = by_run["a4"]
    assert timed_out.notebooks[0].href == f"s/a4/prep_executed.html#{ERROR_ANCHOR}"
    assert timed_out.notebooks[1].href is None  # fit never ran
    ok = by_run["a1"]
    assert all(n.href and "#" not in n.href for n in ok.notebooks)
    assert ok.error_href is None
    assert ok.config.href == "s/a1/CONFIG.json"
    assert (runs / unquote(ok.config.href)).is_file()


def test_links_without_status_json_come_from_the_index(runs: Path) -> None:
    data = report_data(load_index(runs), base=runs)  # no details: flow.* columns only
    failed = next(r for r in data.rows if r.run == "a2")
    assert [n.label for n in failed.notebooks] == ["fit", "prep"]
    assert failed.error_href is not None and failed.error_href.endswith(f"#{ERROR_ANCHOR}")


def test_hostile_strings_are_escaped(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    evil_key = '<b onmouseover="x">k'
    for i, value in enumerate([HOSTILE, "plain"]):
        make_run(
            root,
            f"r{i}",
            {"label": value, evil_key: i, "alpha": i},
            status="failed",
            failing="fit",
            error=f'Boom: "><img src=x onerror=alert(1)> {HOSTILE}',
            results={"score": float(i), "note": HOSTILE},
        )
    IndexFile(root).rebuild()
    page = render_html(data_for(root))
    assert page.count("<script") == 1  # ours only
    assert "<img" not in page and "<b " not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "&lt;b onmouseover=&quot;x&quot;&gt;k" in page


def test_page_loads_nothing_from_the_network(runs: Path) -> None:
    page = render_html(data_for(runs))
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page)
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert page.count("<svg") == 4  # durations, seconds per flow, status by alpha, score


def test_charts_hold_their_marks(runs: Path) -> None:
    page = render_html(data_for(runs))
    assert len(re.findall(r'<circle class="pt st-(?:ok|failed)"', page)) == 3
    assert len(re.findall(r'<circle class="pt st-failed"', page)) == 1
    assert len(re.findall(r'<rect class="seg st-', page)) == 4
    assert 'class="bar st-timeout"' in page
    assert f'href="s/a2/fit_executed.html#{ERROR_ANCHOR}"' in page


# -- files: notebooks, paths, moved folders --------------------------------------------------------
def test_notebooks_render_only_when_missing_or_stale(tmp_path: Path) -> None:
    nb_path = tmp_path / "flow_executed.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Hello <b>there</b>")])
    nbformat.write(nb, nb_path)
    html_path = nb_path.with_suffix(".html")
    assert refresh_notebooks([nb_path]) == {nb_path: html_path}
    first = html_path.stat().st_mtime_ns
    assert "Hello" in html_path.read_text(encoding="utf-8")
    refresh_notebooks([nb_path])
    assert html_path.stat().st_mtime_ns == first  # up to date: not rendered again
    later = time.time() + 5
    os.utime(nb_path, (later, later))
    refresh_notebooks([nb_path])
    assert html_path.stat().st_mtime_ns > first
    nb_path.write_text("not a notebook")
    os.utime(nb_path, (later + 5, later + 5))
    assert refresh_notebooks([nb_path]) == {nb_path: None}  # logged, never raised


RICH_FLOW = """\
# %% tags=["parameters"]
alpha = 1

# %% [markdown]
# A formula, $e^{i \\pi} + 1 = 0$, and a diagram:
#
# ```mermaid
# graph LR; a --> b
# ```

# %%
import pandas as pd
from IPython.display import HTML, Markdown, display
display(Markdown("$$x^2$$"), HTML("<b>bold</b>"))
pd.DataFrame({"alpha": [alpha], "twice": [2 * alpha]})

# %%
raise ValueError("the end")
"""


class _Loads(HTMLParser):
    """What a page would fetch: URLs of script/link/img/iframe/source tags, CSS and script text."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.texts: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href", "img": "src", "iframe": "src", "source": "src"}
        for name, value in attrs:
            if name == wanted.get(tag) and value:
                self.urls.append(value)
            if name == "style" and value:
                self.texts.append(value)
        self._in = tag if tag in ("script", "style") else None

    def handle_endtag(self, tag: str) -> None:
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in:
            self.texts.append(data)


def network_loads(page: str) -> list[str]:
    """Every URL the page would load from http(s) (or a protocol-relative //host)."""
    parser = _Loads()
    parser.feed(page)
    remote = re.compile(r"^\s*(?:https?:)?//", re.I)
    found = [u for u in parser.urls if remote.match(u)]
    for text in parser.texts:
        text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)  # CSS comments name sites, load none
        found += re.findall(r"@import[^;]*", text)
        found += re.findall(r"url\(\s*[\"']?(?:https?:)?//[^)]*\)", text, flags=re.I)
        found += re.findall(r"[\"'](?:https?:)?//[^\"']+[\"']", text, flags=re.I)
    return found


def test_executed_notebooks_render_offline(tmp_path: Path) -> None:
    flow = tmp_path / "rich.py"
    flow.write_text(RICH_FLOW)
    run_dir = tmp_path / "runs" / "s" / "r1"
    result = execute_run(
        RunSpec(run_dir, {"alpha": 3}, (FlowRef.from_path(flow),)), RunOptions(warm=False)
    )
    assert result.status == "failed"  # a real executed notebook, error marker included
    notebook = run_dir / "rich_executed.ipynb"
    html_path = notebook.with_suffix(".html")
    assert refresh_notebooks([notebook]) == {notebook: html_path}
    page = html_path.read_text(encoding="utf-8")
    assert "<b>bold</b>" in page and "twice" in page and "the end" in page
    assert f'id="{ERROR_ANCHOR}"' in page
    assert "x^2" in page  # formulas stay, as their LaTeX source
    assert network_loads(page) == []
    # the check itself sees what nbconvert's default template loads
    from nbconvert import HTMLExporter

    default, _ = HTMLExporter(template_name="lab").from_filename(str(notebook))
    loads = network_loads(default)
    assert any("require" in u for u in loads) and any("mathjax" in u.lower() for u in loads)


def test_write_report_for_a_sweep_links_relative_to_the_page(runs: Path, tmp_path: Path) -> None:
    out = write_report(runs, sweep="s", render_notebooks=False)
    assert out == runs / "s" / "report.html"
    page = out.read_text(encoding="utf-8")
    # no HTML rendered: the notebooks are linked as .ipynb, which exist
    hrefs = re.findall(r'href="([^"#]+)(?:#[^"]*)?"', page)
    notebooks = {h for h in hrefs if h.endswith(".ipynb")}
    assert len(notebooks) == 7 and all((out.parent / unquote(h)).is_file() for h in notebooks)
    assert "a2/fit_executed.ipynb" in page and f"ipynb#{ERROR_ANCHOR}" not in page
    # the folder moves: the report made there still finds every run
    moved = tmp_path / "elsewhere" / "runs"
    shutil.copytree(runs, moved)
    shutil.rmtree(runs)
    out = write_report(moved, output=moved / "r" / "page.html", render_notebooks=False)
    page = out.read_text(encoding="utf-8")
    configs = re.findall(r'href="([^"]+CONFIG\.json)"', page)
    assert len(configs) == 4 and all((out.parent / unquote(h)).is_file() for h in configs)


def test_write_report_rejects_unknown_sweeps_and_empty_roots(runs: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no runs of sweep 'nope'; sweeps there: s"):
        write_report(runs, sweep="nope")
    with pytest.raises(InputError, match="no such runs root"):
        write_report(tmp_path / "missing")


def test_cli_report_command(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = runs / "x.html"
    argv = ["report", str(runs), "--sweep", "s", "-o", str(out), "--no-notebooks"]
    assert main(argv) == 0
    assert out.is_file() and not list(runs.glob("s/*/*_executed.html"))
    assert capsys.readouterr().out == f"report -> {out}\n"
    assert main(["report", str(runs), "--sweep", "nope"]) == 2  # bad input: one line, exit 2
    assert "no runs of sweep 'nope'" in capsys.readouterr().err
    assert main(["report", str(runs / "missing")]) == 2
    assert main(["report", str(runs)]) == 0  # default output, notebooks rendered
    assert (runs / "report.html").is_file()
    assert (runs / "s" / "a1" / "fit_executed.html").is_file()


# -- end to end: real kernels, a real browser ------------------------------------------------
RECORD_FLOW = """\
# %% tags=["parameters"]
alpha = 1

# %%
import ductaflow
ductaflow.record("score", alpha * 2)
"""

CHECK_FLOW = """\
# %% tags=["parameters"]
alpha = 1

# %%
print("checking", alpha)

# %%
if alpha == 2:
    raise ValueError("alpha 2 is not allowed")
"""

# Opens the report in a frame, then writes what the browser drew into its own DOM for --dump-dom.
PROBE = """<!DOCTYPE html><html><body>
<iframe id="f" src="report.html" style="width:1400px;height:1600px"></iframe>
<pre id="out">not loaded</pre>
<script>
window.addEventListener("load", function () {
  var out = document.getElementById("out");
  try {
    var d = document.getElementById("f").contentDocument;
    function marks(sel) {
      return Array.prototype.map.call(d.querySelectorAll(sel), function (el) {
        var box = el.getBBox();
        return {fill: getComputedStyle(el).fill, w: box.width, h: box.height};
      });
    }
    function runs() {
      return Array.prototype.map.call(d.querySelectorAll("table.runs tbody tr"), function (r) {
        return r.cells[1].textContent.trim();
      });
    }
    var before = runs();
    var score = Array.prototype.find.call(d.querySelectorAll("table.runs th"), function (th) {
      return th.textContent.indexOf("score") >= 0;
    });
    score.click();
    out.textContent = JSON.stringify({
      svgs: d.querySelectorAll("svg.chart").length,
      points: marks("svg.chart.result circle.pt"),
      bars: marks("svg.chart.durations rect.bar"),
      segments: marks("svg.chart.status rect.seg"),
      sortable: d.querySelector("table.runs").className,
      before: before,
      sorted: runs()
    });
  } catch (e) { out.textContent = "error: " + e; }
});
</script></body></html>
"""


BROWSER_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)  # fmt: skip


def chromium(*args: str, profile: Path) -> str:
    """Headless Chromium with a fresh profile; its stdout."""
    done = subprocess.run(
        [str(CHROMIUM), *BROWSER_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert done.returncode == 0, f"chromium exited {done.returncode}: {done.stderr[-2000:]}"
    return done.stdout


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def rgb(color: str) -> str:
    r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs /usr/bin/chromium (apt-get install -y chromium; .ci/run installs it)",
)
def test_report_of_a_real_sweep_in_a_real_browser(tmp_path: Path) -> None:
    record, check = tmp_path / "record.py", tmp_path / "check.py"
    record.write_text(RECORD_FLOW)
    check.write_text(CHECK_FLOW)
    root = tmp_path / "runs"
    sweep = Sweep(name="t", flows=(record, check), grid={"alpha": [1, 2, 3]})
    result = execute_sweep(sweep, SweepOptions(runs_root=root, n_jobs=2, progress=False))
    assert sorted(o.result.status for o in result.outcomes if o.result) == ["failed", "ok", "ok"]

    out = write_report(root, sweep="t")
    assert out == root / "t" / "report.html"
    page = out.read_text(encoding="utf-8")
    failed_dir = next(p for p in (root / "t").iterdir() if p.name.startswith("alpha=2"))

    # the failed run's link opens its rendered notebook at the failing cell
    links = re.findall(r'href="([^"]+)#' + ERROR_ANCHOR + '"', page)
    assert links, "no link to a failing cell"
    target = (out.parent / unquote(links[0])).resolve()
    assert target == (failed_dir / "check_executed.html").resolve()
    assert f'id="{ERROR_ANCHOR}"' in target.read_text(encoding="utf-8")
    assert (failed_dir / "record_executed.html").is_file()

    # rendered notebooks are kept while they are up to date
    stamps = {p: p.stat().st_mtime_ns for p in root.glob("t/*/*_executed.html")}
    assert len(stamps) == 6
    write_report(root, sweep="t")
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps

    # the browser draws the charts with their marks, and the table sorts
    (out.parent / "probe.html").write_text(PROBE, encoding="utf-8")
    probe = (out.parent / "probe.html").as_uri()
    dom = chromium(
        "--allow-file-access-from-files", "--dump-dom", probe, profile=tmp_path / "profile-dom"
    )
    found = re.search(r'<pre id="out">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    drawn = json.loads(found.group(1).replace("&quot;", '"'))
    assert drawn["svgs"] == 4  # durations, per flow, status by alpha, score by alpha
    points = drawn["points"]
    assert len(points) == 3 and all(p["w"] > 0 and p["h"] > 0 for p in points)
    fills = sorted(p["fill"] for p in points)
    assert fills == sorted(
        [rgb(report.STATUS_COLORS["ok"])] * 2 + [rgb(report.STATUS_COLORS["failed"])]
    )
    assert sum(1 for b in drawn["bars"] if b["h"] > 0) >= 2
    assert {s["fill"] for s in drawn["segments"]} == {
        rgb(report.STATUS_COLORS["ok"]),
        rgb(report.STATUS_COLORS["failed"]),
    }
    assert "sortable" in drawn["sortable"]
    assert drawn["before"][0].startswith("alpha=2")  # failures first
    assert [r.split("-")[0] for r in drawn["sorted"]] == ["alpha=1", "alpha=2", "alpha=3"]

    shot = tmp_path / "report.png"
    chromium(
        "--hide-scrollbars",
        f"--screenshot={shot}",
        "--window-size=1400,1800",
        out.as_uri(),
        profile=tmp_path / "profile-shot",
    )
    assert png_size(shot) == (1400, 1800)
    assert shot.stat().st_size > 20_000  # a blank page is a few kB


# -- a large report: the table is data, paged, sorted and filtered in the page ------------------
def many_runs(root: Path, n: int) -> Path:
    """``n`` runs of one flow, files only (an empty notebook each): every 17th failed."""
    started, finished = "2025-03-01T10:00:00.000+00:00", "2025-03-01T10:00:02.000+00:00"
    for i in range(n):
        failed = i % 17 == 3
        status = "failed" if failed else "ok"
        run_dir = root / "big" / f"alpha={i % 50}_seed={i:05d}"
        run_dir.mkdir(parents=True)
        write_json(run_dir / "CONFIG.json", {"alpha": i % 50, "seed": i})
        write_json(run_dir / "results.json", {"score": (i * 7919 % 1000) / 10})
        (run_dir / "fit_executed.ipynb").touch()
        error = f"ValueError: run {i} <b>bad</b>" if failed else None
        flow = FlowResult(
            "fit", "/f/fit.py", "0", status, "fit_executed.ipynb", started, finished,
            1.0 + i % 7, error, f"Traceback\n{error}" if failed else None, 2 if failed else None,
        )  # fmt: skip
        tb = f"Traceback\n{error}" if failed else None
        result = RunResult(
            run_dir, status, started, finished, 1.0 + i % 7, f"h{i}", (flow,), error, tb,
            sweep="big", name=run_dir.name,
        )  # fmt: skip
        write_status(result)
    IndexFile(root).rebuild()
    return root


LARGE_PROBE = """<!DOCTYPE html><html><body>
<iframe id="f" style="width:1400px;height:1600px"></iframe>
<pre id="out">not loaded</pre>
<script>
var frame = document.getElementById("f"), t0 = performance.now();
frame.addEventListener("load", function () {
  var out = document.getElementById("out"), loaded = performance.now() - t0;
  try {
    var d = frame.contentDocument;
    function rows() {
      return Array.prototype.map.call(d.querySelectorAll("#runs-table tbody tr"), function (r) {
        var links = Array.prototype.map.call(r.querySelectorAll("a"), function (a) {
          return a.getAttribute("href");
        });
        return {status: r.cells[0].textContent, run: r.cells[1].textContent,
                alpha: r.cells[2].textContent, score: r.cells[4].textContent,
                error: r.cells[r.cells.length - 1].textContent, links: links};
      });
    }
    function where() { return d.getElementById("where").textContent; }
    function th(name) {
      return Array.prototype.find.call(d.querySelectorAll("#runs-table th"), function (h) {
        return h.textContent.replace(/^(param|result)/, "") === name;
      });
    }
    var got = {loaded_ms: loaded, svgs: d.querySelectorAll("svg.chart").length,
               dots: d.querySelectorAll("svg.chart circle").length,
               first: rows(), where: where()};
    d.getElementById("next").click();
    got.second = rows(); got.where2 = where();
    th("run").click();  // sorting before any filter was touched keeps every run
    got.byRun = rows(); got.byRunWhere = where();
    var status = d.getElementById("status-filter");
    status.value = "!ok"; status.dispatchEvent(new Event("change"));
    got.failedWhere = where();
    status.value = ""; status.dispatchEvent(new Event("change"));
    th("score").click();
    got.byScore = rows();
    th("score").click();
    got.byScoreDown = rows();
    var text = d.getElementById("text-filter");
    text.value = "alpha=7"; text.dispatchEvent(new Event("input"));
    got.alpha7 = rows(); got.alpha7Where = where();
    out.textContent = JSON.stringify(got);
  } catch (e) {  // what the table held then: a failure here says what the page drew
    var trs = frame.contentDocument.querySelectorAll("#runs-table tbody tr");
    out.textContent = "error: " + e + " " + e.stack + "\\n" + trs.length + " rows; the first: " +
      (trs.length ? trs[0].outerHTML : "none") + "\\nwhere: " +
      (frame.contentDocument.getElementById("where") || {}).textContent;
  }
});
frame.src = "report.html";
</script></body></html>
"""


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")
def test_a_10000_run_report_pages_sorts_and_filters_in_a_browser(tmp_path: Path) -> None:
    n = 10_000
    root = many_runs(tmp_path / "runs", n)
    t0 = time.perf_counter()
    out = write_report(root, sweep="big", render_notebooks=False)
    seconds = time.perf_counter() - t0
    size = out.stat().st_size
    print(f"report of {n:,} runs: {size / 1e6:.1f} MB in {seconds:.2f} s")
    assert size < 5e6
    page = out.read_text(encoding="utf-8")
    assert "<b>bad</b>" not in page and "<tbody>" not in page  # data, escaped, no HTML rows
    assert page.count("<circle") <= report.MAX_POINTS * 2
    assert network_loads(page) == []

    (out.parent / "probe.html").write_text(LARGE_PROBE, encoding="utf-8")
    dom = chromium(
        "--allow-file-access-from-files", "--virtual-time-budget=20000", "--dump-dom",
        (out.parent / "probe.html").as_uri(), profile=tmp_path / "profile",
    )  # fmt: skip
    found = re.search(r'<pre id="out">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    text = found.group(1)
    assert not text.startswith(("error", "not loaded")), text[:2000]
    got = json.loads(text.replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">")
                     .replace("&amp;", "&"))  # fmt: skip
    n_failed = sum(1 for i in range(n) if i % 17 == 3)
    first, second = got["first"], got["second"]
    assert len(first) == len(second) == 100
    assert got["where"] == f"1–100 of {n:,} runs, page 1 of 100"
    assert got["where2"].startswith("101–200 of")
    # failures first: all 589 of them on the first pages, each with its error and links
    assert all(r["status"] == "failed" for r in first + second)
    assert got["failedWhere"] == f"1–100 of {n_failed} (of {n:,} runs), page 1 of 6"
    bad = first[0]
    assert bad["error"].startswith("ValueError: run ") and "<b>bad</b>" in bad["error"]
    run_href, notebook, config, error_href = bad["links"]
    assert (out.parent / unquote(run_href)).is_dir()
    assert notebook == error_href and (out.parent / unquote(notebook)).is_file()
    assert notebook.endswith("fit_executed.ipynb") and config.endswith("/CONFIG.json")
    assert (out.parent / unquote(config)).is_file()
    # sorting by a result, both ways; by run, every run still shown
    assert got["byRunWhere"] == got["where"]
    by_run = [r["run"] for r in got["byRun"]]
    assert by_run == sorted(by_run) and by_run[0] == "alpha=0_seed=00000"
    scores = [float(r["score"]) for r in got["byScore"]]
    assert scores == sorted(scores) and scores[0] == 0.0
    down = [float(r["score"]) for r in got["byScoreDown"]]
    assert down == sorted(down, reverse=True) and down[0] == 99.9
    # filtering by a parameter value
    assert got["alpha7Where"] == f"1–100 of {n // 50} (of {n:,} runs), page 1 of 2"
    assert {r["alpha"] for r in got["alpha7"]} == {"7"}
    # charts drawn from aggregates and a capped sample
    assert got["svgs"] >= 3 and 0 < got["dots"] <= 2 * report.MAX_POINTS  # score by alpha, seed
    print(f"opened in Chromium in {got['loaded_ms']:.0f} ms")


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")
def test_a_large_reports_paged_table_marks_the_best_trial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ductaflow

    flow = Path(__file__).parent / "flows" / "quadratic.py"
    space = {"x": {"uniform": [-3, 5]}, "y": {"uniform": [-5, 3]}}
    block = {"result": "loss", "trials": 6, "sampler": "random", "seed": 4, "space": space}
    sweep = Sweep.from_dict({"name": "q", "flows": [str(flow)], "optimize": block})
    root = tmp_path / "runs"
    done = execute_sweep(sweep, SweepOptions(runs_root=root, n_jobs=2, progress=False,
                                             report=False))  # fmt: skip
    assert done.ok, done.summary()
    best_run = ductaflow.load_study(root, "q").best_trial.user_attrs["ductaflow_run"]
    # past TABLE_ROWS_MAX runs the table is data that table.js draws: make 6 runs "large"
    monkeypatch.setattr(report, "TABLE_ROWS_MAX", 2)
    out = write_report(root, sweep="q", render_notebooks=False)
    assert "<tbody>" not in out.read_text(encoding="utf-8")
    dom = chromium("--allow-file-access-from-files", "--virtual-time-budget=10000",
                   "--dump-dom", out.as_uri(), profile=tmp_path / "profile")  # fmt: skip
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", dom, re.S)
    assert sum(1 for r in rows if 'class="run"' in r) == 6, dom[-3000:]
    (marked,) = [r for r in rows if "★ best" in r]
    assert f">{best_run}</a>" in marked


def test_a_run_that_took_more_than_one_attempt_is_marked(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    make_run(root, "once", {"alpha": 1})
    again = make_run(root, "twice", {"alpha": 2})
    status = json.loads((again / "status.json").read_text())
    write_json(again / "status.json", {**status, "attempts": 2})  # a worker lost the first
    IndexFile(root).rebuild()
    assert {r.run: r.attempts for r in data_for(root).rows} == {"once": 1, "twice": 2}
    page = write_report(root, render_notebooks=False).read_text()
    assert page.count('class="attempts"') == 1 and "×2</span>" in page
    # the paged table of a large report says it too, by row (failures first, then by run)
    frame = load_index(root)
    table = report.run_table(frame, data_for(root), base=root)
    assert table.columns["run"] == ["once", "twice"] and table.columns["retried"] == {1: 2}
