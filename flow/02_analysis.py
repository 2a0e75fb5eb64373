# %% [markdown]
# # 02 · Analysis
# Fits a ridge-regularised polynomial of degree `model.depth` to `data.csv` (made by
# `01_data_prep`) and records the held-out error. Run alone, it makes the same kind of data.

# %% tags=["parameters"]
alpha = 0.1
import ductaflow

ductaflow.parameters(globals())

# %%
import numpy as np
import pandas as pd

depth = config.get("model", {}).get("depth", 2)
try:
    data = pd.read_csv("data.csv")
except FileNotFoundError:  # run without 01_data_prep
    rng = np.random.default_rng(config.get("seed", 0))
    x = rng.uniform(-3, 3, config.get("n_samples", 200))
    data = pd.DataFrame({"x": x, "y": np.sin(x) + rng.normal(0, config.get("noise", 0.3), len(x))})
train = data.sample(frac=0.7, random_state=0)
test = data.drop(train.index)


def features(x: pd.Series) -> np.ndarray:
    return np.vander(x.to_numpy(), depth + 1, increasing=True)


X = features(train["x"])
coef = np.linalg.solve(X.T @ X + alpha * np.eye(depth + 1), X.T @ train["y"].to_numpy())
pred = features(test["x"]) @ coef
rmse = float(np.sqrt(np.mean((pred - test["y"].to_numpy()) ** 2)))
print(f"depth={depth} alpha={alpha}: rmse={rmse:.4f}")

# %%
ductaflow.record({"rmse": rmse, "n_train": len(train)})
pd.DataFrame({"x": test["x"], "y": test["y"], "prediction": pred}).to_csv(
    "predictions.csv", index=False
)
