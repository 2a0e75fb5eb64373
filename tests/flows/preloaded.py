# %% [markdown]
# Prints which of the modules `df_threads` and `csv` the kernel had imported before the flow.

# %%
import sys

print([m in sys.modules for m in ("df_threads", "csv")])
