#!/usr/bin/env bash
# Checks of the accelerator path with the real executables: the worker's training step compiled
# ahead of time for a TPU topology by libtpu (no TPU needed), in float32 and bfloat16. libtpu comes
# from Scripts/fetch-libtpu.sh; without it the check says so and skips. CI runs this after `swift test`.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product amoeba >/dev/null
bin=.build/release
fail() { echo "xla-checks: FAILED: $*"; exit 1; }
tiny=(--num_cells=3 --reduction_size=16 --image_size=32 --num_label_classes=10 --use_aux_head=false --drop_connect_keep_prob=0.7)

if [ -s .pjrt/libtpu.so ]; then
  for precision in float32 bfloat16; do
    out=$("$bin/amoeba" xla compile --platform tpu --topology v5e:2x2 "${tiny[@]}" --batch 16 --precision "$precision" 2>/dev/null) \
      || fail "the TPU compile ($precision) failed"
    echo "$out" | grep -q "compiled for tpu topology v5e:2x2" || { echo "$out"; fail "no TPU executable ($precision)"; }
    echo "$out" | grep -q "device memory planned" || { echo "$out"; fail "libtpu reported no memory plan ($precision)"; }
    echo "tpu compile ($precision): $(echo "$out" | grep -o 'in [0-9.]* s: serialized executable [0-9.]* MiB'); $(echo "$out" | grep -o 'peak [0-9.]* MiB')"
  done
else
  echo "xla-checks: skipped the TPU compile: no .pjrt/libtpu.so (run Scripts/fetch-libtpu.sh)"
fi
echo "xla-checks: ok"
