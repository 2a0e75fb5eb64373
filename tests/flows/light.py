# A Jupytext light-format flow: writes the alpha it ran with to alpha.txt.

# + tags=["parameters"]
alpha = 0.1
# -

with open("alpha.txt", "w") as fh:
    fh.write(repr(alpha))
