"""Peer for `amoeba bench allreduce`: Open MPI's MPI_Allreduce (float32 sum) through mpi4py.

    mpirun --allow-run-as-root -n 2 --mca btl tcp,self --mca btl_tcp_if_include lo \
        python3 Scripts/peers/mpi_allreduce.py --sizes 64K,16M,64M,256M        # TCP over loopback
    mpirun --allow-run-as-root -n 2 python3 Scripts/peers/mpi_allreduce.py ...  # shared memory

Prints per size the median time, algbw and busbw (= algbw·2(n−1)/n) on rank 0.
"""
import argparse, statistics, time
import numpy as np
from mpi4py import MPI

def parse(text):
    units = {'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30}
    return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)

p = argparse.ArgumentParser()
p.add_argument('--sizes', default='64K,1M,16M,64M,256M')
p.add_argument('--repeats', type=int, default=10)
a = p.parse_args()
comm = MPI.COMM_WORLD
n, rank = comm.Get_size(), comm.Get_rank()
if rank == 0: print(f"Open MPI {MPI.Get_library_version().splitlines()[0]} allreduce, float32 sum, {n} ranks")
for size in [parse(s) for s in a.sizes.split(',')]:
    x = np.full(size // 4, float(rank), dtype=np.float32); y = np.empty_like(x)
    times = []
    for i in range(a.repeats + 1):
        comm.Barrier()
        t = time.perf_counter(); comm.Allreduce(x, y, op=MPI.SUM); dt = time.perf_counter() - t
        if i: times.append(dt)
    med = statistics.median(times)
    if rank == 0:
        algbw = size / med / 1e9
        print(f"{size:<12}{med * 1e3:<12.3f}{algbw:<12.3f}{algbw * 2 * (n - 1) / n:<12.3f}")
