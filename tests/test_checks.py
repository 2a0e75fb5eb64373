"""The ast checks of a flow's source: what it reads, what it overwrites, and the two warnings
(in the terminal, in status.json) and ``--strict``, with real kernels where a run is involved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import read_json, run_cli

from ductaflow.checks import check_runs, inspect_notebook, is_clean_exit
from ductaflow.errors import FlowError, SweepSpecError
from ductaflow.index import load_index
from ductaflow.spec import FlowRef


def facts_of(tmp_path: Path, source: str, name: str = "f.py"):
    path = tmp_path / name
    path.write_text(source)
    ref = FlowRef.from_path(path)
    assert ref.facts is not None
    return ref.facts


def test_reads_names_and_config_paths(tmp_path: Path) -> None:
    facts = facts_of(
        tmp_path,
        "# %%\nx = alpha + 1\nd = config['model']['depth']\ne = config.get('seed', 0)\n"
        "if 'noise' in config:\n    pass\ndef f():\n    return beta\n",
    )
    assert {"alpha", "beta"} <= facts.names
    assert facts.config_paths == {("model", "depth"), ("seed",), ("noise",)}
    assert not facts.passes_config
    assert facts.reads("alpha") and facts.reads("model.depth") and facts.reads("model")
    assert facts.reads("seed") and not facts.reads("gamma") and not facts.reads("model.kind")


@pytest.mark.parametrize(
    "use", ["json.dumps(config)", "for k in config: pass", "config.items()", "f(**config)"]
)
def test_config_handed_on_whole(tmp_path: Path, use: str) -> None:
    assert facts_of(tmp_path, f"# %%\nimport json\n{use}\n").passes_config


def test_overwrites_are_first_assignments_after_the_parameters_cell(tmp_path: Path) -> None:
    facts = facts_of(
        tmp_path,
        "# %%\nearly = 1\n\n"  # before the parameters cell: the injection comes after it
        '# %% tags=["parameters"]\nalpha = 0.1\nbeta = 2\n\n'
        "# %%\nprint(beta)\nbeta = 3\n\n"  # read first: not an overwrite
        "# %%\nimport numpy as np\nfor seed in range(3):\n    pass\ngamma = gamma_default = 1\n"
        "alpha += 1\n"  # augmented: reads first
        "def delta():\n    return 1\n",
    )
    assert [(n, c, ln) for n, c, ln in facts.overwrites] == [
        ("np", 4, 1), ("seed", 4, 2), ("gamma", 4, 4), ("gamma_default", 4, 4), ("delta", 4, 6),
    ]  # fmt: skip


def test_a_flow_without_parameters_cell_is_checked_from_its_first_cell(tmp_path: Path) -> None:
    facts = facts_of(tmp_path, "# %%\nalpha = 0.1\nprint(alpha)\n")
    assert facts.overwrites == (("alpha", 1, 2 - 1),)


def test_magic_lines_are_skipped(tmp_path: Path) -> None:
    facts = facts_of(tmp_path, "# %%\n%time alpha = 1\nout = !ls\n!pip list\nprint(beta)\n")
    assert "beta" in facts.names and [o[0] for o in facts.overwrites] == ["out"]


def test_check_runs_warns_and_strict_raises(tmp_path: Path) -> None:
    overwriting = facts_of(tmp_path, "# %%\nalpha = 0.1\nprint(alpha)\n", "a.py")
    reader = facts_of(tmp_path, "# %%\nprint(config['model']['depth'])\n", "b.py")
    configs = [{"alpha": 1, "aplha": 2, "model": {"depth": 1}}]
    warnings = check_runs([overwriting, reader], configs, ["aplha", "model.depth"])
    assert len(warnings) == 2
    assert "a.py: cell 1, line 1: assigns 'alpha'" in warnings[0]
    assert "'aplha' is varied but no flow reads it" in warnings[1]
    assert "did you mean 'alpha'?" in warnings[1]
    with pytest.raises(FlowError, match="strict"):
        check_runs([overwriting], configs, [], strict=True)
    with pytest.raises(SweepSpecError, match="aplha"):
        check_runs([reader], configs, ["aplha"], strict=True)
    # a dict value is not injected as a variable; a flow that hands config on reads everything
    assert check_runs([overwriting], [{"alpha": {"x": 1}}], []) == []
    whole = facts_of(tmp_path, "# %%\nprint(config)\n", "c.py")
    assert check_runs([whole], configs, ["aplha"]) == []


def test_is_clean_exit() -> None:
    assert all(is_clean_exit("SystemExit", v) for v in ("", "0", "None", "False"))
    assert not any(is_clean_exit("SystemExit", v) for v in ("1", "boom", "2"))
    assert not is_clean_exit("ValueError", "")


def test_inspect_ignores_own_and_papermill_markers(flows: Path) -> None:
    import nbformat

    nb = nbformat.read(flows / "papermill_stale.ipynb", as_version=4)
    facts = inspect_notebook(nb, "p.ipynb", "ipynb")
    assert facts.overwrites == (("fh", 4, 1),) and "alpha" in facts.names  # markers not counted


# -- the warnings in a sweep, with real kernels ---------------------------------------------------
def _sweep(tmp_path: Path, **extra: object) -> None:
    (tmp_path / "over.py").write_text(
        '# %%\nalpha = 0.1\nopen("alpha.txt", "w").write(repr(alpha))\n'
    )
    spec = {"name": "s", "flows": ["over.py"], "grid": {"alpha": [0.5], "aplha": [1, 2]}, **extra}
    (tmp_path / "s.json").write_text(json.dumps(spec))


@pytest.mark.slow
def test_both_warnings_before_the_sweep_and_in_status_json(tmp_path: Path) -> None:
    _sweep(tmp_path)
    proc = run_cli("sweep", "s.json", "-j", "2", "--no-progress", "--no-report", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert any("over.py: cell 1, line 1: assigns 'alpha'" in line for line in lines)
    assert any("'aplha' is varied but no flow reads it" in line for line in lines)
    runs = sorted((tmp_path / "runs" / "s").iterdir())
    assert len(runs) == 2
    for run in runs:
        assert (run / "alpha.txt").read_text() == "0.1"  # what the warning is about
        warnings = read_json(run / "status.json")["warnings"]
        assert len(warnings) == 1 and warnings[0]["kind"] == "check"
        assert "assigns 'alpha' before reading it" in warnings[0]["message"]
        assert warnings[0]["flow"] == "over"
    assert load_index(tmp_path / "runs")["warnings"].tolist() == [1, 1]


@pytest.mark.parametrize("how", ["--strict", "spec"])
def test_strict_is_exit_2_before_anything_runs(tmp_path: Path, how: str) -> None:
    _sweep(tmp_path, **({"strict": True} if how == "spec" else {}))
    args = ["--strict"] if how == "--strict" else []
    proc = run_cli("sweep", "s.json", "--no-progress", *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "strict" in proc.stderr and "assigns 'alpha'" in proc.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_run_warns_of_an_unread_set_key_and_strict_refuses(tmp_path: Path, flows: Path) -> None:
    proc = run_cli("run", flows / "light.py", "--set", "aplha=0.9", "--run-dir", "r", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "'aplha' is varied but no flow reads it" in proc.stderr
    proc = run_cli("run", flows / "overwrite.py", "--set", "alpha=0.9", "--strict",
                   "--run-dir", "s", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 2 and "assigns 'alpha'" in proc.stderr
    assert not (tmp_path / "s").exists()
    proc = run_cli("run", flows / "overwrite.py", "--set", "alpha=0.9", "--run-dir", "t",
                   cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0
    assert proc.stderr.count("assigns 'alpha'") == 1  # said once, not again after the run
    assert read_json(tmp_path / "t" / "status.json")["warnings"]


def test_two_flows_of_one_name_and_a_bad_strict_are_refused(tmp_path: Path) -> None:
    from ductaflow.sweep import Sweep

    (tmp_path / "a.py").write_text("# %%\nx = 1\n")
    (tmp_path / "a.md").write_text("```python\nx = 1\n```\n")
    with pytest.raises(SweepSpecError, match="share the name 'a'"):
        Sweep.from_dict({"name": "s", "flows": ["a.py", "a.md"]}, tmp_path).expand(tmp_path)
    with pytest.raises(SweepSpecError, match="'strict': must be true or false"):
        Sweep.from_dict({"name": "s", "flows": ["a.py"], "strict": "yes"}, tmp_path)
