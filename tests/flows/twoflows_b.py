# %% [markdown]
# The second flow of a two-flow run: leaves b.txt behind when it runs.

# %%
open("b.txt", "w").write("b ran")
