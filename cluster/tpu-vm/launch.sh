#!/usr/bin/env bash
# Cloud TPU VM pod slice: a worker on every host of the slice, the coordinator on worker 0.
#   cluster/tpu-vm/launch.sh TPU_NAME ZONE [training flags...]
# Workers run the CPU kernels today (the PJRT backend that drives the TPU chips is a later issue).
# Change: AMOEBA_TARBALL (the release, Scripts/package.sh; copied to every host and unpacked) or
# AMOEBA_BIN (where the binaries already are on every host), the flags.
set -euo pipefail
name=${1:?usage: launch.sh TPU_NAME ZONE [flags...]}; zone=${2:?zone}; shift 2
bin=${AMOEBA_BIN:-/home/$USER/amoeba/bin}
# The job token goes to every host as a 0600 file (never on a command line).
token_file=$(mktemp)
trap 'rm -f "$token_file"' EXIT
(umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$token_file"; echo >> "$token_file")
flags="$*"
read -r -a hosts <<< "$(gcloud compute tpus tpu-vm describe "$name" --zone "$zone" \
  --format='value(networkEndpoints[].ipAddress)' | tr ';' ' ')"
coordinator=${hosts[0]}
if [ -n "${AMOEBA_TARBALL:-}" ]; then
  release=$(basename "$AMOEBA_TARBALL" .tar.gz)
  gcloud compute tpus tpu-vm scp "$AMOEBA_TARBALL" "$name":amoeba.tar.gz --zone "$zone" --worker=all
  gcloud compute tpus tpu-vm ssh "$name" --zone "$zone" --worker=all --command \
    "mkdir -p ~/amoeba && tar -C ~/amoeba -xzf ~/amoeba.tar.gz && rm ~/amoeba.tar.gz"
  bin="~/amoeba/$release/bin"
fi
gcloud compute tpus tpu-vm scp "$token_file" "$name":.amoeba-job-token --zone "$zone" --worker=all
gcloud compute tpus tpu-vm ssh "$name" --zone "$zone" --worker=all --command 'chmod 600 ~/.amoeba-job-token'
gcloud compute tpus tpu-vm ssh "$name" --zone "$zone" --worker=0 --command \
  "nohup $bin/amoeba-coordinator --job_token_file ~/.amoeba-job-token --workers ${#hosts[@]} --port 29400 $flags > coordinator.log 2>&1 &"
sleep 3
gcloud compute tpus tpu-vm ssh "$name" --zone "$zone" --worker=all --command \
  "$bin/amoeba-worker --job_token_file ~/.amoeba-job-token --coordinator $coordinator:29400 --listen \$(hostname -I | awk '{print \$1}')"
