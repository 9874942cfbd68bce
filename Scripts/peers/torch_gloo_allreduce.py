"""Peer for `amoeba bench allreduce`: PyTorch's Gloo all-reduce (float32 sum) over loopback with
N local processes; per size the median time, algbw and busbw (= algbw·2(n−1)/n).

    python3 Scripts/peers/torch_gloo_allreduce.py --ranks 2 --sizes 64K,1M,16M,64M,256M [--repeats 10]

Across hosts (or network namespaces), one process per host, rank 0's address as the master:

    python3 Scripts/peers/torch_gloo_allreduce.py --ranks 2 --rank R --master 10.78.0.1:29600 --sizes 64M
"""
import argparse, os, statistics, time
import torch, torch.distributed as dist, torch.multiprocessing as mp

def parse(text):
    units = {'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30}
    return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)

def run(rank, n, sizes, repeats, port, host='127.0.0.1'):
    os.environ['MASTER_ADDR'], os.environ['MASTER_PORT'] = host, str(port)
    torch.set_num_threads(1)
    dist.init_process_group('gloo', rank=rank, world_size=n)
    if rank == 0: print(f"gloo (torch {torch.__version__}) all-reduce, float32 sum, {n} ranks on loopback")
    for size in sizes:
        x = torch.full((size // 4,), float(rank))
        times = []
        for i in range(repeats + 1):
            dist.barrier()
            t = time.perf_counter(); dist.all_reduce(x); dt = time.perf_counter() - t
            if i: times.append(dt)
        med = statistics.median(times)
        algbw = size / med / 1e9
        if rank == 0: print(f"{size:<12}{med * 1e3:<12.3f}{algbw:<12.3f}{algbw * 2 * (n - 1) / n:<12.3f}")
    dist.destroy_process_group()

if __name__ == '__main__':
    p = argparse.ArgumentParser()
    p.add_argument('--ranks', type=int, default=2)
    p.add_argument('--sizes', default='64K,1M,16M,64M,256M')
    p.add_argument('--repeats', type=int, default=10)
    p.add_argument('--rank', type=int)
    p.add_argument('--master')
    a = p.parse_args()
    if a.rank is not None:
        host, port = a.master.rsplit(':', 1)
        run(a.rank, a.ranks, [parse(s) for s in a.sizes.split(',')], a.repeats, int(port), host)
        raise SystemExit
    mp.spawn(run, args=(a.ranks, [parse(s) for s in a.sizes.split(',')], a.repeats, 29500 + os.getpid() % 1000), nprocs=a.ranks)
