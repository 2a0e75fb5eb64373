# %% [markdown]
# Fails on its first attempt in a run directory, succeeds on the next.

# %%
import os

first = not os.path.exists("attempted")
open("attempted", "a").close()
if first:
    raise RuntimeError("first attempt fails")
