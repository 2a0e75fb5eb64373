# %%
print("before the error")

# %%
x = 1 / 0

# %%
print("never reached")
