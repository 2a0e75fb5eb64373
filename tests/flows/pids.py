# %% [markdown]
# Writes `pids`: the kernel's pid and its parent's (a zygote when forked), then sleeps `sleep` s.

# %% tags=["parameters"]
sleep = 0

# %%
import os
import pathlib

pathlib.Path("pids").write_text(f"{os.getpid()} {os.getppid()}")

# %%
import time

time.sleep(sleep)
