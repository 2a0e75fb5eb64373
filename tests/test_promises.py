"""README promises of ``ductaflow sweep`` and ``ductaflow report``, each proved through the CLI
as a user would meet it. Waits are events (hold files, log lines, files appearing), polled with
deadlines; nothing here measures speed. tests/PROMISES.md maps each promise to its test.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest
from helpers import (
    SLURM_CONF,
    RunsRoot,
    conductor,
    is_run_dir,
    read_json,
    release,
    run_cli,
    slurm_up,
    started,
    wait_for,
    wait_no_kernels,
    write_spec,
)

import ductaflow


def hold_dir(tmp_path: Path) -> Path:
    hold = tmp_path / "hold"
    hold.mkdir(exist_ok=True)
    return hold


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


# --- execution: -j, concurrency, a run's flows ------------------------------------------------


@pytest.mark.slow
def test_j_defaults_to_the_cores_and_that_many_runs_go_at_once(tmp_path: Path) -> None:
    cores = os.cpu_count() or 1
    hold = hold_dir(tmp_path)
    write_spec(tmp_path, "hold.py", grid={"x": list(range(cores + 2))}, base={"hold": str(hold)})
    with conductor("spec.json", "--no-report", "--no-progress", cwd=tmp_path, verbose=1) as c:
        # all `cores` runs are in their flow together: none has been released yet
        c.until(lambda: len(started(hold)) >= cores, what=f"{cores} runs at once")
        assert len(started(hold)) == cores, "more runs started than -j allows"
        release(hold)
        assert c.wait() == 0, c.output()
        assert f"-j {cores}," in c.err, c.err


@pytest.mark.slow
def test_j_n_runs_n_at_once_and_no_more(tmp_path: Path) -> None:
    hold = hold_dir(tmp_path)
    write_spec(tmp_path, "hold.py", grid={"x": list(range(5))}, base={"hold": str(hold)})
    with conductor("spec.json", "--no-report", "-j", "3", "--no-progress", cwd=tmp_path) as c:
        first = c.until(lambda: len(started(hold)) >= 3 and started(hold), what="3 at once")
        assert len(first) == 3
        release(hold, min(first))  # one finishes: exactly one more starts
        c.until(lambda: len(started(hold)) >= 4, what="the fourth run")
        assert len(started(hold)) == 4
        release(hold)
        assert c.wait() == 0, c.output()


@pytest.mark.slow
def test_a_run_stops_at_its_first_failed_flow(tmp_path: Path) -> None:
    write_spec(tmp_path, ("twoflows_a.py", "twoflows_b.py"), grid={"fail_first": [False, True]})
    proc = run_cli("sweep", "spec.json", "--no-report", "-j", "2", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    root = RunsRoot(tmp_path / "runs")
    by = root.by("fail_first")
    failed, fine = root.status(by[True]), root.status(by[False])
    assert failed["status"] == "failed"
    assert [f["status"] for f in failed["flows"]] == ["failed", "not-run"]
    assert (by[True] / "a.txt").exists() and not (by[True] / "b.txt").exists()
    assert not (by[True] / "twoflows_b_executed.ipynb").exists()
    assert [f["status"] for f in fine["flows"]] == ["ok", "ok"]
    assert (by[False] / "b.txt").read_text() == "b ran"


# --- execution options on sweep ---------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("option", ["--timeout", "--run-timeout"])
def test_sweep_timeouts_apply_to_every_run(tmp_path: Path, option: str) -> None:
    hold = hold_dir(tmp_path)  # never released: only the timeout ends these runs
    write_spec(tmp_path, "hold.py", grid={"x": [0, 1]}, base={"hold": str(hold)})
    proc = run_cli(
        "sweep", "spec.json", "--no-report", "-j", "2", option, "3", "--no-progress", cwd=tmp_path
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "0 ok, 0 failed, 2 timeout" in proc.stdout
    root = RunsRoot(tmp_path / "runs")
    assert set(root.statuses().values()) == {"timeout"}
    assert {r["status"] for r in root.rows()} == {"timeout"}
    assert not wait_no_kernels(tmp_path)


@pytest.mark.slow
def test_sweep_kernel_option_uses_the_registered_kernelspec(tmp_path: Path) -> None:
    spec_dir = tmp_path / "jupyter" / "kernels" / "other-python"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Other",
                "language": "python",
                "env": {"FROM_KERNELSPEC": "yes"},
            }
        )
    )
    write_spec(tmp_path, "preload_probe.py", grid={"x": [1, 2, 3]})
    env = {"JUPYTER_PATH": str(tmp_path / "jupyter")}
    proc = run_cli(
        "sweep",
        "spec.json",
        "--no-report",
        "-j",
        "2",
        "--kernel",
        "other-python",
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    root = RunsRoot(tmp_path / "runs")
    assert [root.results(d)["kernel_env"] for d in root.dirs().values()] == ["yes"] * 3
    bad = run_cli("sweep", "spec.json", "--kernel", "no-such-kernel", "--force", cwd=tmp_path)
    assert bad.returncode == 2 and "no-such-kernel" in one_line(bad.stderr), bad.stderr


@pytest.mark.slow
@pytest.mark.parametrize("how", ["--preload", "spec key", "none"])
def test_preload_reaches_warm_kernels(tmp_path: Path, how: str) -> None:
    """3 runs at -j 2 (more runs than -j: warm kernels): the zygote imported ``colorsys``."""
    extra = {"preload": ["colorsys"]} if how == "spec key" else {}
    write_spec(tmp_path, "preload_probe.py", grid={"x": [1, 2, 3]}, **extra)
    flags = ["--preload", "colorsys"] if how == "--preload" else []
    proc = run_cli("sweep", "spec.json", "--no-report", "-j", "2", *flags, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    root = RunsRoot(tmp_path / "runs")
    preloaded = [root.results(d)["preloaded"] for d in root.dirs().values()]
    assert preloaded == [how != "none"] * 3


# --- run names ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_hash_in_run_name_is_the_configs_hash(tmp_path: Path) -> None:
    write_spec(tmp_path, "hold.py", grid={"x": [1, 2]}, run_name="x{x}-{hash}")
    plan = run_cli("sweep", "spec.json", "--dry-run", cwd=tmp_path)
    assert plan.returncode == 0, plan.stderr
    proc = run_cli("sweep", "spec.json", "--no-report", "-j", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    root = RunsRoot(tmp_path / "runs")
    names = sorted(root.dirs())
    assert [re.fullmatch(r"x(\d)-([0-9a-f]{8})", n) is not None for n in names] == [True, True]
    for name, d in root.dirs().items():
        assert name == f"x{read_json(d / 'CONFIG.json')['x']}-{root.status(d)['config_hash'][:8]}"


def test_duplicate_run_names_are_exit_2_before_anything(tmp_path: Path) -> None:
    write_spec(tmp_path, "hold.py", grid={"x": [1, 2]}, run_name="same")
    proc = run_cli("sweep", "spec.json", cwd=tmp_path)
    assert proc.returncode == 2
    line = one_line(proc.stderr)
    assert "spec.json" in line and "run_name" in line and "{hash}" in line, line
    assert not (tmp_path / "runs").exists()


# --- two sweeps on one runs root ---------------------------------------------------------------


@pytest.mark.slow
def test_a_second_sweep_waits_for_the_first(tmp_path: Path) -> None:
    """B starts while A holds both runs' claims (the runs are held: the overlap is certain),
    says it found them busy, keeps waiting while they are held, and then reports A's results
    without running anything itself."""
    hold = hold_dir(tmp_path)
    write_spec(tmp_path, "hold.py", grid={"x": [0, 1]}, base={"hold": str(hold)})
    root = RunsRoot(tmp_path / "runs")
    args = ("spec.json", "-j", "2", "--no-progress", "--no-report")
    with conductor(*args, cwd=tmp_path) as a:
        a.until(lambda: len(started(hold)) == 2, what="A's two runs held")
        with conductor(*args, cwd=tmp_path, verbose=2) as b:
            b.until(lambda: b.err.count(": busy") == 2, what="B finds both runs busy")
            assert b.alive() and a.alive(), b.output()
            release(hold)
            assert a.wait() == 0, a.output()
            assert b.wait() == 0, b.output()
            assert "s: ok: 2 ok" in b.out, b.output()
    assert [root.executions(d) for d in root.dirs().values()] == [1, 1]
    assert len(list(hold.glob("started-*"))) == 2
    assert sorted(r["status"] for r in root.rows()) == ["ok", "ok"]


# --- the index ---------------------------------------------------------------------------------

FIXED = ["sweep", "run", "run_dir", "status", "started", "finished", "duration_s", "attempts",
         "error", "config_hash"]  # fmt: skip


@pytest.mark.slow
def test_index_columns_in_the_readme_order(tmp_path: Path) -> None:
    write_spec(tmp_path, "work.py", grid={"x": [1, 2]}, base={"model": {"depth": 3}})
    proc = run_cli("sweep", "spec.json", "--no-report", "-j", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    header = RunsRoot(tmp_path / "runs").header()
    assert header[: len(FIXED)] == FIXED
    rest = header[len(FIXED) :]
    # then, when present, the README's `warnings`, `env_hash`, `git_commit`, in that order
    records = [c for c in rest if "." not in c]
    assert records == [c for c in ("warnings", "env_hash", "git_commit") if c in records]
    assert rest[: len(records)] == records, rest
    rest = rest[len(records) :]
    kinds = [c.split(".")[0] for c in rest]
    assert kinds == sorted(kinds, key=["param", "result", "flow"].index), rest
    assert {"param.x", "param.model.depth", "result.double"} <= set(rest)
    assert rest[-1] == "flow.work.duration_s"


@pytest.mark.slow
def test_index_is_appended_per_run_and_rewritten_when_columns_change(tmp_path: Path) -> None:
    """Appends keep the file (same inode, one more line); a new column and the sweep's end
    rewrite it (atomically: a new inode)."""
    hold = hold_dir(tmp_path)
    table = [
        {"x": 0, "hold": "", "extra": ""},
        {"x": 1, "hold": str(hold), "extra": ""},
        {"x": 2, "hold": str(hold), "extra": "zzz"},
        {"x": 3, "hold": str(hold), "extra": ""},
    ]
    write_spec(tmp_path, "hold.py", table=table[:1])
    assert run_cli("sweep", "spec.json", "--no-report", cwd=tmp_path).returncode == 0
    write_spec(tmp_path, "hold.py", table=table)
    root = RunsRoot(tmp_path / "runs")
    index = root.path / "index.csv"

    def row_of(x: int) -> dict[str, str] | None:
        return next((r for r in root.rows() if r["param.x"] == str(x)), None)

    def replaced(fd: int) -> bool:
        """True once the file ``fd`` was opened on is no longer the index (renamed over)."""
        return os.fstat(fd).st_nlink == 0

    with conductor("spec.json", "-j", "3", "--no-progress", "--no-report", cwd=tmp_path) as c:
        c.until(lambda: started(hold) == {1, 2, 3}, what="x=1, 2, 3 held")
        fd = os.open(index, os.O_RDONLY)  # the file as the sweep's start rewrote it
        try:
            lines = len(index.read_text().splitlines())
            release(hold, 1)
            c.until(lambda: (row_of(1) or {}).get("status") == "ok", what="x=1 appended")
            assert not replaced(fd), "an append rewrote the file"
            assert len(index.read_text().splitlines()) == lines + 1
            assert "result.zzz" not in root.header()
            release(hold, 2)
            c.until(lambda: (row_of(2) or {}).get("status") == "ok", what="x=2 indexed")
            assert replaced(fd), "a new column did not rewrite the file"
            assert "result.zzz" in root.header()
        finally:
            os.close(fd)
        fd = os.open(index, os.O_RDONLY)
        try:
            release(hold, 3)
            assert c.wait() == 0, c.output()
            assert replaced(fd), "the sweep's end did not rewrite the file"
        finally:
            os.close(fd)
    assert sorted(r["param.x"] for r in root.rows()) == ["0", "1", "2", "3"]
    assert len(index.read_text().splitlines()) == 5


# --- reports -----------------------------------------------------------------------------------


class Page(HTMLParser):
    """What a test needs of a report page: its table rows' text, links, and scripts' sources."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.links: list[str] = []
        self.remote: list[str] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "tr":
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "a" and a.get("href"):
            self.links.append(a["href"] or "")
        for key in ("src", "href"):
            if (a.get(key) or "").startswith(("http://", "https://", "//")):
                self.remote.append(a[key] or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


@pytest.mark.slow
def test_report_of_real_sweeps_without_a_browser(tmp_path: Path) -> None:
    """Two real sweeps (real kernels) on one root: `ductaflow report` as a process, its page
    (parsed with the standard library) holding both sweeps' runs, links that resolve, a failed
    run's notebook rendered; exit 2 for an unknown sweep and for an empty root."""
    for name, table in (("a", [{"x": 1}, {"x": 2}]), ("b", [{"x": 3, "fail": True}])):
        write_spec(tmp_path, "work.py", name=name, table=table)
        run_cli("sweep", "spec.json", "-j", "2", "--no-report", cwd=tmp_path)  # `report` below
    root = tmp_path / "runs"
    proc = run_cli("report", "runs", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"report -> {root / 'report.html'}"
    page = Page((root / "report.html").read_text(encoding="utf-8"))
    assert not page.remote, page.remote
    runs = {d.name for sweep in ("a", "b") for d in (root / sweep).iterdir() if is_run_dir(d)}
    text_rows = [" ".join(r) for r in page.rows]
    for run in runs:
        assert any(run in r for r in text_rows), f"run {run} missing from the page"
    failed = next(r for r in text_rows if "asked to fail (x=3)" in r)
    assert "failed" in failed
    local = [
        unquote(link.split("#")[0])
        for link in page.links
        if not link.startswith(("#", "javascript"))
    ]
    assert local and all((root / link).exists() for link in local), local
    assert any(link.endswith("work_executed.html") for link in local)
    assert any(link.endswith("CONFIG.json") for link in local)

    one = run_cli("report", "runs", "--sweep", "a", "--no-notebooks", cwd=tmp_path)
    assert one.returncode == 0 and (root / "a" / "report.html").exists(), one.stderr
    a_rows = " ".join(" ".join(r) for r in Page((root / "a" / "report.html").read_text()).rows)
    assert "x=3" not in a_rows and "asked to fail" not in a_rows
    unknown = run_cli("report", "runs", "--sweep", "nope", cwd=tmp_path)
    assert unknown.returncode == 2 and "nope" in one_line(unknown.stderr)
    (tmp_path / "empty").mkdir()
    empty = run_cli("report", "empty", cwd=tmp_path)
    assert empty.returncode == 2, empty.stdout + empty.stderr
    one_line(empty.stderr)


@pytest.mark.slow
def test_report_flag_keeps_the_report_current_during_the_sweep(tmp_path: Path) -> None:
    hold = hold_dir(tmp_path)
    write_spec(tmp_path, "hold.py", grid={"x": [0, 1, 2]}, base={"hold": str(hold)})
    page = tmp_path / "runs" / "s" / "report.html"
    with conductor("spec.json", "-j", "2", "--report", "--no-progress", cwd=tmp_path) as c:
        first = c.until(lambda: len(started(hold)) >= 2 and started(hold), what="2 runs held")
        release(hold, min(first))
        c.until(page.exists, what="the report written mid-sweep")
        assert c.alive(), c.output()
        rows = [" ".join(r) for r in Page(page.read_text(encoding="utf-8")).rows]
        assert sum(" ok " in f" {r} " for r in rows) == 1, rows
        release(hold)
        assert c.wait() == 0, c.output()
    rows = [" ".join(r) for r in Page(page.read_text(encoding="utf-8")).rows]
    assert sum(" ok " in f" {r} " for r in rows) == 3, rows


# --- distributed backends ----------------------------------------------------------------------


def child_processes() -> list[str]:
    """Command lines of this process's live children."""
    me, out = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == me and fields[0] != "Z":
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
                if b"resource_tracker" not in cmdline:  # multiprocessing's, for the process
                    out.append(cmdline.decode())
        except (OSError, ValueError):
            continue
    return out


@pytest.mark.slow
@pytest.mark.distributed
def test_dask_local_runs_j_at_once_and_closes_its_cluster(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    hold = hold_dir(tmp_path)
    write_spec(tmp_path, "hold.py", grid={"x": list(range(4))}, base={"hold": str(hold)})
    with conductor("spec.json", "--no-report", "--backend", "dask-local", "-j", "3",
                   "--no-progress", cwd=tmp_path) as c:  # fmt: skip
        c.until(lambda: len(started(hold)) >= 3, what="3 runs at once on dask-local -j 3")
        assert len(started(hold)) == 3
        release(hold)
        assert c.wait() == 0, c.output()

    # in-process, so that this process can see the cluster's workers are gone when it returns
    before = child_processes()
    sweep = ductaflow.Sweep(name="d", flows=(tmp_path / "hold.py",), grid={"x": [5, 6, 7]})
    options = ductaflow.SweepOptions(tmp_path / "runs", 2, backend="dask-local", progress=False)
    report = ductaflow.execute_sweep(sweep, options)
    assert report.ok, report.summary()
    wait_for(lambda: set(child_processes()) <= set(before), what="the cluster's workers gone")


def test_slurm_job_script_defaults_and_flags() -> None:
    pytest.importorskip("dask_jobqueue")
    default = ductaflow.slurm_job_script()
    assert re.search(r"#SBATCH --mem=4G", default), default
    assert "#SBATCH -n 1" in default and "--nthreads 1" in default, default
    given = ductaflow.slurm_job_script(partition="cpu", time_minutes=90, mem="2G")
    assert "#SBATCH -p cpu" in given and "#SBATCH -t 01:30:00" in given, given
    assert "#SBATCH --mem=2G" in given


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.slurm
def test_slurm_flags_reach_the_job_script(tmp_path: Path) -> None:
    if why := slurm_up():
        pytest.skip(why)
    write_spec(tmp_path, "hold.py", grid={"x": [1]})
    env = {"SLURM_CONF": SLURM_CONF}
    proc = run_cli("sweep", "spec.json", "--no-report", "--backend", "slurm",
                   "--slurm-partition", "debug", "--slurm-time", "7", "--slurm-mem", "1G",
                   "-j", "1", cwd=tmp_path, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    script = (tmp_path / "runs" / ".slurm" / "job.sh").read_text()
    assert "#SBATCH -p debug" in script and "#SBATCH -t 00:07:00" in script, script
    assert "#SBATCH --mem=1G" in script
    bad = run_cli("sweep", "spec.json", "--backend", "slurm", "--slurm-partition", "nosuch",
                  "--force", cwd=tmp_path, env=env)  # fmt: skip
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert "Invalid partition name" in one_line(bad.stderr)


def test_report_subprocess_is_a_real_process(tmp_path: Path) -> None:
    """``python -m ductaflow report`` with no runs root at all: exit 2 and one line."""
    proc = subprocess.run(
        [sys.executable, "-m", "ductaflow", "report", "missing"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "missing" in one_line(proc.stderr)


@pytest.mark.slow
@pytest.mark.distributed
def test_dask_workers_must_see_the_runs_root(tmp_path: Path) -> None:
    """A worker that cannot see the runs root (here: its own mount namespace, with a tmpfs over
    the test's directory) makes ``--backend dask`` exit 2 in one line, naming the worker."""
    distributed = pytest.importorskip("distributed")
    probe = subprocess.run(
        ["unshare", "--mount", "true"], capture_output=True, text=True, timeout=60
    )
    if probe.returncode != 0:
        pytest.skip(f"no mount namespace here (unshare: {probe.stderr.strip()})")
    write_spec(tmp_path, "hold.py", grid={"x": [1, 2]})
    (tmp_path / "runs").mkdir()
    info = tmp_path.parent / f"{tmp_path.name}-scheduler.json"  # outside the hidden directory
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--port", "0", "--no-dashboard",
         "--scheduler-file", str(info)],
        cwd="/", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    worker = None
    try:
        wait_for(lambda: info.exists() and info.read_text().strip(), what="the scheduler")
        address = wait_for(lambda: json.loads(info.read_text()).get("address"), what="address")
        hide = (
            f"mount -t tmpfs tmpfs {tmp_path} && exec {sys.executable} -m "
            f"distributed.cli.dask_worker {address} --nthreads 1 --no-dashboard"
        )
        worker = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", hide],
            cwd="/", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        with distributed.Client(address, timeout=120) as client:
            wait_for(lambda: len(client.scheduler_info()["workers"]) == 1, what="the worker")
        proc = run_cli("sweep", "spec.json", "--backend", "dask", "--scheduler", address,
                       cwd=tmp_path)  # fmt: skip
        assert proc.returncode == 2, proc.stdout + proc.stderr
        line = one_line(proc.stderr)
        assert "not found on worker" in line and "share" in line, line
        assert not list((tmp_path / "runs").rglob("status.json"))
    finally:
        for p in (worker, scheduler):
            if p is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, 9)
                p.wait(timeout=60)
        info.unlink(missing_ok=True)
