#!/usr/bin/env bash
# Stop the cluster started by tests/slurm/start_cluster.sh: slurmd's, slurmctld, munged, by their PID files.
set -uo pipefail
RUN=/run/localslurm

gone() {  # a stopped daemon may linger as a zombie where PID 1 does not reap orphans (SLURM_LOCAL.md item 16)
  [ ! -e "/proc/$1" ] || [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = "Z" ]
}

stop_pidfile() {
  local file=$1 pid
  [ -s "$file" ] || return 0
  pid=$(cat "$file")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do gone "$pid" && break; sleep 0.1; done
  gone "$pid" || kill -9 "$pid" 2>/dev/null || true
  rm -f "$file"
}

for file in "$RUN"/slurmd-*.pid; do [ -e "$file" ] && stop_pidfile "$file"; done
stop_pidfile "$RUN/slurmctld.pid"
stop_pidfile /run/munge/munged.pid
sed -i '/# localslurm-fake-nodes$/d' /etc/hosts 2>/dev/null || true
exit 0
