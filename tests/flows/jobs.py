# %% [markdown]
# Appends the Slurm job that runs it to `jobs.log` (one line per execution), then sleeps
# `seconds`, then waits while the file `hold` exists.

# %% tags=["parameters"]
x = 0
seconds = 0.0
hold = ""

# %%
import os
import time

with open("jobs.log", "a") as fh:
    fh.write(os.environ.get("SLURM_JOB_ID", "") + "\n")
time.sleep(seconds)
while hold and os.path.exists(hold):
    time.sleep(0.1)
