#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for tests/test_slurm.py (needs root, slurm-wlm, munge):
#
#   tests/slurm/cluster.sh start STATE_DIR   # munged (unless one answers), slurmctld, slurmd; waits for the node
#   tests/slurm/cluster.sh stop STATE_DIR    # stops the daemons it started, by their PIDs; removes its configs
#
# The configuration goes to /etc/slurm (slurm.conf, gres.conf), where every SLURM command, the job
# steps (which drop SLURM_CONF) and slurmd (gres.conf) look for it. An /etc/slurm/slurm.conf that
# this script did not write is never touched: start fails instead. Logs, state, PID files and the
# fake GPUs' device files are under STATE_DIR.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
MARK="inloop-test-cluster"
CONF_DIR=/etc/slurm
GPUS="${INLOOP_SLURM_GPUS:-2}"
CTLD_PORT="${INLOOP_SLURM_CTLD_PORT:-6817}"
SLURMD_PORT="${INLOOP_SLURM_SLURMD_PORT:-6818}"

die() { echo "cluster.sh: error: $*" >&2; exit 1; }

[[ $# -eq 2 && ( $1 == start || $1 == stop ) ]] || die "usage: $0 start|stop STATE_DIR"
ACTION=$1
STATE=$(realpath -m "$2")

ours() { [[ -f $1 ]] && grep -q "^# $MARK" "$1"; }

# Stop daemon NAME, whose PID is in STATE/NAME.pid, if that PID still runs NAME; wait up to 15 s.
stop_pid() {
    local name=$1 pidfile=$STATE/$1.pid pid i
    [[ -f $pidfile ]] || return 0
    pid=$(<"$pidfile")
    if [[ -n $pid && $(ps -p "$pid" -o comm= 2>/dev/null) == "$name" ]]; then
        kill "$pid"
        for i in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; fi
        echo "stopped $name (pid $pid)"
    fi
    rm -f "$pidfile"
}

stop() {
    # cancel what is left of this cluster's jobs (a failed or interrupted test) before the daemons go
    if [[ -f $STATE/slurmctld.pid ]] && kill -0 "$(<"$STATE/slurmctld.pid")" 2>/dev/null; then
        timeout 10 scancel --user="$(id -un)" 2>/dev/null || true
        local deadline=$((SECONDS + 15))
        while ((SECONDS < deadline)) && [[ -n $(timeout 5 squeue -h -t PD,R,CG -o %i 2>/dev/null) ]]; do sleep 0.5; done
    fi
    stop_pid slurmd
    stop_pid slurmctld
    stop_pid munged   # only when this script started it
    for f in slurm.conf gres.conf; do
        if ours "$CONF_DIR/$f"; then rm -f "$CONF_DIR/$f"; fi
    done
}

# Run a daemon in the foreground, detached from the caller (own session, no inherited stdio),
# and keep its PID in STATE/NAME.pid: launch NAME COMMAND...
launch() {
    local name=$1; shift
    setsid "$@" < /dev/null > "$STATE/$name.out" 2>&1 &
    echo $! > "$STATE/$name.pid"
}

start() {
    [[ $(id -u) -eq 0 ]] || die "must run as root (slurmd, munged and /etc/slurm)"
    local tool
    for tool in munge munged slurmctld slurmd sbatch squeue scontrol sinfo srun; do
        command -v "$tool" >/dev/null || die "$tool not found: apt-get install slurm-wlm munge"
    done
    if [[ -f $CONF_DIR/slurm.conf ]] && ! ours "$CONF_DIR/slurm.conf"; then
        die "$CONF_DIR/slurm.conf exists and was not written by this script; not touching a real cluster's configuration"
    fi
    if pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null; then
        die "a slurmctld or slurmd is already running on this machine; stop it first"
    fi

    # from here on, a failure stops whatever was started and removes the configuration
    trap 'if (($? != 0)); then echo "cluster.sh: start failed; logs in $STATE" >&2; stop; fi' EXIT
    mkdir -p "$STATE/ctld" "$STATE/slurmd" "$CONF_DIR"
    rm -f "$STATE"/*.log "$STATE"/*.out   # logs of an earlier cluster in this directory (job ids start at 1 again)
    local node cpus mem
    node=$(hostname -s)
    cpus=$(nproc)
    # RealMemory: 90 % of the machine's memory, in MiB
    mem=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
    local subst=(-e "s|@NODE@|$node|g" -e "s|@CPUS@|$cpus|g" -e "s|@MEM@|$mem|g" -e "s|@GPUS@|$GPUS|g" -e "s|@LAST_GPU@|$((GPUS - 1))|g"
                 -e "s|@STATE@|$STATE|g" -e "s|@CTLD_PORT@|$CTLD_PORT|g" -e "s|@SLURMD_PORT@|$SLURMD_PORT|g")
    sed "${subst[@]}" "$HERE/slurm.conf.in" > "$CONF_DIR/slurm.conf"
    sed "${subst[@]}" "$HERE/gres.conf.in" > "$CONF_DIR/gres.conf"
    # the fake GPUs' device files: character devices like /dev/null (slurmd wants a device per GPU)
    for ((i = 0; i < GPUS; i++)); do rm -f "$STATE/fake-gpu$i"; mknod -m 0666 "$STATE/fake-gpu$i" c 1 3; done

    # munge: reuse a running munged, else start one as the munge user
    if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        [[ -f /etc/munge/munge.key ]] || die "/etc/munge/munge.key missing (reinstall munge, or run mungekey)"
        install -d -o munge -g munge -m 0755 /run/munge
        install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
        launch munged setpriv --reuid=munge --regid=munge --init-groups munged --foreground
        local i
        for i in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
        munge -n | unmunge >/dev/null || die "munged does not answer (see $STATE/munged.out)"
    fi

    launch slurmctld slurmctld -D -c   # -c: a fresh cluster, no state of an earlier run
    launch slurmd slurmd -D
    local state="" deadline=$((SECONDS + 30))
    while ((SECONDS < deadline)); do
        kill -0 "$(<"$STATE/slurmctld.pid")" 2>/dev/null || { echo "slurmctld exited" >&2; break; }
        kill -0 "$(<"$STATE/slurmd.pid")" 2>/dev/null || { echo "slurmd exited" >&2; break; }
        state=$(timeout 5 sinfo -h -N -o %T 2>/dev/null | head -1 || true)
        [[ $state == idle ]] && break
        sleep 0.5
    done
    if [[ $state != idle ]]; then
        tail -n 20 "$STATE/slurmctld.log" "$STATE/slurmd.log" >&2 || true
        die "the node did not come up (state '$state')"
    fi
    trap - EXIT
    echo "cluster up: node $node, $cpus CPUs, ${mem} MiB, $GPUS fake GPUs; partitions cpu, gpu;" \
         "slurmctld pid $(<"$STATE/slurmctld.pid"), slurmd pid $(<"$STATE/slurmd.pid"); state in $STATE"
}

"$ACTION"
