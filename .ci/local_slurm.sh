#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for testing `hydra/launcher=slurm` (submitit) end to end
# without a real cluster: tests/end_to_end/test_slurm_cluster.py runs a 2-job sweep through it.
# Needs root and apt (Debian/Ubuntu): installs slurm-wlm + munge, writes /etc/slurm/slurm.conf for this
# host only (all its CPUs, no GPUs, no accounting, no cgroups), then starts munged, slurmctld and slurmd.
# Idempotent: rerunning it leaves a running cluster alone (and brings a drained/down node back).
#   sudo bash .ci/local_slurm.sh
#   sinfo && srun hostname
#   python -m laser.run -m hydra/launcher=slurm hydra.launcher.gpus_per_node=0 hydra.launcher.tasks_per_node=1 \
#     hydra.launcher.partition=debug hydra.launcher.cpus_per_task=1 hydra.launcher.mem_gb=2 \
#     hydra.launcher.timeout_min=10 trainer.accelerator=cpu seed=0,1
# Stop it: kill "$(cat /run/slurmd.pid)" "$(cat /run/slurmctld.pid)" "$(cat /run/munge/munged.pid)"
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "local_slurm.sh: needs root (installs packages, writes /etc/slurm, starts daemons)" >&2
  exit 1
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y slurm-wlm munge
fi

HOST=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))  # leave 10% for the OS
CONF=/etc/slurm/slurm.conf
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge

NEW_CONF=$(cat <<EOF
# Written by .ci/local_slurm.sh: a one-node test cluster on ${HOST}.
ClusterName=laser-local
SlurmctldHost=${HOST}
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=10
MinJobAge=300
NodeName=${HOST} NodeAddr=127.0.0.1 CPUs=${CPUS} RealMemory=${MEM_MB} State=UNKNOWN
PartitionName=debug Nodes=${HOST} Default=YES MaxTime=INFINITE State=UP
EOF
)

CHANGED=0
if [ ! -f "$CONF" ] || [ "$(cat "$CONF")" != "$NEW_CONF" ]; then
  printf '%s\n' "$NEW_CONF" > "$CONF"
  CHANGED=1
fi

running() {  # a daemon whose pid file names a live process
  [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

# munge: the package creates /etc/munge/munge.key; make one if it is missing.
if [ ! -s /etc/munge/munge.key ]; then
  if command -v mungekey >/dev/null; then mungekey --create --keyfile=/etc/munge/munge.key
  else dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; fi
fi
chown munge:munge /etc/munge/munge.key /run/munge
chmod 400 /etc/munge/munge.key
running /run/munge/munged.pid || runuser -u munge -- /usr/sbin/munged
munge -n | unmunge >/dev/null  # fails loudly if munge does not work

if [ "$CHANGED" = 1 ]; then  # a new config: restart whatever runs with the old one
  for pidfile in /run/slurmd.pid /run/slurmctld.pid; do
    if running "$pidfile"; then kill "$(cat "$pidfile")"; sleep 2; fi
  done
fi
running /run/slurmctld.pid || /usr/sbin/slurmctld
running /run/slurmd.pid || /usr/sbin/slurmd

for _ in $(seq 30); do  # wait for the node to register
  state=$(sinfo -h -n "$HOST" -o %T 2>/dev/null || true)
  case "$state" in
    idle*|mix*|alloc*) break ;;
    down*|drain*) scontrol update NodeName="$HOST" State=RESUME 2>/dev/null || true ;;
  esac
  sleep 1
done
sinfo
srun -N1 -n1 -t 1 hostname
