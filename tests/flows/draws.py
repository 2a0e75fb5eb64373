# %% [markdown]
# Prints whether numpy came preloaded, then one draw of Python's and one of numpy's generator.

# %%
import sys

preloaded = "numpy" in sys.modules
import random

import numpy

print(preloaded, random.random(), numpy.random.random())
