# %% [markdown]
# # 03 · Outputs
# Writes a short markdown report of the run from `predictions.csv` (made by `02_analysis`).

# %% tags=["parameters"]
label = "run"
import ductaflow

ductaflow.parameters(globals())

# %%
import json

import pandas as pd

predictions = pd.read_csv("predictions.csv")
worst = (predictions["prediction"] - predictions["y"]).abs().max()
with open("summary.md", "w") as fh:
    fh.write(f"# {label}\n\nconfig: `{json.dumps(config)}`\n\nworst abs error: {worst:.3f}\n")
print(open("summary.md").read())
