# %% [markdown]
# Starts a child process, writes its pid to `child`, and exits the kernel with code 1.

# %%
import os
import pathlib
import subprocess

child = subprocess.Popen(["sleep", "60"])
pathlib.Path("child").write_text(str(child.pid))
os._exit(1)
