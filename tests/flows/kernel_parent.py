# %% [markdown]
# Records which process started its kernel, and the Slurm job it runs in.

# %% tags=["parameters"]
x = 0

# %%
import os

import ductaflow

ductaflow.record("kernel_parent", os.getppid())
ductaflow.record("job", os.environ.get("SLURM_JOB_ID", ""))
