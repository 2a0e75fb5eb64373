# %% [markdown]
# An optimize test flow that damages its own study: a run with x above `damage_above` appends a
# line that is not JSON to the study's journal file, then records its loss as quadratic.py does.

# %% tags=["parameters"]
x = 0.0
y = 0.0
journal = ""
damage_above = 1.0
import ductaflow

ductaflow.parameters(globals())

# %%
if journal and x > damage_above:
    with open(journal, "a", encoding="utf-8") as fh:
        fh.write("this line is not JSON\n")
ductaflow.record("loss", (x - 2) ** 2 + (y + 1) ** 2)
