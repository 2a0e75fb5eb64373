# %% [markdown]
# A notebook as the conductor: sweeps `flow` over three runs at -j 1 and at -j 2 into `root`,
# and prints each sweep's statuses and results.

# %% tags=["parameters"]
flow = ""
root = ""

# %%
from ductaflow import SweepOptions, run_sweep
from ductaflow.sweep import Sweep

for jobs in (1, 2):
    sweep = Sweep(name=f"j{jobs}", flows=(flow,), grid={"x": [1, 2, 3]})
    frame = run_sweep(sweep, SweepOptions(root, jobs, progress=False))
    print(jobs, sorted(frame["status"]), sorted(frame["result.double"]))
