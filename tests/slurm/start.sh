#!/usr/bin/env bash
# A single-node Slurm on this machine (Debian/Ubuntu), for the `slurm` tests and for trying a
# ductaflow setup locally:
#
#   tests/slurm/start.sh         install when missing, configure, start; prints the SLURM_CONF line
#   tests/slurm/start.sh stop    stop exactly the daemons it started (also: tests/slurm/stop.sh)
#   tests/slurm/start.sh status  exit 0 when they are up and the node takes jobs
#
# Everything it writes is in one directory, $DUCTAFLOW_SLURM_DIR (default /tmp/ductaflow-slurm):
# slurm.conf, the munge key and socket, the daemons' pid files, logs, state and spool. Nothing in
# /etc is changed, so point the Slurm commands at it: export SLURM_CONF=$DIR/slurm.conf.
# The node is this machine at 127.0.0.1 with its CPUs and ~80 % of its memory; no accounting, no
# cgroups (proctrack/linuxproc, task/none), one default partition `debug`. Idempotent: a second
# start with the daemons up only checks the node. Exit 3: Slurm cannot be installed here.
set -euo pipefail

DIR=${DUCTAFLOW_SLURM_DIR:-/tmp/ductaflow-slurm}
CONF=$DIR/slurm.conf
export SLURM_CONF=$CONF
DAEMONS=(slurmd slurmctld munged)

say() { echo "slurm: $*" >&2; }

# the pid in $DIR/NAME.pid if that process is alive and is NAME (a stale file names no one)
live_pid() {
    local pid
    pid=$(cat "$DIR/$1.pid" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ] && echo "$pid"
}

node_state() { sinfo -h -n "$NODE" -o %T 2>/dev/null || true; }

stop() {
    if live_pid slurmctld >/dev/null; then  # cancel the jobs first: no worker outlives its node
        local jobs
        jobs=$(squeue -h -o %A 2>/dev/null || true)
        if [ -n "$jobs" ]; then
            # shellcheck disable=SC2086
            scancel $jobs 2>/dev/null || true
            for _ in $(seq 100); do [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break; sleep 0.1; done
        fi
    fi
    local name pid pids=()
    for name in "${DAEMONS[@]}"; do  # all at once: each takes ~2 s to shut down
        pid=$(live_pid "$name") || continue
        kill -TERM "$pid" 2>/dev/null && pids+=("$pid") && say "stopping $name ($pid)"
    done
    for pid in "${pids[@]}"; do
        for _ in $(seq 200); do [ -d "/proc/$pid" ] || break; sleep 0.05; done
        [ -d "/proc/$pid" ] && kill -KILL "$pid" 2>/dev/null
    done
    for name in "${DAEMONS[@]}"; do rm -f "$DIR/$name.pid"; done
}

install() {
    local missing=()
    command -v slurmctld >/dev/null || missing+=(slurmctld)
    command -v slurmd >/dev/null || missing+=(slurmd)
    command -v sbatch >/dev/null || missing+=(slurm-client)
    command -v munged >/dev/null || missing+=(munge)
    [ ${#missing[@]} -eq 0 ] && return 0
    if ! command -v apt-get >/dev/null; then
        say "cannot install ${missing[*]}: no apt-get here"
        exit 3
    fi
    say "installing ${missing[*]}"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        slurmctld slurmd slurm-client munge >"$DIR/log/apt.log" 2>&1; then
        apt-get update -qq >>"$DIR/log/apt.log" 2>&1 || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            slurmctld slurmd slurm-client munge >>"$DIR/log/apt.log" 2>&1 \
            || { say "apt-get install failed: $DIR/log/apt.log"; exit 3; }
    fi
}

write_conf() {
    # the node as slurmd sees it: CPUs, boards, sockets, cores, threads
    local hw mem_kb
    hw=$(slurmd -C | head -1 | tr ' ' '\n' | grep -E '^(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore)=' | tr '\n' ' ')
    mem_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
    cat >"$CONF.new" <<CONF
# Written by ductaflow's tests/slurm/start.sh: a single-node Slurm for tests. Do not edit.
ClusterName=ductaflow
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
SlurmdTimeout=60
KillWait=10
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$NODE ${hw}RealMemory=$((mem_kb * 8 / 10 / 1024)) State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
    mv "$CONF.new" "$CONF"
}

# the three daemons alive and the node taking jobs
status() {
    live_pid slurmctld >/dev/null && live_pid slurmd >/dev/null && live_pid munged >/dev/null \
        || return 1
    case $(node_state) in
        idle* | mixed* | allocated* | completing*) return 0 ;;
    esac
    return 1
}

start() {
    mkdir -p "$DIR"/{log,state,spool,munge}
    chmod 755 "$DIR/munge"  # the socket is for every user; the key is for root alone
    install
    if status; then
        say "already up: export SLURM_CONF=$CONF"; echo "export SLURM_CONF=$CONF"; return 0
    fi
    stop 2>/dev/null  # whatever half of it is left from before
    write_conf
    [ -s "$DIR/munge/munge.key" ] || mungekey --create --keyfile="$DIR/munge/munge.key" 2>/dev/null \
        || dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$DIR/munge/munge.key"
    munged --force --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
        --pid-file="$DIR/munged.pid" --log-file="$DIR/log/munged.log" \
        --seed-file="$DIR/munge/munged.seed"
    # -c: a fresh controller, without the jobs of an earlier start
    slurmctld -c -f "$CONF"
    slurmd -c -f "$CONF" -N "$NODE"
    for _ in $(seq 300); do
        case $(node_state) in
            idle*) say "up: node $NODE idle; export SLURM_CONF=$CONF"; echo "export SLURM_CONF=$CONF"; return 0 ;;
        esac
        sleep 0.1
    done
    say "the node did not come up idle ($(node_state)); logs in $DIR/log"
    tail -n 5 "$DIR"/log/slurm*.log >&2 || true
    exit 1
}

if [ "$(id -u)" -ne 0 ]; then  # slurmd must be root to start jobs as their user
    command -v sudo >/dev/null || { say "needs root (or sudo)"; exit 3; }
    exec sudo --preserve-env=DUCTAFLOW_SLURM_DIR "$0" "$@"
fi
NODE=$(hostname -s)
case ${1:-start} in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 [start|stop|status]" >&2; exit 2 ;;
esac
