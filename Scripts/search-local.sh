#!/usr/bin/env bash
# A cell search on this machine: `amoeba-coordinator --mode=search` and W workers, the proxy
# task's flags passed to the coordinator, then `amoeba search report`. The same command resumes a
# stopped search (the history is in --model_dir). For a cluster, start the coordinator and the
# workers as README.md's "Searching for cells" shows.
#
#   Scripts/search-local.sh --workers 2 --model_dir /tmp/search [--threads 1] [--deadline_s 7200] \
#     --population 40 --sample 10 --cycles 240 --search_seed 1 --num_cells=3 --reduction_size=8 ...
set -euo pipefail
cd "$(dirname "$0")/.."

workers=2 threads=1 deadline=7200 model_dir="" pass=()
while [ $# -gt 0 ]; do
  case "$1" in
    --workers) workers="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --deadline_s) deadline="$2"; shift 2 ;;
    --model_dir) model_dir="$2"; shift 2 ;;
    --model_dir=*) model_dir="${1#--model_dir=}"; shift ;;
    -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) pass+=("$1"); shift ;;
  esac
done
[ -n "$model_dir" ] || { echo "search-local: --model_dir D is needed (the history, best.json and the logs go there)" >&2; exit 2; }
case "$workers" in ''|*[!0-9]*|0) echo "search-local: --workers must be a whole number of at least 1, not '$workers'" >&2; exit 2 ;; esac

bin=.build/release
[ -x "$bin/amoeba-coordinator" ] && [ -x "$bin/amoeba-worker" ] && [ -x "$bin/amoeba" ] || swift build -c release >&2
mkdir -p "$model_dir"
token="$model_dir/job-token" port_file="$model_dir/coordinator.port"
rm -f "$port_file"

trained_before=$( [ -f "$model_dir/search-history.jsonl" ] && wc -l < "$model_dir/search-history.jsonl" || echo 0)
started=$(date +%s.%N)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

timeout "$deadline" "$bin/amoeba-coordinator" --mode=search --model_dir "$model_dir" --job_token_file "$token" \
  --port 0 --port_file "$port_file" "${pass[@]}" 2>&1 | tee "$model_dir/coordinator.log" &
coordinator=$!
pids+=("$coordinator")
for _ in $(seq 100); do [ -s "$port_file" ] && break; sleep 0.1; done
[ -s "$port_file" ] || { echo "search-local: the coordinator wrote no port to $port_file within 10 s; see $model_dir/coordinator.log" >&2; exit 1; }
port=$(cat "$port_file")
for i in $(seq 0 $((workers - 1))); do
  timeout "$deadline" "$bin/amoeba-worker" --coordinator "127.0.0.1:$port" --job_token_file "$token" --threads "$threads" \
    > "$model_dir/worker-$i.log" 2>&1 &
  pids+=("$!")
done
status=0
wait "$coordinator" || status=$?
[ "$status" = 0 ] || { echo "search-local: the coordinator ended with status $status (124: --deadline_s $deadline passed); the history so far is in $model_dir" >&2; exit "$status"; }
"$bin/amoeba" search report --model_dir "$model_dir"
trained=$(( $(wc -l < "$model_dir/search-history.jsonl") - trained_before ))
awk -v n="$trained" -v s="$(date +%s.%N)" -v t0="$started" -v w="$workers" -v th="$threads" 'BEGIN {
  printf "search-local: %d children in %.0f s of wall clock (start to end, start-up included) with %d worker(s) x %d thread(s): %.0f children per hour\n", n, s - t0, w, th, n * 3600 / (s - t0) }'
