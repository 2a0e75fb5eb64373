# %% [markdown]
# An optimize test flow: records loss = (x - 2)**2 + (y + 1)**2; can fail, record NaN or
# nothing, or wait for a hold file, on request.

# %% tags=["parameters"]
x = 0.0
y = 0.0
fail_above = None
nan_above = None
skip_above = None
hold = None
import ductaflow

ductaflow.parameters(globals())

# %%
import math
import os
import time

while hold and os.path.exists(hold):
    time.sleep(0.05)
if fail_above is not None and x > fail_above:
    raise ValueError(f"asked to fail (x={x})")
loss = (x - 2) ** 2 + (y + 1) ** 2
if nan_above is not None and x > nan_above:
    loss = math.nan
if skip_above is None or x <= skip_above:
    ductaflow.record("loss", loss)
