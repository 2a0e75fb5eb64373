# %% [markdown]
# The first flow of a two-flow run: fails when `fail_first` is set.

# %% tags=["parameters"]
fail_first = False
import ductaflow

ductaflow.parameters(globals())

# %%
open("a.txt", "w").write("a ran")
if fail_first:
    raise ValueError("the first flow fails")
