# %% [markdown]
# # 01 · Data preparation
# Makes this run's synthetic regression data set and saves it as `data.csv` in the run directory.
# Under ductaflow the working directory is the run directory, so relative paths land there.

# %% tags=["parameters"]
seed = 0
n_samples = 200
noise = 0.3
import ductaflow

ductaflow.parameters(globals())  # lets `python flow/01_data_prep.py --config c.json` work

# %%
import numpy as np
import pandas as pd

rng = np.random.default_rng(seed)
x = rng.uniform(-3, 3, n_samples)
y = np.sin(x) + rng.normal(0, noise, n_samples)
data = pd.DataFrame({"x": x, "y": y})
data.to_csv("data.csv", index=False)
print(f"wrote data.csv: {len(data)} rows, seed={seed}, noise={noise}")

# %%
data.describe()
