#!/usr/bin/env bash
# Start a real SLURM cluster on this machine for tests and CI: NODES fake nodes (n1..nN), one slurmd each, all on
# loopback (Debian slurm-wlm + munge, no systemd/cgroups/database). Root only. Recipe and pitfalls:
# ../shared/SLURM_LOCAL.md. Usage: tests/slurm/start_cluster.sh [NODES=2]; stop with tests/slurm/stop_cluster.sh.
set -euo pipefail
NODES=${1:-2}
HERE=$(cd "$(dirname "$0")" && pwd)
RUN=/run/localslurm

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null \
    || ! command -v munged >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    slurmctld slurmd slurm-client munge >/dev/null
fi
"$HERE/stop_cluster.sh" >/dev/null 2>&1 || true

HOST=$(hostname)
CPUS=$(( $(nproc) / NODES )); (( CPUS >= 1 )) || CPUS=1
MEM_MB=$(( ($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024) / NODES ))
mkdir -p "$RUN" /etc/slurm /var/spool/slurmctld /var/log/slurm /etc/munge /run/munge /var/lib/munge /var/log/munge

# munge: one key for every daemon (one machine)
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
chmod 400 /etc/munge/munge.key
runuser -u munge -- munged --pid-file=/run/munge/munged.pid

NODE_LINES=""
NAMES=""
for i in $(seq 1 "$NODES"); do
  NODE_LINES+="NodeName=n$i NodeHostname=$HOST NodeAddr=127.0.0.1 Port=$((17000 + i)) CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN"$'\n'
  NAMES+="n$i "
done
cat > /etc/slurm/slurm.conf <<CONF
# written by tests/slurm/start_cluster.sh (see ../shared/SLURM_LOCAL.md for why each line is there)
ClusterName=localslurm
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=6817
AuthType=auth/munge
CredType=cred/munge
AuthInfo=cred_expire=10
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=1
JobRequeue=1
KillWait=30
MinJobAge=300
ReturnToService=2
MpiDefault=none
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd-%n
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd-%n.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd-%n.log
${NODE_LINES}PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF

# fake node names must resolve: Lightning uses the first one of SLURM_NODELIST as MASTER_ADDR
sed -i '/# localslurm-fake-nodes$/d' /etc/hosts
echo "127.0.0.1 $NAMES # localslurm-fake-nodes" >> /etc/hosts

slurmctld -c  # -c: forget jobs of an earlier cluster run
for i in $(seq 1 "$NODES"); do
  mkdir -p "/var/spool/slurmd-n$i"
  slurmd -N "n$i"
done

for _ in $(seq 1 60); do
  idle=$(sinfo -h -N -o '%N %T' 2>/dev/null | awk '$2 == "idle"' | wc -l)
  if (( idle == NODES )); then
    sinfo -N
    exit 0
  fi
  sleep 1
done
echo "SLURM nodes did not become idle; see /var/log/slurm/" >&2
sinfo -N >&2 || true
exit 1
