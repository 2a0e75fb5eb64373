# %% [markdown]
# A sweep test flow: logs each execution, can sleep and fail on request.

# %% tags=["parameters"]
x = 0
sleep = 0
fail = False
import ductaflow

ductaflow.parameters(globals())

# %%
import os
import time

with open("executions.log", "a") as fh:
    fh.write(f"{os.getpid()}\n")
time.sleep(sleep)

# %%
if fail:
    raise ValueError(f"asked to fail (x={x})")
ductaflow.record("double", x * 2)
