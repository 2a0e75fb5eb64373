# %% [markdown]
# Everything a kernel shows of itself (directory, environment, argv, path, globals; stdout and
# stderr; a display; numpy), for comparing a warm kernel's notebook with a standard one's.

# %% tags=["parameters"]
alpha = 1

# %%
import json
import os
import sys

print(os.getcwd())
print(json.dumps(dict(os.environ), sort_keys=True))
print(sys.argv[0], sys.argv[3:], sys.path, sys.orig_argv[1:3])
print(__name__, type(get_ipython()).__name__, sorted(k for k in globals() if k[0] != "_"))
print("to stderr", file=sys.stderr)

# %%
alpha * 2

# %%
from IPython.display import Markdown, display

display(Markdown("**bold**"))
import numpy

numpy.random.default_rng(alpha).random(3)

# %%
import ductaflow.flowapi

ductaflow.flowapi.__name__
