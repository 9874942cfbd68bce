#!/usr/bin/env bash
# A release that deploys: amoeba, amoeba-coordinator and amoeba-worker with the Swift runtime and
# Foundation linked in (--static-swift-stdlib), so a cluster host needs glibc and nothing else — no
# Swift toolchain — in one versioned tarball, dist/amoeba-<version>-linux-<arch>.tar.gz (bin/,
# README.md, cluster/). Every recipe in cluster/ unpacks it (cluster/README.md).
#   Scripts/package.sh           build the tarball, print its path
#   Scripts/package.sh --check   then unpack it in a temporary folder and run a short 2-worker job
#                                with no toolchain on PATH or LD_LIBRARY_PATH (CI runs this)
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/.*static let release = "\(.*\)".*/\1/p' Sources/CLI/Flags.swift)
name="amoeba-$version-linux-$(uname -m)"
scratch=.build/static
for product in amoeba amoeba-coordinator amoeba-worker; do
  swift build -c release --static-swift-stdlib --scratch-path "$scratch" --product "$product" >/dev/null
done
bin=$(swift build -c release --static-swift-stdlib --scratch-path "$scratch" --show-bin-path)
stage=$(mktemp -d /tmp/amoeba-package.XXXXXX)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/$name/bin" dist
cp "$bin/amoeba" "$bin/amoeba-coordinator" "$bin/amoeba-worker" "$stage/$name/bin/"
strip "$stage/$name/bin/"* 2>/dev/null || true
cp README.md "$stage/$name/"
cp -R cluster "$stage/$name/"
tar -C "$stage" -czf "dist/$name.tar.gz" "$name"
echo "package: dist/$name.tar.gz ($(du -h "dist/$name.tar.gz" | cut -f1))"
[ "${1:-}" = --check ] || exit 0

# The check: a host with no toolchain. No Swift library may be linked dynamically, and a job runs
# from the unpacked tarball with only /usr/bin:/bin on PATH and no LD_LIBRARY_PATH.
check=$(mktemp -d /tmp/amoeba-package-check.XXXXXX)
trap 'rm -rf "$stage" "$check"' EXIT
tar -C "$check" -xzf "dist/$name.tar.gz"
for exe in "$check/$name/bin/"*; do
  if ldd "$exe" | grep -i 'swift\|Foundation\|dispatch\|not found'; then
    echo "package: $exe still needs the libraries above"; exit 1
  fi
done
log="$check/job.log"
if ! env -i PATH=/usr/bin:/bin HOME="$check" timeout 300 "$check/$name/bin/amoeba" launch --workers 2 \
     --threads_per_worker 1 --num_cells=3 --reduction_size=8 --image_size=24 --use_aux_head=false \
     --train_batch_size=32 --lr=0.04 --num_train_images=640 --num_epochs=1 --num_eval_images=160 \
     --eval_batch_size=80 --log_every=10 --model_dir "$check/model" > "$log" 2>&1; then
  tail -20 "$log"; echo "package: the 2-worker job from the tarball failed"; exit 1
fi
grep -E 'eval|top_1' "$log" | tail -2
"$check/$name/bin/amoeba" --version
echo "package: ok (the packaged binaries ran a 2-worker job with no toolchain on PATH or LD_LIBRARY_PATH)"
