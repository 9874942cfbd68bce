#!/usr/bin/env bash
# Builds cluster/kubernetes/Containerfile with buildah and runs a 2-worker job in the image, as a
# pod would (user amoeba, the binaries on PATH, nothing else). Docker Hub is out of reach here, so
# the base is Debian bookworm made by debootstrap from Debian's mirror and tagged locally as the
# Containerfile's debian:bookworm-slim. Needs the tarball (Scripts/package.sh) and root; skips,
# saying so, where buildah or debootstrap cannot be had or the mirror cannot be reached.
set -euo pipefail
cd "$(dirname "$0")/.."
skip() { echo "container-check: skipped: $*"; exit 0; }
[ "$(id -u)" = 0 ] || skip "needs root (buildah, debootstrap)"
for tool in buildah debootstrap; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    { apt-get install -y -qq "$tool" || { apt-get update -qq && apt-get install -y -qq "$tool"; }; } >/dev/null 2>&1 || skip "$tool cannot be installed"
  fi
done
version=$(sed -n 's/.*static let release = "\(.*\)".*/\1/p' Sources/CLI/Flags.swift)
release="amoeba-$version-linux-$(uname -m)"
[ -s "dist/$release.tar.gz" ] || bash Scripts/package.sh >/dev/null
export STORAGE_DRIVER=vfs BUILDAH_ISOLATION=chroot
work=$(mktemp -d /tmp/amoeba-container.XXXXXX)
containers=()
cleanup() { for c in "${containers[@]}"; do buildah rm "$c" >/dev/null 2>&1 || true; done; rm -rf "$work"; }
trap cleanup EXIT
if ! buildah inspect --type image localhost/debian:bookworm-slim >/dev/null 2>&1; then
  timeout 900 debootstrap --variant=minbase bookworm "$work/rootfs" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 \
    || skip "debootstrap of Debian bookworm failed (see a rerun's $work/debootstrap.log)"
  base=$(buildah from scratch); containers+=("$base")
  cp -a "$work/rootfs/." "$(buildah mount "$base")/"
  buildah umount "$base" >/dev/null
  buildah commit -q "$base" localhost/debian:bookworm-slim >/dev/null
fi
buildah bud -q --pull=never -f cluster/kubernetes/Containerfile --build-arg "RELEASE=$release" -t "localhost/amoeba:$version" . >/dev/null
c=$(buildah from --pull=never "localhost/amoeba:$version"); containers+=("$c")
log="$work/job.log"
if ! timeout 300 buildah run --user amoeba "$c" -- sh -c 'amoeba --version && amoeba launch --workers 2 --threads_per_worker 1 \
     --num_cells=3 --reduction_size=8 --image_size=24 --use_aux_head=false --train_batch_size=32 --lr=0.04 \
     --num_train_images=640 --num_epochs=1 --num_eval_images=160 --eval_batch_size=80 --log_every=10 \
     --model_dir /home/amoeba/model' >"$log" 2>&1; then
  tail -20 "$log"; echo "container-check: FAILED: the 2-worker job in the image did not finish"; exit 1
fi
grep -E 'cluster protocol|eval step' "$log"
echo "container-check: ok (cluster/kubernetes/Containerfile built with buildah; a 2-worker job ran in localhost/amoeba:$version as user amoeba)"
