# %% [markdown]
# The suite's event flow: records who started its kernel, then waits on a hold directory.
#
# - `hold` (a directory): write `started-<x>-<pid>` there, then wait until `release-<x>` or
#   `release-all` exists (a test's event, never a sleep); "" runs straight through.
# - `flaky`: fail on the run's first attempt (its `executions.log` has one line), pass after.
# - `fail_until` (a path): fail while that file does not exist (`--only failed` then reruns it).
# - `extra` (a name): also record a result of that name (a new index column).

# %% tags=["parameters"]
x = 0
hold = ""
flaky = False
fail_until = ""
extra = ""
import ductaflow

ductaflow.parameters(globals())

# %%
import os
import pathlib
import time

try:
    parent = pathlib.Path(f"/proc/{os.getppid()}/cmdline").read_bytes().replace(b"\0", b" ")
except OSError:
    parent = b""
ductaflow.record("kernel_ppid", os.getppid())
ductaflow.record("forked", b"ductaflow.zygote" in parent)
with open("executions.log", "a") as fh:
    fh.write(f"{os.getpid()}\n")

# %%
if hold:
    d = pathlib.Path(hold)
    (d / f"started-{x}-{os.getpid()}").write_text("")
    give_up = time.monotonic() + 600  # a deadline only: tests release every run they hold
    while not ((d / f"release-{x}").exists() or (d / "release-all").exists()):
        if time.monotonic() > give_up:
            raise TimeoutError(f"run x={x} was never released")
        time.sleep(0.02)

# %%
if flaky and len(pathlib.Path("executions.log").read_text().split()) <= 1:
    raise RuntimeError("flaky: the first attempt fails")
if fail_until and not os.path.exists(fail_until):
    raise RuntimeError(f"fails until {fail_until} exists")
ductaflow.record("double", x * 2)
if extra:
    ductaflow.record(extra, 1)
