#!/usr/bin/env bash
# Start a job over ssh: the coordinator on the first host of HOSTFILE, a worker on every host.
#   cluster/ssh/launch.sh HOSTFILE [training flags...]
# Change: AMOEBA_TARBALL (the release, Scripts/package.sh: copied to and unpacked on every host that
# lacks that version) or AMOEBA_BIN (where the binaries already are), COORDINATOR_PORT, the flags.
# The job token lives in AMOEBA_JOB_TOKEN_FILE (created here, mode 0600, if missing) and is copied
# to ~/.amoeba-job-token on every host over ssh's stdin: it never appears on a command line.
set -euo pipefail
hostfile=${1:?usage: launch.sh HOSTFILE [training flags...]}
shift
bin=${AMOEBA_BIN:-/opt/amoeba/bin}
port=${COORDINATOR_PORT:-29400}
mapfile -t hosts < <(grep -v '^\s*#' "$hostfile" | grep -v '^\s*$')
[ "${#hosts[@]}" -ge 1 ] || { echo "no hosts in $hostfile"; exit 2; }
token_file=${AMOEBA_JOB_TOKEN_FILE:-$HOME/.amoeba-job-token}
if [ ! -s "$token_file" ]; then
  (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$token_file"; echo >> "$token_file")
fi
coordinator=${hosts[0]}
if [ -n "${AMOEBA_TARBALL:-}" ]; then
  release=$(basename "$AMOEBA_TARBALL" .tar.gz)
  bin=\~/amoeba/$release/bin
  for host in $(printf '%s\n' "${hosts[@]}" | sort -u); do
    ssh "$host" "test -x ~/amoeba/$release/bin/amoeba-worker" 2>/dev/null ||
      ssh "$host" "mkdir -p ~/amoeba && tar -C ~/amoeba -xzf -" < "$AMOEBA_TARBALL"
  done
fi
for host in $(printf '%s\n' "${hosts[@]}" | sort -u); do
  ssh "$host" 'umask 077; cat > ~/.amoeba-job-token' < "$token_file"
done
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM
ssh "$coordinator" "$bin/amoeba-coordinator --job_token_file ~/.amoeba-job-token --workers ${#hosts[@]} --port $port $*" \
  2>&1 | sed 's/^/[coordinator] /' &
pids+=($!)
sleep 2
for i in "${!hosts[@]}"; do
  host=${hosts[$i]}
  ssh "$host" "$bin/amoeba-worker --job_token_file ~/.amoeba-job-token --coordinator $coordinator:$port --listen $host" \
    2>&1 | sed "s/^/[$host] /" &
  pids+=($!)
done
wait "${pids[0]}"
