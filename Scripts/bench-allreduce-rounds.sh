#!/usr/bin/env bash
# Interleaved rounds of the ring all-reduce against its peers on this machine's loopback, so that the
# host's slow and fast spells hit every contender alike (docs/BENCHMARKS.md quotes the medians).
# Each round: iperf3 one stream, Amoeba (2 ranks), Open MPI TCP, PyTorch Gloo; then Amoeba and Gloo
# with 4 ranks. Peers that are not installed are skipped with a note.
#
#   Scripts/bench-allreduce-rounds.sh [ROUNDS] [extra `amoeba bench allreduce` flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
shift || true
swift build -c release --product amoeba >/dev/null
amoeba=.build/release/amoeba
have() { command -v "$1" >/dev/null 2>&1; }
python_has() { python3 -c "import $1" >/dev/null 2>&1; }
for round in $(seq 1 "$rounds"); do
  echo "== round $round of $rounds, $(date -u +%H:%M:%S)"
  if have iperf3; then
    iperf3 -s -1 -D >/dev/null 2>&1 && sleep 0.3
    echo "iperf3 one stream: $(iperf3 -c 127.0.0.1 -t 3 -f G 2>/dev/null | awk '/receiver/ {print $7, $8}')"
  fi
  echo "-- amoeba, 2 ranks"
  $amoeba bench allreduce --ranks 2 --sizes 64K,1M,16M,64M,256M --repeats 20 "$@" | tail -n +2
  if have mpirun && python_has mpi4py; then
    echo "-- Open MPI TCP, 2 ranks"
    mpirun --allow-run-as-root -n 2 --mca btl tcp,self --mca btl_tcp_if_include lo \
      python3 Scripts/peers/mpi_allreduce.py --sizes 64K,1M,16M,64M,256M --repeats 20 2>/dev/null | tail -n +2
  else
    echo "-- Open MPI: not installed (apt-get install openmpi-bin libopenmpi-dev; pip install mpi4py)"
  fi
  if python_has torch; then
    echo "-- Gloo, 2 ranks"
    python3 Scripts/peers/torch_gloo_allreduce.py --ranks 2 --sizes 64K,1M,16M,64M,256M --repeats 10 2>/dev/null | tail -n +2
  else
    echo "-- Gloo: not installed (pip install 'torch==2.13.0+cpu')"
  fi
  echo "-- amoeba, 4 ranks"
  $amoeba bench allreduce --ranks 4 --sizes 64K,16M,64M --repeats 10 "$@" | tail -n +2
  if python_has torch; then
    echo "-- Gloo, 4 ranks"
    python3 Scripts/peers/torch_gloo_allreduce.py --ranks 4 --sizes 64K,16M,64M --repeats 10 2>/dev/null | tail -n +2
  fi
done
