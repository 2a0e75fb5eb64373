"""What capturing a run's output and warnings costs, per run, and the environment record per sweep.

    python benchmarks/bench_capture.py [--rounds 5] [--runs 8] [--before DIR]

Per run: ``execute_run`` of a trivial flow and of a chatty one (2,000 prints and a warning) on
warm kernels, ``--runs`` runs one after the other in a fresh process, once with this checkout and
once with ``--before`` (a checkout of the code without capture, e.g.
``git archive main | tar -x -C /tmp/before``), rounds interleaved so that machine noise hits both
alike; medians of the per-run times, and their difference. Per sweep: ``capture_environment``
(every installed distribution, the flows' git commit), median of ``--rounds`` calls.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent

TRIVIAL = '# %% tags=["parameters"]\nx = 1\n\n# %%\ny = x + 1\n\n# %%\nprint(y)\n'
CHATTY = (
    '# %% tags=["parameters"]\nx = 1\n\n# %%\nimport warnings\n'
    "for i in range(2000):\n    print('line', i)\nwarnings.warn('w')\n"
)

WORKER = """
import json, sys, time
from pathlib import Path
from ductaflow.engine import execute_run
from ductaflow.spec import FlowRef, RunOptions, RunSpec
from ductaflow.warm import make_starter
flow, base, n = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
starter = make_starter(None, True)
ref = FlowRef.from_path(flow)
options = RunOptions()
execute_run(RunSpec(base / "warmup", {"x": 0}, (ref,)), options, starter)
times = []
for i in range(n):
    t0 = time.perf_counter()
    r = execute_run(RunSpec(base / f"r{i}", {"x": i}, (ref,)), options, starter)
    times.append(time.perf_counter() - t0)
    assert r.ok, r.error
print(json.dumps(times))
"""


def per_run(code: Path, flow: Path, base: Path, runs: int) -> list[float]:
    env = {**os.environ, "PYTHONPATH": str(code)}
    out = subprocess.run(
        [sys.executable, "-c", WORKER, str(flow), str(base), str(runs)],
        env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--before", type=Path, help="a checkout without capture")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        if args.before is not None:
            for name, text in (("trivial", TRIVIAL), ("chatty", CHATTY)):
                flow = base / f"{name}.py"
                flow.write_text(text, encoding="utf-8")
                samples: dict[str, list[float]] = {"before": [], "after": []}
                for i in range(args.rounds):
                    order = ("before", "after") if i % 2 else ("after", "before")
                    for variant in order:
                        code = args.before if variant == "before" else HERE
                        where = base / f"{name}-{variant}-{i}"
                        samples[variant] += per_run(code, flow, where, args.runs)
                before = statistics.median(samples["before"])
                after = statistics.median(samples["after"])
                print(
                    f"{name:8s} flow, warm kernels, median per run of "
                    f"{len(samples['after'])}: before {before * 1000:.1f} ms, "
                    f"after {after * 1000:.1f} ms, difference {(after - before) * 1000:+.1f} ms "
                    f"({after / before:.3f}x)"
                )
        sys.path.insert(0, str(HERE))
        from ductaflow.environment import capture_environment

        flows = [HERE / "flow" / "01_data_prep.py"]
        times = []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            env = capture_environment(flows)
            times.append(time.perf_counter() - t0)
        n = len(env.record["distributions"])
        print(
            f"capture_environment, once per sweep ({n} distributions, git commit): "
            f"median {statistics.median(times) * 1000:.0f} ms, first {times[0] * 1000:.0f} ms"
        )


if __name__ == "__main__":
    main()
