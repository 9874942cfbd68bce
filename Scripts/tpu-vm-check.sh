#!/usr/bin/env bash
# Rehearses cluster/tpu-vm/host.sh on this machine: two "TPU VM hosts" on loopback, one finding its
# place from TPU_WORKER_ID/TPU_WORKER_HOSTNAMES, the other from a stand-in for the TPU VM's
# metadata server (agent-worker-number, worker-network-endpoints); worker 0 starts the
# coordinator, both train (on the CPU kernels: no TPU here) and the job finishes. Then the
# refusals: chips held by another process (libtpu's one process per host), a worker id outside
# the slice, no environment and no metadata server. CI runs this after the multi-process checks.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product amoeba-coordinator >/dev/null
swift build -c release --product amoeba-worker >/dev/null
bin=$PWD/.build/release
host_sh=$PWD/cluster/tpu-vm/host.sh
work=$(mktemp -d)
servers=()
trap 'kill "${servers[@]}" 2>/dev/null || true; pkill -P $$ 2>/dev/null || true; rm -rf "$work"' EXIT
fail() { echo "tpu-vm-check: FAILED: $*"; exit 1; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
(umask 077; head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/token")

# The metadata server as a TPU VM has it: attributes under /computeMetadata/v1/instance/attributes/,
# answered only with the Metadata-Flavor header.
metadata() {  # metadata PORT WORKER_NUMBER ENDPOINTS
  python3 - "$@" <<'PY' &
import http.server, sys
port, number, endpoints = int(sys.argv[1]), sys.argv[2], sys.argv[3]
attributes = {"agent-worker-number": number, "worker-network-endpoints": endpoints}
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        key = self.path.rsplit("/", 1)[-1]
        ok = self.path.startswith("/computeMetadata/v1/instance/attributes/") and self.headers.get("Metadata-Flavor") == "Google"
        body = attributes.get(key) if ok else None
        self.send_response(200 if body is not None else 404)
        self.end_headers()
        self.wfile.write((body or "not found").encode())
    def log_message(self, *args): pass
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
PY
  servers+=($!)
}

tiny=(--num_cells=3 --reduction_size=8 --image_size=24 --use_aux_head=false --train_batch_size=32 --lr=0.04 --num_train_images=320
      --num_epochs=1 --num_eval_images=100 --eval_batch_size=50 --log_every=5)
port=$(free_port); meta_port=$(free_port)
metadata "$meta_port" 1 "1a2b:worker-0:127.0.0.1,3c4d:worker-1:127.0.0.1"
sleep 0.5
mkdir -p "$work/host0" "$work/host1"
( cd "$work/host0" && TPU_WORKER_ID=0 TPU_WORKER_HOSTNAMES=127.0.0.1,127.0.0.1 AMOEBA_DEVICE=cpu AMOEBA_PORT=$port \
    AMOEBA_METRICS_PORT=$(free_port) AMOEBA_TOKEN_FILE=$work/token timeout 300 "$host_sh" "$bin" "${tiny[@]}" > ../host0.log 2>&1 ) &
h0=$!
( cd "$work/host1" && env -u TPU_WORKER_ID -u TPU_WORKER_HOSTNAMES GCE_METADATA_IP=127.0.0.1:$meta_port AMOEBA_DEVICE=cpu \
    AMOEBA_PORT=$port AMOEBA_TOKEN_FILE=$work/token timeout 300 "$host_sh" "$bin" > ../host1.log 2>&1 ) &
h1=$!
s0=0; s1=0
wait $h0 || s0=$?; wait $h1 || s1=$?
log0=$work/host0.log; coordinator=$work/host0/coordinator.log
[ "$s0" = 0 ] && [ "$s1" = 0 ] || { cat "$log0" "$work/host1.log" "$coordinator" 2>/dev/null; fail "the 2-host rehearsal failed (status $s0, $s1)"; }
grep -q "coordinator: all 2 workers finished" "$coordinator" && grep -q "on 2 hosts × 1 device (cpu)" "$coordinator" \
  && grep -q "tpu-vm host 1: worker of 2 hosts at 127.0.0.1, coordinator 127.0.0.1:$port" "$work/host1.log" \
  || { cat "$log0" "$work/host1.log" "$coordinator"; fail "the hosts did not find their places or the job did not finish"; }
echo "tpu-vm rehearsal: host 0 from TPU_WORKER_ID/TPU_WORKER_HOSTNAMES, host 1 from the metadata server; $(grep -o 'eval step [0-9]*: top_1_accuracy [0-9.]*' "$coordinator")"

# libtpu's one process per host: a chip held open by another process is refused, naming it.
touch "$work/accel0" "$work/accel1" "$work/lockfile"
sleep 60 3< "$work/accel1" &
holder=$!
status=0
AMOEBA_TPU_CHIPS="$work/accel0 $work/accel1" AMOEBA_LIBTPU_LOCK=$work/lockfile TPU_WORKER_ID=0 TPU_WORKER_HOSTNAMES=127.0.0.1 \
  AMOEBA_TOKEN_FILE=$work/token "$host_sh" "$bin" > "$work/held.log" 2>&1 || status=$?
kill $holder 2>/dev/null || true
[ "$status" = 3 ] && grep -q "held by pid $holder: sleep 60" "$work/held.log" \
  || { cat "$work/held.log"; fail "chips held by pid $holder were not refused by name (status $status)"; }
# A worker id outside the slice, and neither environment nor metadata.
status=0
TPU_WORKER_ID=2 TPU_WORKER_HOSTNAMES=10.0.0.1,10.0.0.2 AMOEBA_TOKEN_FILE=$work/token "$host_sh" "$bin" > "$work/id.log" 2>&1 || status=$?
[ "$status" = 2 ] && grep -q "worker id '2' is not one of the 2 hosts" "$work/id.log" || { cat "$work/id.log"; fail "a worker id outside the slice was not refused"; }
status=0
env -u TPU_WORKER_ID -u TPU_WORKER_HOSTNAMES GCE_METADATA_IP=127.0.0.1:$(free_port) AMOEBA_TOKEN_FILE=$work/token \
  timeout 60 "$host_sh" "$bin" > "$work/nometa.log" 2>&1 || status=$?
[ "$status" != 0 ] && grep -q "did not answer; run this on a TPU VM" "$work/nometa.log" || { cat "$work/nometa.log"; fail "no metadata server was not reported"; }
echo "tpu-vm refusals: chips held by pid $holder (status 3), worker id outside the slice (2), no metadata server ($status)"
