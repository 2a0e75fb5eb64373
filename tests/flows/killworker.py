# %% [markdown]
# Kills a process above its own kernel, then sleeps (until that death ends the run):
#
# - `kill` true or `"process"`: the kernel's parent, the process running this run (with standard
#   kernels on a pool: the pool's worker);
# - `"worker"` (the first execution in a run directory only: it leaves a `killed` file) or
#   `"worker-always"`: the Dask worker, the parent of the process running this run;
# - `""`: nothing. Every execution is logged in `executions.log`.

# %% tags=["parameters"]
x = 0
kill = ""

# %%
import os
import signal
import time

with open("executions.log", "a") as fh:
    fh.write(f"{os.getpid()}\n")
if kill is True or kill == "process":
    os.kill(os.getppid(), signal.SIGKILL)
    time.sleep(30)
if (kill == "worker" and not os.path.exists("killed")) or kill == "worker-always":
    open("killed", "w").close()
    with open(f"/proc/{os.getppid()}/stat") as fh:
        os.kill(int(fh.read().rsplit(")", 1)[1].split()[1]), signal.SIGKILL)
    time.sleep(30)
