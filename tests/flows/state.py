# %% [markdown]
# Prints what a kernel inherited (its directory, a global and a module attribute a run before it
# would have left, its pid and parent's), then leaves both behind for the next run to find.

# %%
import json
import os

print(
    json.dumps(
        {
            "cwd": os.getcwd(),
            "var": "LEAK" in globals(),
            "attr": hasattr(json, "df_leak"),
            "pid": os.getpid(),
            "ppid": os.getppid(),
        }
    )
)

# %%
LEAK = 1
json.df_leak = 1
