# A flow with no parameters cell that sets alpha itself: the injected value is overwritten.
alpha = 0.1
with open("alpha.txt", "w") as fh:
    fh.write(repr(alpha))
