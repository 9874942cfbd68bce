#!/usr/bin/env bash
# Runs on every host of a Cloud TPU VM slice (launch.sh starts it with --worker=all):
#   host.sh BIN_DIR [training flags...]
# Finds this host's place in the slice from the TPU VM's own environment — TPU_WORKER_ID and
# TPU_WORKER_HOSTNAMES where the image sets them, else the metadata server's agent-worker-number
# and worker-network-endpoints (what JAX reads) — starts the coordinator on worker 0, and on
# every host one amoeba-worker that drives all of its chips (one program replicated over them,
# the mean inside it over ICI); the hosts average over amoeba's TCP ring.
#
# libtpu lets one process per host own the chips (its lock file, /tmp/libtpu_lockfile): a host
# whose chips are held by another process is refused here, naming the process, before libtpu
# would fail. Each worker's libtpu is told its host is a slice of its own (TPU_PROCESS_BOUNDS
# 1,1,1 and the host's chip bounds), so libtpu does not wait for the other hosts' processes to
# form one slice-wide program: across hosts the gradients go over the ring (the data-centre
# network), one copy per host.
#
# Change: AMOEBA_PORT (29400), AMOEBA_METRICS_PORT (9400, on worker 0), AMOEBA_DEVICE (tpu; cpu
# or xla_cpu to rehearse the launch on ordinary hosts), AMOEBA_LOCAL_DEVICES (all), AMOEBA_TOKEN_FILE
# (~/.amoeba-job-token), GCE_METADATA_IP (the metadata server), AMOEBA_TPU_CHIPS and
# AMOEBA_LIBTPU_LOCK (where the chips' device files and libtpu's lock are, if not the usual places;
# Scripts/tpu-vm-check.sh points all three at stand-ins).
set -euo pipefail
bin=${1:?usage: host.sh BIN_DIR [training flags...]}; shift
port=${AMOEBA_PORT:-29400}
device=${AMOEBA_DEVICE:-tpu}
token_file=${AMOEBA_TOKEN_FILE:-$HOME/.amoeba-job-token}
metadata="http://${GCE_METADATA_IP:-metadata.google.internal}/computeMetadata/v1/instance/attributes"
say() { echo "tpu-vm host ${worker_id:-?}: $*"; }

# Six tries half a second apart, as JAX does: the metadata server answers within that on a TPU VM.
from_metadata() {
  local key=$1 try
  for try in 1 2 3 4 5 6; do
    if curl -sf --max-time 5 -H 'Metadata-Flavor: Google' "$metadata/$key"; then return 0; fi
    sleep 0.5
  done
  echo "tpu-vm host: no TPU_WORKER_ID/TPU_WORKER_HOSTNAMES in the environment and $metadata/$key did not answer;" \
       "run this on a TPU VM, or set both variables (worker id, comma-separated host addresses)" >&2
  return 1
}

worker_id=${TPU_WORKER_ID:-$(from_metadata agent-worker-number)}
if [ -n "${TPU_WORKER_HOSTNAMES:-}" ]; then
  IFS=, read -r -a hosts <<< "$TPU_WORKER_HOSTNAMES"
else
  # Entries look like "ID:NAME:10.130.0.5"; the address is the third field.
  IFS=, read -r -a endpoints <<< "$(from_metadata worker-network-endpoints)"
  hosts=()
  for endpoint in "${endpoints[@]}"; do hosts+=("$(cut -d: -f3 <<< "$endpoint")"); done
fi
[[ "$worker_id" =~ ^[0-9]+$ ]] && [ "$worker_id" -lt "${#hosts[@]}" ] \
  || { echo "tpu-vm host: worker id '$worker_id' is not one of the ${#hosts[@]} hosts (${hosts[*]})" >&2; exit 2; }
self=${hosts[$worker_id]}
coordinator=${hosts[0]}
[ -r "$token_file" ] || { say "no job token at $token_file (launch.sh copies one to every host)" >&2; exit 2; }

if [ "$device" = tpu ]; then
  # The chips' device files: /dev/accel* (v2-v4), /dev/vfio/N (v5e, v6e).
  chips=()
  for f in ${AMOEBA_TPU_CHIPS:-/dev/accel[0-9]* /dev/vfio/[0-9]*}; do [ -e "$f" ] && chips+=("$f"); done
  [ "${#chips[@]}" -gt 0 ] || { say "no TPU chips here (no /dev/accel* or /dev/vfio/N); is this a TPU VM?" >&2; exit 2; }
  # Whoever has a chip or libtpu's lock file open (what fuser does, without needing it installed).
  held=("${chips[@]}" "${AMOEBA_LIBTPU_LOCK:-/tmp/libtpu_lockfile}")
  holders=""
  for fd in /proc/[0-9]*/fd/*; do
    target=$(readlink "$fd" 2>/dev/null) || continue
    for f in "${held[@]}"; do
      if [ "$target" = "$(readlink -f "$f")" ]; then pid=${fd#/proc/}; holders+="${pid%%/*} "; fi
    done
  done
  holders=$(tr ' ' '\n' <<< "$holders" | grep -v "^$$\$" | sort -un | tr '\n' ' ' | sed 's/^ *//; s/ *$//')
  if [ -n "$holders" ]; then
    for pid in $holders; do say "the TPU chips are held by pid $pid: $(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null)" >&2; done
    say "libtpu lets one process per host own the chips; stop that process (or use a host of its own) and start again" >&2
    exit 3
  fi
  case ${#chips[@]} in
    1) bounds=1,1,1 ;; 2) bounds=1,2,1 ;; 4) bounds=2,2,1 ;; 8) bounds=2,4,1 ;;
    *) say "${#chips[@]} chips: no chip bounds known for that host size" >&2; exit 2 ;;
  esac
  export TPU_PROCESS_BOUNDS=1,1,1 TPU_CHIPS_PER_PROCESS_BOUNDS=$bounds
  export TPU_VISIBLE_CHIPS=$(seq -s, 0 $((${#chips[@]} - 1)))
  say "${#chips[@]} chips (${chips[*]}), chip bounds $bounds: one worker drives them all"
fi

if [ "$worker_id" = 0 ]; then
  say "coordinator on $coordinator:$port for ${#hosts[@]} hosts"
  nohup "$bin/amoeba-coordinator" --job_token_file "$token_file" --workers "${#hosts[@]}" --port "$port" --host 0.0.0.0 \
    --metrics_port "${AMOEBA_METRICS_PORT:-9400}" --metrics_host 0.0.0.0 "$@" > coordinator.log 2>&1 &
  coordinator_pid=$!
  trap 'kill "$coordinator_pid" 2>/dev/null || true' INT TERM
fi
# The worker retries the coordinator until its join deadline, so no host waits for another here.
say "worker of ${#hosts[@]} hosts at $self, coordinator $coordinator:$port, device $device"
status=0
"$bin/amoeba-worker" --job_token_file "$token_file" --coordinator "$coordinator:$port" --listen "$self" \
  --device "$device" --local_devices "${AMOEBA_LOCAL_DEVICES:-all}" || status=$?
if [ "$worker_id" = 0 ]; then
  wait "$coordinator_pid" || status=$?
  say "coordinator finished (status $status); its log: $PWD/coordinator.log"
fi
exit "$status"
