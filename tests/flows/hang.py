# %% tags=["parameters"]
sleep = 60

# %%
print("started", flush=True)

# %%
import time

time.sleep(sleep)

# %%
print("never reached")
