# %%
with open("alpha.txt", "w") as fh:
    fh.write(repr(alpha))
