#!/usr/bin/env bash
# Cloud TPU VM slice, from your workstation: the release and cluster/tpu-vm/host.sh to every host,
# then host.sh on every host at once (it finds its place in the slice, worker 0 starts the
# coordinator, each host runs one worker that drives all of its chips).
#   cluster/tpu-vm/launch.sh TPU_NAME ZONE [training flags...]
# Change: AMOEBA_TARBALL (the release, Scripts/package.sh; copied to every host and unpacked) or
# AMOEBA_BIN (where the binaries already are on every host), the flags.
set -euo pipefail
name=${1:?usage: launch.sh TPU_NAME ZONE [flags...]}; zone=${2:?zone}; shift 2
here=$(cd "$(dirname "$0")" && pwd)
bin=${AMOEBA_BIN:-}
tpu() { gcloud compute tpus tpu-vm "$@" --zone "$zone"; }
# The job token goes to every host as a 0600 file (never on a command line).
token_file=$(mktemp)
trap 'rm -f "$token_file"' EXIT
(umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$token_file"; echo >> "$token_file")
if [ -n "${AMOEBA_TARBALL:-}" ]; then
  release=$(basename "$AMOEBA_TARBALL" .tar.gz)
  tpu scp "$AMOEBA_TARBALL" "$name":amoeba.tar.gz --worker=all
  tpu ssh "$name" --worker=all --command "mkdir -p ~/amoeba && tar -C ~/amoeba -xzf ~/amoeba.tar.gz && rm ~/amoeba.tar.gz"
  bin="\$HOME/amoeba/$release/bin"
fi
[ -n "$bin" ] || { echo "launch.sh: set AMOEBA_TARBALL (Scripts/package.sh makes it) or AMOEBA_BIN" >&2; exit 2; }
tpu scp "$token_file" "$name":.amoeba-job-token --worker=all
tpu scp "$here/host.sh" "$name":amoeba-host.sh --worker=all
tpu ssh "$name" --worker=all --command 'chmod 600 ~/.amoeba-job-token && chmod +x ~/amoeba-host.sh'
# Flags are quoted one by one so that each arrives on the hosts as it was typed here.
quoted=$(printf ' %q' "$@")
tpu ssh "$name" --worker=all --command "~/amoeba-host.sh $bin$quoted"
