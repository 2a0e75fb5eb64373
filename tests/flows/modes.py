# %% [markdown]
# A run that is ok, one that raises or one whose kernel exits (`mode`); each writes the Slurm
# job that ran it to `job.txt`.

# %% tags=["parameters"]
mode = "ok"
import ductaflow

ductaflow.parameters(globals())

# %%
import os

with open("job.txt", "w") as fh:
    fh.write(os.environ.get("SLURM_JOB_ID", ""))
if mode == "raise":
    raise ValueError("asked to fail")
if mode == "exit":
    os._exit(3)
ductaflow.record("mode", mode)
