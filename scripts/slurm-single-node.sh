#!/usr/bin/env bash
# Start a single-node Slurm on this machine (for the Slurm tests and for trying
# `syft-job run --launcher slurm`): munged, slurmctld and slurmd on 127.0.0.1, one node
# with this machine's CPUs, one partition. Needs root and Debian's packages
# slurmctld slurmd slurm-client munge (with --install, it installs them with apt-get).
# Starts nothing when a node is already idle. Exit 0 once the node is idle and a job
# runs on it end to end.
set -euo pipefail

if [ "${1:-}" = "--install" ] && ! command -v slurmctld >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurmctld slurmd slurm-client munge >/dev/null
fi
for tool in munged slurmctld slurmd sinfo srun; do
    command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || {
        echo "slurm-single-node: $tool is missing (apt-get install slurmctld slurmd slurm-client munge)" >&2; exit 2; }
done
[ "$(id -u)" -eq 0 ] || { echo "slurm-single-node: needs root to start the daemons" >&2; exit 2; }

# Idle is not enough: a job must run (the first one after a restart, or after the
# machine was paused, can take seconds).
runs_a_job() {
    if timeout 120 srun --quiet --ntasks=1 --time=1 --job-name=slurm-single-node-check true; then
        echo "slurm-single-node: node $(hostname -s) is idle and runs jobs"
        exit 0
    fi
    echo "slurm-single-node: node $(hostname -s) is idle, but 'srun true' failed" >&2
    exit 1
}

if sinfo -h -o %t 2>/dev/null | grep -qx idle; then
    runs_a_job
fi

host=$(hostname -s)
memory=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 8 / 10 ))
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
cat > /etc/slurm/slurm.conf <<EOF
ClusterName=local
SlurmctldHost=$host(127.0.0.1)
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmdSpoolDir=/var/spool/slurmd
StateSaveLocation=/var/spool/slurmctld
SlurmUser=root
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 400 /etc/munge/munge.key
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld
pgrep -x slurmd >/dev/null || /usr/sbin/slurmd

for _ in $(seq 1 60); do
    if sinfo -h -o %t 2>/dev/null | grep -qx idle; then
        runs_a_job
    fi
    scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true
    sleep 1
done
echo "slurm-single-node: the node did not become idle:" >&2
sinfo >&2 || true
exit 1
