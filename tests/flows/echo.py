# %% [markdown]
# Writes what it received to out.json, for injection round-trip tests.

# %% tags=["parameters"]
import ductaflow

ductaflow.parameters(globals())

# %%
import json
import keyword
import os

names = [
    k
    for k, v in config.items()
    if k.isidentifier() and not keyword.iskeyword(k) and not isinstance(v, dict)
]
with open("out.json", "w", encoding="utf-8") as fh:
    json.dump(
        {
            "config": config,
            "vars": {k: globals()[k] for k in names},
            "cwd": os.getcwd(),
            "env_run_dir": os.environ.get("DUCTAFLOW_RUN_DIR"),
        },
        fh,
    )
print("echoed", len(config), "keys")
