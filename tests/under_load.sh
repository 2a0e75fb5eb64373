#!/usr/bin/env bash
# The suite's robustness check (issue 16): run the whole suite N times in a row while another
# process keeps one core busy, as a loaded CI machine would; print one line per round and a
# summary, exit 1 if any round failed. Run it from a checkout with .venv set up (.ci/run does
# that), with the Slurm of tests/slurm/start.sh up for the slurm tests.
#
#   tests/under_load.sh 5            # 5 rounds; logs in $LOGDIR (default /tmp/ductaflow-under-load)
set -uo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
logs=${LOGDIR:-/tmp/ductaflow-under-load}
mkdir -p "$logs"
python3 -c "while True: pass" &
burner=$!
trap 'kill $burner 2>/dev/null' EXIT
failed=0
for i in $(seq "$rounds"); do
    start=$(date +%s)
    .venv/bin/python -m pytest -q -p no:cacheprovider >"$logs/round-$i.txt" 2>&1
    rc=$?
    end=$(date +%s)
    echo "round $i: exit $rc in $((end - start)) s, load $(cut -d' ' -f1-3 /proc/loadavg): $(grep -E '(passed|failed)' "$logs/round-$i.txt" | tail -1)"
    [ $rc -eq 0 ] || failed=$((failed + 1))
done
echo "under load: $((rounds - failed)) of $rounds rounds passed"
[ $failed -eq 0 ]
