# %% [markdown]
# # Conductor: define, run and chain sweeps from Python
#
# Run it as `python conductor.py` from the repository root, or open it as a notebook
# (it is a Jupytext percent-format file). It defines a sweep in Python, runs it, then builds a
# second sweep from the first one's index with pandas: the best three settings, rerun with
# more seeds.

# %%
import json
from pathlib import Path

import pandas as pd

import ductaflow

RUNS = Path("runs")
FLOWS = [Path("flow/01_data_prep.py"), Path("flow/02_analysis.py")]
base = json.loads(Path("sweeps/base.json").read_text())

# %% [markdown]
# ## 1 · Explore: ridge strength × polynomial degree

# %%
explore = ductaflow.Sweep(
    name="explore",
    flows=FLOWS,
    base=base,
    grid={"alpha": [0.001, 10.0], "model.depth": [1, 3, 6]},
)
first = ductaflow.run_sweep(explore, ductaflow.SweepOptions(runs_root=RUNS, n_jobs=2))
first[["run", "status", "param.alpha", "param.model.depth", "result.rmse"]]

# %% [markdown]
# ## 2 · Confirm: the best three settings, with two more seeds each
# The second sweep is built from the first one's rows: a DataFrame becomes a sweep table.

# %%
best = first[first["status"] == "ok"].nsmallest(3, "result.rmse")
settings = best[["param.alpha", "param.model.depth"]].rename(
    columns=lambda column: column.removeprefix("param.")
)
confirm = ductaflow.Sweep.from_frame(
    settings, name="confirm", flows=FLOWS, base=base, grid={"seed": [11, 12]}
)
second = ductaflow.run_sweep(confirm, ductaflow.SweepOptions(runs_root=RUNS, n_jobs=2))

# %% [markdown]
# ## 3 · The index: every run of every sweep, one row each

# %%
index = ductaflow.load_index(RUNS)
print(index.groupby("sweep")["status"].value_counts().to_string())
summary = (
    second.groupby(["param.alpha", "param.model.depth"])["result.rmse"]
    .agg(["mean", "std", "count"])
    .sort_values("mean")
)
print(summary.to_string())
pd.set_option("display.width", 120)
summary
