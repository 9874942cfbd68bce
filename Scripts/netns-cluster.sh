#!/usr/bin/env bash
# A real multi-host run on one machine: network namespaces joined by veth links to a bridge — one
# coordinator host and three worker hosts, each with its own address in 10.77.0.0/24 — run a short
# training across them, then the same job over loopback, and check both end with the same loss and
# accuracy. Needs root and iproute2; without them it says so and skips (exit 0).
set -euo pipefail
cd "$(dirname "$0")/.."
probe="amprobe$$"
if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null || ! ip netns add "$probe" >/dev/null 2>&1; then
  echo "netns-cluster: skipped: needs root, iproute2 and the right to create network namespaces"
  exit 0
fi
ip netns del "$probe"
if ! ip link add "v$probe" type veth peer name "b$probe" >/dev/null 2>&1; then
  echo "netns-cluster: skipped: cannot create veth links here"
  exit 0
fi
ip link del "v$probe" >/dev/null 2>&1 || true
swift build -c release --product amoeba >/dev/null
swift build -c release --product amoeba-coordinator >/dev/null
swift build -c release --product amoeba-worker >/dev/null
bin=.build/release
flags=(--num_cells=3 --reduction_size=8 --image_size=24 --use_aux_head=false --train_batch_size=48
       --lr=0.04 --num_epochs=0.5 --num_train_images=1920 --num_eval_images=480 --eval_batch_size=80 --log_every=10)
p="am$$"
hosts=(c w1 w2 w3)
work=$(mktemp -d)
cleanup() {
  for h in "${hosts[@]}" sw; do ip netns del "$p-$h" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
. Scripts/netns-lib.sh
if ! netns_hosts "$p" 10.77.0 "${hosts[@]}" 2>"$work/setup.err"; then
  echo "netns-cluster: skipped: could not build the namespaces here ($(head -1 "$work/setup.err"))"
  exit 0
fi
export AMOEBA_JOB_TOKEN=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
ip netns exec "$p-c" "$bin/amoeba-coordinator" --workers 3 --host 10.77.0.1 --port 0 --port_file "$work/port" \
  --heartbeat_timeout 60 "${flags[@]}" > "$work/coordinator.log" 2>&1 &
coordinator=$!
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
port=$(cat "$work/port")
for k in 1 2 3; do
  # Worker 3 names its network interface instead of its address (--listen v<prefix>w3).
  listen="10.77.0.$((k + 1))"
  [ "$k" = 3 ] && listen="v${p}w3"
  ip netns exec "$p-w$k" "$bin/amoeba-worker" --coordinator "10.77.0.1:$port" --listen "$listen" --threads 1 \
    > "$work/worker$k.log" 2>&1 &
done
if ! wait "$coordinator"; then
  echo "netns-cluster: FAILED: the coordinator exited non-zero"; cat "$work"/*.log; exit 1
fi
wait
grep -E "ring order|^eval" "$work/coordinator.log"
"$bin/amoeba" launch --workers 3 --threads_per_worker 1 "${flags[@]}" > "$work/loopback.log" 2>&1
summary() { grep -E "step [0-9]+/[0-9]+ .*loss|^(\[coordinator\] )?eval" "$1" | tail -2 | sed -E 's/^\[coordinator\] //; s/ images\/s.*//; s/ from 3 workers//'; }
namespaces=$(summary "$work/coordinator.log"); loopback=$(summary "$work/loopback.log")
echo "namespaces: $namespaces"
echo "loopback:   $loopback"
if [ "$namespaces" != "$loopback" ]; then echo "netns-cluster: FAILED: the runs differ"; exit 1; fi
echo "netns-cluster: ok: 3 worker hosts and a coordinator host on 10.77.0.0/24 end as the loopback run does"
