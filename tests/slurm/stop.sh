#!/usr/bin/env bash
# Stop the single-node Slurm that tests/slurm/start.sh started (its jobs, then its daemons).
exec "$(dirname "$0")/start.sh" stop
