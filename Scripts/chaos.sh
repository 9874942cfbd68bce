#!/usr/bin/env bash
# Chaos campaign: an elastic job (--min_workers 2 --max_workers 4) on a coordinator host and four
# worker hosts in network namespaces, and during the one run: kill -9 of a random worker, SIGSTOP of
# one beyond the heartbeat deadline, a veth link cut for longer than it, and kill -9 of the
# coordinator, restarted on the same address and --model_dir (its workers wait --coordinator_grace
# for it). A worker that ended is replaced on its host; one that outlived its fault (stopped, cut
# off) must come back by itself. Then the same job undisturbed, same seed. It fails unless the
# disturbed run completes, every fault is survived with no completed step lost, every host is back
# in the job, and the final accuracy is within --tolerance of the undisturbed run's. Per fault it
# prints the detection time (fault to the coordinator naming the rank), the recovery time (fault to
# the next membership training), the completed steps lost, what a restart from a checkpoint every
# --checkpoint_every steps (as torchrun does) would have had to redo, and how the job got back to
# four workers and when.
#   Scripts/chaos.sh            short version (CI): one fault of each kind
#   Scripts/chaos.sh --long     eight faults, five of them kill -9, a longer run (docs/BENCHMARKS.md)
# Needs root and iproute2; without them it says so and skips (exit 0).
set -euo pipefail
cd "$(dirname "$0")/.."
long=0; tolerance=0.15; checkpoint_every=100; seed=${CHAOS_SEED:-$RANDOM}
while [ $# -gt 0 ]; do
  case "$1" in
    --long) long=1 ;;
    --tolerance) tolerance=$2; shift ;;
    --checkpoint_every) checkpoint_every=$2; shift ;;
    --seed) seed=$2; shift ;;
    *) echo "usage: Scripts/chaos.sh [--long] [--tolerance 0.15] [--checkpoint_every 100] [--seed N]"; exit 2 ;;
  esac
  shift
done
RANDOM=$seed
probe="amchaos$$"
if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null || ! ip netns add "$probe" >/dev/null 2>&1; then
  echo "chaos: skipped: needs root, iproute2 and the right to create network namespaces"
  exit 0
fi
ip netns del "$probe"
swift build -c release --product amoeba-coordinator >/dev/null
swift build -c release --product amoeba-worker >/dev/null
bin=.build/release
heartbeat=3
epochs=6; faults=(kill coordinator stop cut)
if [ "$long" = 1 ]; then epochs=12; faults=(kill stop kill coordinator cut kill kill kill); fi
flags=(--num_cells=3 --reduction_size=16 --image_size=32 --use_aux_head=false --train_batch_size=48 --lr=0.04
       --num_epochs=$epochs --num_epochs_per_eval=$epochs --num_train_images=7200 --num_eval_images=500 --eval_batch_size=100
       --moving_average_decay=0.99 --log_every=10)
total=$((epochs * 150))
p="ch$$"
hosts=(c w1 w2 w3 w4)
work=$(mktemp -d)
cleanup() {
  jobs -p | xargs -r kill -9 2>/dev/null || true
  for h in "${hosts[@]}" sw; do ip netns del "$p-$h" 2>/dev/null || true; done
  [ -n "${CHAOS_KEEP:-}" ] && echo "chaos: kept $work" || rm -rf "$work"
}
trap cleanup EXIT
. Scripts/netns-lib.sh
if ! netns_hosts "$p" 10.78.0 "${hosts[@]}" 2>"$work/setup.err"; then
  echo "chaos: skipped: could not build the namespaces here ($(head -1 "$work/setup.err"))"
  exit 0
fi
export AMOEBA_JOB_TOKEN=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
now() { echo "$EPOCHREALTIME"; }

# One job: the coordinator's lines go to $1 with a time stamp each, its exit status last.
start_coordinator() {
  local log=$1 at=${2:-0} model=$3; rm -f "$work/port"
  ( ip netns exec "$p-c" "$bin/amoeba-coordinator" --workers 4 --min_workers 2 --max_workers 4 --host 10.78.0.1 --port "$at" \
      --port_file "$work/port" --heartbeat_timeout $heartbeat --join_timeout 60 --coordinator_grace 30 --model_dir "$model" \
      "${flags[@]}" 2>&1 & echo $! > "$work/coordinator.pid"; wait $!; echo "exit $?" ) |
    while IFS= read -r line; do echo "$EPOCHREALTIME $line"; done > "$log" &
  for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
  port=$(cat "$work/port")
}
declare -A pid
started=0
start_worker() {
  local k=$1; started=$((started + 1))
  ip netns exec "$p-w$k" "$bin/amoeba-worker" --coordinator "10.78.0.1:$port" --listen "10.78.0.$((k + 1))" --threads 1 \
    > "$work/worker$k-$started.log" 2>&1 &
  pid[$k]=$!
}
# Waits until the coordinator's log ($1) has a line matching $2 after line $3; prints its line number.
wait_line() {
  local log=$1 pattern=$2 after=${3:-0} limit=$(( $(date +%s) + 180 ))
  local ended=0
  while [ "$(date +%s)" -lt "$limit" ]; do
    local n; n=$(tail -n +"$((after + 1))" "$log" | grep -n -m1 -E "$pattern" | cut -d: -f1 || true)
    if [ -n "$n" ]; then echo $((after + n)); return 0; fi
    # The job ended: one more look, for a line written after the one above.
    [ "$ended" = 1 ] && break
    if grep -q "^[0-9.]* exit " "$log"; then ended=1; else sleep 0.05; fi
  done
  echo "chaos: FAILED: no line matching '$pattern' in the coordinator's log" >&2
  tail -20 "$log" >&2
  return 1
}
stamp() { sed -n "$2p" "$1" | cut -d' ' -f1; }
last_step() { grep -oE " step [0-9]+/$total " "$1" | tail -1 | grep -oE "[0-9]+" | head -1; }
seconds() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

log="$work/chaos.log"
start_coordinator "$log" 0 "$work/model"
for k in 1 2 3 4; do start_worker "$k"; done
wait_line "$log" "every worker starts at step" >/dev/null
echo "chaos: seed $seed; ${#faults[@]} faults over $total steps; heartbeat timeout $heartbeat s"
rows=()
spacing=$(( total / (${#faults[@]} + 1) ))
for i in "${!faults[@]}"; do
  fault=${faults[$i]}
  target=$(( (i + 1) * spacing ))
  wait_line "$log" " step ($target|$((target + 1))[0-9]?)/$total " >/dev/null || wait_line "$log" " step [0-9]+/$total " >/dev/null
  if grep -q "^[0-9.]* exit " "$log"; then echo "chaos: FAILED: the job ended before fault $((i + 1)) ($fault); give it more steps"; exit 1; fi
  k=$(( RANDOM % 4 + 1 ))
  before=$(wc -l < "$log")
  at=$(last_step "$log")
  t0=$(now)
  case "$fault" in
    kill) kill -9 "${pid[$k]}"; wait "${pid[$k]}" 2>/dev/null || true ;;
    stop) kill -STOP "${pid[$k]}"; sleep $((heartbeat + 2)); kill -CONT "${pid[$k]}" ;;
    cut)  ip -n "$p-w$k" link set "v${p}w$k" down; sleep $((heartbeat + 2)); ip -n "$p-w$k" link set "v${p}w$k" up ;;
    coordinator)
      kill -9 "$(cat "$work/coordinator.pid")"; sleep 1
      log="$work/chaos-$i.log"
      start_coordinator "$log" "$port" "$work/model"
      named=$(wait_line "$log" "taking the job over from")
      resumed=$(wait_line "$log" "goes on from step" "$named")
      lost=$(sed -n "${resumed}p" "$log" | grep -oE "completed steps lost: [0-9]+" | grep -oE "[0-9]+$")
      from=$(sed -n "${resumed}p" "$log" | grep -oE "goes on from step [0-9]+" | grep -oE "[0-9]+$")
      rows+=("$(printf "| %d | %-7s | coordinator host | %5s | %6s | %6s | %d | %d | restarted, %s s |" $((i + 1)) "$fault" "$from" \
                "$(seconds "$t0" "$(stamp "$log" "$named")")" "$(seconds "$t0" "$(stamp "$log" "$resumed")")" "$lost" $(( from % checkpoint_every )) \
                "$(seconds "$t0" "$(stamp "$log" "$resumed")")")")
      if [ "$lost" != 0 ]; then echo "chaos: FAILED: fault $((i + 1)) ($fault) lost $lost completed steps"; exit 1; fi
      continue ;;
  esac
  named=$(wait_line "$log" "forming the next membership without it" "$before")
  resumed=$(wait_line "$log" "goes on from step" "$named")
  lost=$(sed -n "${resumed}p" "$log" | grep -oE "completed steps lost: [0-9]+" | grep -oE "[0-9]+$")
  from=$(sed -n "${resumed}p" "$log" | grep -oE "goes on from step [0-9]+" | grep -oE "[0-9]+$")
  # A process that outlived its fault (stopped, or cut off) reconnects within --coordinator_grace
  # and is admitted again as it is; one that ended gets a replacement on its host.
  back=""; limit=$(( $(date +%s) + 60 ))
  while [ -z "$back" ] && [ "$(date +%s)" -lt "$limit" ]; do
    if tail -n +"$((resumed + 1))" "$log" | grep -q "(admitted the worker at 10.78.0.$((k + 1))"; then back=itself
    elif ! kill -0 "${pid[$k]}" 2>/dev/null; then back=replacement; start_worker "$k"
    else sleep 0.1; fi
  done
  if [ -z "$back" ]; then echo "chaos: FAILED: the worker on w$k neither came back nor ended within 60 s of fault $((i + 1)) ($fault)"; exit 1; fi
  admitted=$(wait_line "$log" "\(admitted the worker at 10.78.0.$((k + 1))" "$resumed")
  rejoined=$(wait_line "$log" "goes on from step" "$admitted")
  rows+=("$(printf "| %d | %-7s | worker host w%d | %5s | %6s | %6s | %d | %d | %s, %s s |" $((i + 1)) "$fault" "$k" "$from" \
            "$(seconds "$t0" "$(stamp "$log" "$named")")" "$(seconds "$t0" "$(stamp "$log" "$resumed")")" "$lost" $(( from % checkpoint_every )) \
            "$back" "$(seconds "$t0" "$(stamp "$log" "$rejoined")")")")
  if [ "$lost" != 0 ]; then echo "chaos: FAILED: fault $((i + 1)) ($fault) lost $lost completed steps"; exit 1; fi
done
wait_line "$log" "^[0-9.]* exit " >/dev/null
if ! grep -q "^[0-9.]* exit 0$" "$log"; then echo "chaos: FAILED: the disturbed run did not complete"; tail -30 "$log"; exit 1; fi
accuracy() { grep -E "eval step $total:" "$1" | tail -1 | grep -oE "top_1_accuracy [0-9.]+" | grep -oE "[0-9.]+$"; }
disturbed=$(accuracy "$log")
generations=$(grep -oE "membership generation [0-9]+" "$log" | tail -1 | grep -oE "[0-9]+$")

# The same job, undisturbed.
calm="$work/calm.log"
wait
start_coordinator "$calm" 0 "$work/calm-model"
for k in 1 2 3 4; do start_worker "$k"; done
wait_line "$calm" "^[0-9.]* exit " >/dev/null
if ! grep -q "^[0-9.]* exit 0$" "$calm"; then echo "chaos: FAILED: the undisturbed run did not complete"; tail -30 "$calm"; exit 1; fi
undisturbed=$(accuracy "$calm")
echo "| # | fault | where | resumed at step | detection s | recovery s | completed steps lost | a restart from a checkpoint every $checkpoint_every steps redoes | back to full size by, after |"
echo "|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo "chaos: final top-1 accuracy $disturbed with the faults ($generations membership generations), $undisturbed undisturbed (tolerance $tolerance)"
if ! awk -v a="$disturbed" -v b="$undisturbed" -v t="$tolerance" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= t) }'; then
  echo "chaos: FAILED: the accuracies differ by more than $tolerance"; exit 1
fi
echo "chaos: ok: every fault survived, no completed step lost, the run completed within $tolerance of the undisturbed one"
