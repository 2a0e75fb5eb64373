# %% [markdown]
# Records whether `colorsys` (no kernel imports it) was already imported when the flow began:
# true only in a kernel forked from a zygote that preloaded it.

# %%
import os
import sys

import ductaflow

ductaflow.record("x", config.get("x"))
ductaflow.record("preloaded", "colorsys" in sys.modules)
ductaflow.record("kernel_env", os.environ.get("FROM_KERNELSPEC", "no"))
