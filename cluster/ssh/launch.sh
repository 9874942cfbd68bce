#!/usr/bin/env bash
# Start a job over ssh: the coordinator on the first host of HOSTFILE, a worker on every host.
#   cluster/ssh/launch.sh HOSTFILE [training flags...]
# Change: AMOEBA_BIN (where the binaries are on the hosts), COORDINATOR_PORT, and the flags.
set -euo pipefail
hostfile=${1:?usage: launch.sh HOSTFILE [training flags...]}
shift
bin=${AMOEBA_BIN:-/opt/amoeba/bin}
port=${COORDINATOR_PORT:-29400}
mapfile -t hosts < <(grep -v '^\s*#' "$hostfile" | grep -v '^\s*$')
[ "${#hosts[@]}" -ge 1 ] || { echo "no hosts in $hostfile"; exit 2; }
token=${AMOEBA_JOB_TOKEN:-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')}
coordinator=${hosts[0]}
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM
ssh "$coordinator" "AMOEBA_JOB_TOKEN=$token $bin/amoeba-coordinator --workers ${#hosts[@]} --port $port $*" \
  2>&1 | sed 's/^/[coordinator] /' &
pids+=($!)
sleep 2
for i in "${!hosts[@]}"; do
  host=${hosts[$i]}
  ssh "$host" "AMOEBA_JOB_TOKEN=$token $bin/amoeba-worker --coordinator $coordinator:$port --listen $host" \
    2>&1 | sed "s/^/[$host] /" &
  pids+=($!)
done
wait "${pids[0]}"
