"""Peer figures for `amoeba bench kernels`: PyTorch CPU conv fwd+bwd and numpy/OpenBLAS sgemm at the
same shapes, medians of the same number of repeats. Run:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 Scripts/peers/torch_kernels.py [--threads 1,2]

(needs `pip install 'torch==2.13.0+cpu'`; numpy ships with the system Python). PyTorch tensors are
NCHW here, its native layout; channels_last is also timed for the 3x3 case.
"""
import argparse, statistics, time
import numpy as np
import torch

def median_seconds(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter(); fn(); times.append(time.perf_counter() - t)
    return statistics.median(times)

def conv_case(name, n, h, w, c, kh, kw, repeats, channels_last=False, groups=1):
    x = torch.randn(n, c, h, w, requires_grad=True)
    conv = torch.nn.Conv2d(c, c, (kh, kw), padding=(kh // 2, kw // 2), bias=False, groups=groups)
    if channels_last:
        x = x.detach().to(memory_format=torch.channels_last).requires_grad_(True)
        conv = conv.to(memory_format=torch.channels_last)
    dy = torch.randn(n, c, h, w)
    def step():
        x.grad = None; conv.weight.grad = None
        y = conv(x); y.backward(dy)
    s = median_seconds(step, repeats)
    macs = n * h * w * c * kh * kw * (c // groups)
    return name, s, 3 * 2 * macs / s / 1e9

def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", default="1,2")
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    for t in [int(x) for x in a.threads.split(",")]:
        torch.set_num_threads(t)
        try:
            from threadpoolctl import threadpool_limits  # optional
            limiter = threadpool_limits(t)
        except ImportError:
            limiter = None
        for n in (512, 1024, 2048):
            A = np.random.rand(n, n).astype(np.float32); B = np.random.rand(n, n).astype(np.float32)
            s = median_seconds(lambda: A @ B, a.repeats)
            print(f"numpy sgemm {n}^3 threads={t} (OpenBLAS threads from env) {2*n**3/s/1e9:.1f} GFLOP/s")
            At = torch.from_numpy(A); Bt = torch.from_numpy(B)
            s = median_seconds(lambda: At @ Bt, a.repeats)
            print(f"torch sgemm {n}^3 threads={t} {2*n**3/s/1e9:.1f} GFLOP/s")
        rows = [
            conv_case("conv3x3 64->64 32x32 fwd+bwd", 32, 32, 32, 64, 3, 3, a.repeats),
            conv_case("conv3x3 64->64 32x32 fwd+bwd channels_last", 32, 32, 32, 64, 3, 3, a.repeats, channels_last=True),
            conv_case("conv3x3 64->64 56x56 fwd+bwd", 32, 56, 56, 64, 3, 3, a.repeats),
            conv_case("conv1x7 64->64 28x28 fwd+bwd", 32, 28, 28, 64, 1, 7, a.repeats),
            conv_case("conv7x1 64->64 28x28 fwd+bwd", 32, 28, 28, 64, 7, 1, a.repeats),
            conv_case("depthwise3x3 56x56x64 fwd+bwd", 32, 56, 56, 64, 3, 3, a.repeats, groups=64),
        ]
        for name, s, gf in rows:
            print(f"torch {name} threads={t} median {s*1e3:.2f} ms {gf:.1f} GFLOP/s")

if __name__ == "__main__":
    main()
