#!/usr/bin/env bash
# The independent check of the model (issue 13): for each configuration, weights from a short
# `amoeba train` exported with `amoeba export`, input tensors from `amoeba data dump` of real JPEG
# shards, then `amoeba crosscheck` (our logits, one step's losses, gradients, state and masks) and
# Scripts/peers/torch_crosscheck.py (the same in PyTorch, float64). Each training step runs with
# dropout and drop-path off, then on (drop_connect_keep_prob 0.7 late in the ramp). Skips, saying
# so, when PyTorch is not installed (pip install 'torch==2.13.0+cpu').
#   Scripts/crosscheck.sh [tiny bench-small n6f256]     (default: all three)
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python3 -c 'import torch, numpy' 2>/dev/null; then
  echo "crosscheck: skipped: PyTorch is not installed (pip install 'torch==2.13.0+cpu')"
  exit 0
fi
configs=("$@")
[ ${#configs[@]} -gt 0 ] || configs=(tiny bench-small n6f256)
swift build -c release --product amoeba >/dev/null
amoeba=$(swift build -c release --show-bin-path)/amoeba
work=$(mktemp -d /tmp/amoeba-crosscheck.XXXXXX)
trap 'rm -rf "$work"' EXIT
"$amoeba" data make-fake --out "$work/data" --images 32 --validation_images 16 --image_size 64 >/dev/null

for config in "${configs[@]}"; do
  case "$config" in
    tiny)        model="--num_cells=3 --reduction_size=16 --image_size=32 --use_aux_head=false"; batch=16 ;;
    bench-small) model="--num_cells=6 --reduction_size=64 --image_size=128"; batch=4 ;;
    n6f256)      model="--num_cells=6 --reduction_size=256 --image_size=224"; batch=2 ;;
    *) echo "crosscheck: unknown configuration $config (tiny, bench-small, n6f256)"; exit 2 ;;
  esac
  size=${model##*--image_size=}; size=${size%% *}
  dir="$work/$config"
  # Two steps of training, so the weights, statistics and averages are not the initial ones.
  "$amoeba" train $model --use_data=real --data_dir "$work/data" --train_batch_size=$batch --num_train_images=$((2 * batch)) \
    --num_epochs=1 --mode=train --model_dir "$dir" --log_every 1000 >/dev/null
  "$amoeba" export --model_dir "$dir" --out "$dir/weights.safetensors" >/dev/null
  labels=$("$amoeba" data dump --data_dir "$work/data" --image_size "$size" --count $batch --out "$dir/inputs.f32" | sed 's/.*labels: //; s/ /,/g')
  for regularization in off on; do
    if [ $regularization = off ]; then flags="--dense_dropout_keep_prob=1 --global_step=0"
    else flags="--drop_connect_keep_prob=0.7 --global_step=200000"; fi
    echo "== $config ($model, batch $batch), dropout and drop-path $regularization"
    "$amoeba" crosscheck $model $flags --weights "$dir/weights.safetensors" --inputs "$dir/inputs.f32" --labels "$labels" \
      --out "$dir/swift.safetensors" >/dev/null
    python3 Scripts/peers/torch_crosscheck.py --weights "$dir/weights.safetensors" --inputs "$dir/inputs.f32" --swift "$dir/swift.safetensors"
  done
done
echo "crosscheck: ok"
