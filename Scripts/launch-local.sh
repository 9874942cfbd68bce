#!/usr/bin/env bash
# A coordinator and N workers on this machine (what `amoeba launch` does), with the small built-in
# configuration unless flags are given:   Scripts/launch-local.sh [N] [amoeba flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
workers="${1:-2}"
shift || true
swift build -c release --product amoeba >/dev/null
swift build -c release --product amoeba-coordinator >/dev/null
swift build -c release --product amoeba-worker >/dev/null
if [ "$#" -eq 0 ]; then
  set -- --num_cells=3 --reduction_size=16 --image_size=32 --use_aux_head=false --train_batch_size=64 \
         --lr=0.04 --num_epochs=10 --num_epochs_per_eval=10 --eval_batch_size=250 --log_every=50
fi
exec .build/release/amoeba launch --workers "$workers" "$@"
