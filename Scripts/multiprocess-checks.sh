#!/usr/bin/env bash
# Multi-process checks with the real executables on loopback: a worker killed mid-run is named by the
# coordinator and `amoeba launch` fails, naming the first process to fail, leaving the last complete
# checkpoint intact; relaunching resumes every worker from it; a worker with the wrong job token is
# refused; two workers train from `data make-fake` shards with one damaged record. CI runs this after
# `swift test`.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product amoeba >/dev/null
swift build -c release --product amoeba-coordinator >/dev/null
swift build -c release --product amoeba-worker >/dev/null
bin=.build/release
work=$(mktemp -d)
trap 'rm -rf "$work"; pkill -P $$ 2>/dev/null || true' EXIT
flags=(--num_cells=3 --reduction_size=8 --image_size=24 --use_aux_head=false --train_batch_size=32 --lr=0.04
       --num_train_images=32000 --num_epochs=1 --num_eval_images=320 --eval_batch_size=80 --log_every=50
       --iterations_per_loop=40 --model_dir="$work/run")
fail() { echo "multiprocess-checks: FAILED: $*"; exit 1; }

# 1. Kill a worker once the first checkpoint exists.
"$bin/amoeba" launch --workers 2 --threads_per_worker 1 "${flags[@]}" > "$work/first.log" 2>&1 &
launch=$!
for _ in $(seq 600); do ls "$work/run"/model.ckpt-*.json >/dev/null 2>&1 && break; sleep 0.1; done
ls "$work/run"/model.ckpt-*.json >/dev/null 2>&1 || fail "no checkpoint appeared"
victim=$(pgrep -f "amoeba-worker --coordinator" | tail -n 1)
echo "killing worker pid $victim: $(ps -o pid,ppid,cmd -p "$victim" | tail -1)"
kill -9 "$victim"
if wait "$launch"; then fail "launch exited 0 after a worker was killed"; fi
grep -q "coordinator: error: rank [01] at .* is gone" "$work/first.log" || { cat "$work/first.log"; fail "the coordinator did not name the lost worker"; }
grep -q "launch: failed: .* first" "$work/first.log" || fail "launch did not report the first failure"
echo "killed worker: $(grep -o 'coordinator: error: rank [01] at [^ ]*' "$work/first.log" | head -1); launch: $(grep -o 'failed: .* first' "$work/first.log")"

# 2. Relaunch: every worker resumes from the newest complete checkpoint and the job finishes.
step=$(ls "$work/run"/model.ckpt-*.json | sed -E 's/.*ckpt-([0-9]+)\.json/\1/' | sort -n | tail -1)
"$bin/amoeba" launch --workers 2 --threads_per_worker 1 "${flags[@]}" > "$work/second.log" 2>&1 || { cat "$work/second.log"; fail "the relaunch failed"; }
grep -q "resumed from .*model.ckpt-$step.safetensors at step $step" "$work/second.log" || { cat "$work/second.log"; fail "no worker restored step $step"; }
grep -q "every worker starts at step $step (restored from rank" "$work/second.log" || { cat "$work/second.log"; fail "the workers did not all start at step $step"; }
grep -q "all 2 workers finished" "$work/second.log" || fail "the resumed job did not finish"
echo "resume: $(grep -o "every worker starts at step $step[^)]*)" "$work/second.log" | head -1); the job finished"

# 3. A worker with the wrong token is refused on both sides.
AMOEBA_JOB_TOKEN=right "$bin/amoeba-coordinator" --workers 1 --port 0 --port_file "$work/port" --join_timeout 5 \
  "${flags[@]/--model_dir=*/--model_dir=$work/other}" > "$work/coordinator.log" 2>&1 &
coordinator=$!
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
if AMOEBA_JOB_TOKEN=wrong "$bin/amoeba-worker" --coordinator "127.0.0.1:$(cat "$work/port")" > "$work/intruder.log" 2>&1; then
  fail "a worker with the wrong token was accepted"
fi
wait "$coordinator" || true
grep -q "refused a connection from .*wrong job token" "$work/coordinator.log" || { cat "$work/coordinator.log"; fail "the coordinator did not log the refusal"; }
grep -q "job token" "$work/intruder.log" || fail "the worker did not say why it was refused"
echo "wrong token: refused ($(grep -o 'refused a connection.*' "$work/coordinator.log"))"
# 3b. Exit status 2 for a wrong command line, before anyone joins: a batch too small to share.
status=0
"$bin/amoeba-coordinator" --workers 3 --train_batch_size=2 > "$work/usage.log" 2>&1 || status=$?
[ "$status" = 2 ] || { cat "$work/usage.log"; fail "a batch smaller than --workers exited $status, not 2"; }
grep -q "leaves no example for some of the --workers=3" "$work/usage.log" || fail "the batch-share error was not named"
echo "usage error: exit 2 before any worker joined ($(grep -o 'train_batch_size=2 leaves no example for some of the --workers=3' "$work/usage.log"))"
# 4. Multi-process rings: N processes on loopback, awkward lengths (0, 1, 3, 7, 1001 floats, 1 MiB),
#    every element of every rank checked against the exact sum.
for n in 1 3 8; do
  out=$("$bin/amoeba" bench allreduce --ranks "$n" --sizes 0,4,12,28,4004,1M --repeats 1 --chunk 4K) || fail "the $n-process ring failed"
  wrong=$(echo "$out" | awk 'NR > 2 { s += $NF } END { print s + 0 }')
  [ "$wrong" = 0 ] || { echo "$out"; fail "$wrong wrong elements with $n processes"; }
done
echo "multi-process rings: 1, 3 and 8 processes, lengths 0 to 262144 floats in slices of n × 4 KiB, 0 wrong elements"
# 5. Real input path: ImageNet-format shards with JPEGs from `data make-fake`, one shard damaged;
#    two workers train from --data_dir, skip and count the bad record, and evaluate.
"$bin/amoeba" data make-fake --out "$work/imagenet" --train_shards 4 --validation_shards 1 --images 1024 \
  --validation_images 128 --image_size 24 --jpeg_dir "$work/jpegs" > /dev/null || fail "data make-fake failed"
python3 - "$work/imagenet/train-00002-of-00004" <<'PY' 2>/dev/null || printf '\xff' | dd of="$work/imagenet/train-00002-of-00004" bs=1 seek=200 conv=notrunc 2>/dev/null
import sys
path = sys.argv[1]; data = bytearray(open(path, "rb").read()); data[200] ^= 0xFF; open(path, "wb").write(data)
PY
"$bin/amoeba" launch --workers 2 --threads_per_worker 1 --data_dir="$work/imagenet" --num_cells=3 --reduction_size=8 \
  --image_size=24 --use_aux_head=false --train_batch_size=32 --lr=0.04 --num_epochs=2 --eval_batch_size=32 \
  --log_every=32 --model_dir="$work/real" > "$work/real.log" 2>&1 || { cat "$work/real.log"; fail "training from --data_dir failed"; }
grep -q "bad records skipped 1" "$work/real.log" || { cat "$work/real.log"; fail "the damaged record was not counted"; }
grep -q "skipped a bad record: .*train-00002-of-00004: record 0 at offset 0: data CRC mismatch" "$work/real.log" \
  || { cat "$work/real.log"; fail "the damaged record was not named"; }
echo "real data: $(grep -o 'eval step .*' "$work/real.log" | tail -1); $(grep -o 'bad records skipped [0-9]*' "$work/real.log" | tail -1)"
# 5b. `amoeba predict` on picture files with that job's checkpoint, class names from the shards; a
#     file that is not a JPEG is named and makes the exit status 1, the others still answered.
printf 'not a picture' > "$work/jpegs/broken.JPEG"
"$bin/amoeba" predict --model_dir "$work/real" --data_dir "$work/imagenet" --top 3 "$work/jpegs/FAKE_val_00000.JPEG" \
  "$work/jpegs/broken.JPEG" "$work/jpegs/FAKE_val_00001.JPEG" > "$work/predict.log" 2>&1 && fail "predict exited 0 with a broken file"
[ "$(grep -c '^  [123]\. [0-9.]*  [0-9]* n000000' "$work/predict.log")" = 6 ] && grep -q 'broken.JPEG: corrupt JPEG' "$work/predict.log" \
  || { cat "$work/predict.log"; fail "predict did not rank 3 named classes for each picture and name the broken file"; }
echo "predict: FAKE_val_00000.JPEG → $(grep -m1 '^  1\.' "$work/predict.log" | sed 's/^ *//'); the broken file named"
# 5c. --help: every flag of every command and executable listed with a line (Sources/CLI/FlagHelp.swift).
for command in train launch summary lr-schedule "data dump" "data make-fake" "data inspect" "data convert" export predict crosscheck fuzz \
               "bench kernels" "bench allreduce" "bench scaling" "bench train" "bench data" "bench xla" "bench step" "xla compile" \
               plan genotype "search report"; do
  # shellcheck disable=SC2086
  out=$("$bin/amoeba" $command --help 2>&1) || fail "amoeba $command --help exited non-zero"
  if grep -q 'no description' <<< "$out"; then echo "$out" | grep 'no description'; fail "amoeba $command --help: flags without a line"; fi
done
for exe in amoeba-coordinator amoeba-worker; do
  out=$("$bin/$exe" --help 2>&1) || fail "$exe --help exited non-zero"
  if grep -q 'no description' <<< "$out"; then echo "$out" | grep 'no description'; fail "$exe --help: flags without a line"; fi
done
echo "help: every flag of 20 amoeba commands and both executables has a line"
# 6. The probes that used to end a job: while the coordinator waits for its workers, 500 garbage
#    connections, 100 connect-then-close, 20 idle ones held open; then the real workers join and the
#    job runs to the end.
AMOEBA_JOB_TOKEN=probe-token-0123456789 "$bin/amoeba-coordinator" --workers 2 --port 0 --host 127.0.0.1 \
  --port_file "$work/probe-port" --join_timeout 60 "${flags[@]/--model_dir=*/--model_dir=$work/probe}" --num_train_images=3200 \
  > "$work/probe.log" 2>&1 &
coordinator=$!
for _ in $(seq 100); do [ -s "$work/probe-port" ] && break; sleep 0.1; done
port=$(cat "$work/probe-port")
python3 - "$port" <<'PY' || fail "the probe could not run"
import os, socket, sys, time
port = int(sys.argv[1]); idle = []
start = time.time()
for i in range(620):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    if i < 500: s.sendall(os.urandom(64))
    if i >= 600: idle.append(s)
    else: s.close()
print(f"probe: 500 garbage, 100 connect-close, 20 idle connections in {time.time() - start:.1f} s")
PY
for _ in 1 2; do AMOEBA_JOB_TOKEN=probe-token-0123456789 "$bin/amoeba-worker" --coordinator "127.0.0.1:$port" --threads 1 >> "$work/probe-workers.log" 2>&1 & done
wait "$coordinator" || { cat "$work/probe.log" "$work/probe-workers.log"; fail "the job did not survive the probe"; }
grep -q "all 2 workers finished" "$work/probe.log" || fail "the probed job did not finish"
echo "probe: the job finished; coordinator log lines about strays: $(grep -c 'refused a connection\|closed a connection' "$work/probe.log")"

# 7. A hung (SIGSTOPped) worker mid-training: the coordinator names it within --heartbeat_timeout
#    (10 s by default) and the other worker stops at once on the coordinator's word.
"$bin/amoeba" launch --workers 2 --threads_per_worker 1 "${flags[@]/--model_dir=*/--model_dir=$work/hung}" --num_train_images=320000 \
  > "$work/hung.log" 2>&1 &
launch=$!
for _ in $(seq 600); do grep -q "^\[coordinator\] step 50/" "$work/hung.log" 2>/dev/null && break; sleep 0.1; done
victim=$(pgrep -f "amoeba-worker --coordinator" | tail -n 1)
stopped_at=$(date +%s.%N)
kill -STOP "$victim"
if wait "$launch"; then kill -CONT "$victim"; fail "launch exited 0 with a hung worker"; fi
ended_at=$(date +%s.%N)
kill -CONT "$victim" 2>/dev/null || true
grep -q "sent nothing for 10.0 s (--heartbeat_timeout)" "$work/hung.log" || { cat "$work/hung.log"; fail "the coordinator did not name the hung worker"; }
grep -q "error: stopped by the coordinator at" "$work/hung.log" || { cat "$work/hung.log"; fail "the other worker did not stop on the coordinator's word"; }
echo "hung worker: found, the other worker stopped, and launch ended $(python3 -c "print(f'{$ended_at - $stopped_at:.1f}')") s after SIGSTOP ($(grep -o 'rank [01] at [^ ]* (host [^)]*) sent nothing for [0-9.]* s' "$work/hung.log" | head -1))"
echo "multiprocess-checks: ok"
