#!/usr/bin/env bash
# Scaling over shaped links: N worker hosts in network namespaces on a bridge, every veth limited
# with htb to a link rate (both directions), and the DAWNBench network's gradient exchange
# (`amoeba bench allreduce --step_compute_ms`: 46.8 M floats in 25 MiB buckets behind a compute
# stand-in) measured per rate and wire format, each beside what `amoeba plan`'s OverlapModel
# predicts. This machine cannot carry real 10/25 Gbit/s links for 8 ranks on its cores, so rates
# and compute are scaled down together by --scale (default 10: "10 Gbit/s" runs at 1 Gbit/s with
# 10× the compute), which keeps the ratio of communication to compute a real cluster has.
#   Scripts/netns-scaling.sh [--hosts 8] [--rates 10,25] [--scale 10] [--compute_ms 60] [--steps 5] [--wires none,bf16]
# Needs root, iproute2 and tc (htb); without them it says so and skips (exit 0).
set -euo pipefail
cd "$(dirname "$0")/.."
hosts=8; rates=10,25; scale=10; compute=60; steps=5; wires=none,bf16
while [ $# -gt 0 ]; do
  case "$1" in
    --hosts) hosts=$2; shift ;;
    --rates) rates=$2; shift ;;
    --scale) scale=$2; shift ;;
    --compute_ms) compute=$2; shift ;;
    --steps) steps=$2; shift ;;
    --wires) wires=$2; shift ;;
    *) echo "usage: Scripts/netns-scaling.sh [--hosts 8] [--rates 10,25] [--scale 10] [--compute_ms 60] [--steps 5] [--wires none,bf16]"; exit 2 ;;
  esac
  shift
done
probe="amscale$$"
if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null || ! command -v tc >/dev/null || ! ip netns add "$probe" >/dev/null 2>&1; then
  echo "netns-scaling: skipped: needs root, iproute2, tc and the right to create network namespaces"
  exit 0
fi
ip netns del "$probe"
swift build -c release --product amoeba >/dev/null
bin=.build/release/amoeba
p="sc$$"
names=(); for i in $(seq "$hosts"); do names+=("w$i"); done
work=$(mktemp -d)
cleanup() {
  jobs -p | xargs -r kill -9 2>/dev/null || true
  for h in "${names[@]}" sw; do ip netns del "$p-$h" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
. Scripts/netns-lib.sh
if ! netns_hosts "$p" 10.79.0 "${names[@]}" 2>"$work/setup.err"; then
  echo "netns-scaling: skipped: could not build the namespaces here ($(head -1 "$work/setup.err"))"
  exit 0
fi
# Every link at `rate` Gbit/s each way: htb on the host's end (its sends) and the bridge's end (its receives).
shape() {
  local rate=$1 h
  for h in "${names[@]}"; do
    for dev in "$p-$h v$p$h" "$p-sw b$p$h"; do
      set -- $dev
      tc -n "$1" qdisc del dev "$2" root 2>/dev/null || true
      tc -n "$1" qdisc add dev "$2" root handle 1: htb default 1
      tc -n "$1" class add dev "$2" parent 1: classid 1:1 htb rate "${rate}mbit" ceil "${rate}mbit" burst 256k cburst 256k quantum 65536
    done
  done
}
addresses=$(for i in $(seq "$hosts"); do printf "10.79.0.%d:%d," "$i" $((47000 + i)); done | sed 's/,$//')
scaled_compute=$(awk -v c="$compute" -v s="$scale" 'BEGIN { print c * s }')
echo "netns-scaling: $hosts worker hosts, links and compute scaled by 1/$scale (the rate shaped is the rate shown / $scale, the compute stand-in $compute ms × $scale)"
for rate in ${rates//,/ }; do
  shaped=$(awk -v r="$rate" -v s="$scale" 'BEGIN { printf "%d", r * 1000 / s }')
  shape "$shaped"
  # The peer: what one TCP stream gets through a shaped link (w2 → w1), iperf3 when it is installed.
  if command -v iperf3 >/dev/null; then
    ip netns exec "$p-w1" iperf3 -s -1 -B 10.79.0.1 >/dev/null 2>&1 &
    sleep 0.5
    got=$(ip netns exec "$p-w2" iperf3 -c 10.79.0.1 -t 3 -f m 2>/dev/null | awk '/receiver/ { print $7 }')
    wait
    echo "-- \"$rate Gbit/s\": shaped to $shaped Mbit/s; iperf3, one stream w2 → w1: $got Mbit/s"
  fi
  for wire in ${wires//,/ }; do
    for i in $(seq 0 $((hosts - 1))); do
      ip netns exec "$p-w$((i + 1))" "$bin" bench allreduce --addresses "$addresses" --rank "$i" --step_compute_ms "$scaled_compute" \
        --steps "$steps" --compression "$wire" --link_gbps "$(awk -v m="$shaped" 'BEGIN { print m / 1000 }')" > "$work/rank$i.log" 2>&1 &
    done
    if ! wait; then echo "netns-scaling: FAILED: a rank of the $rate Gbit/s $wire run failed"; cat "$work"/rank*.log; exit 1; fi
    echo "-- \"$rate Gbit/s\" (shaped to $shaped Mbit/s), wire $wire:"
    grep -E "^(measured|predicted)" "$work/rank0.log"
  done
done
echo "netns-scaling: ok"
