"""Peer for `amoeba bench train`: AmoebaNet-D op for op in PyTorch (CPU, fp32, channels_last), trained
with RMSProp (rho 0.9, momentum 0.9, eps 1.0), label smoothing 0.1, aux head (weight 0.4), weight
decay 4e-5 in the loss and an EMA of the weights, on random data. TensorFlow SAME padding is
reproduced with explicit asymmetric pads. Prints images/s (median, best) and peak RSS.

    python3 Scripts/peers/torch_amoebanet.py --preset bench-small|tiny [--steps N] [--threads 2]

Same presets as `amoeba bench train`. Needs `pip install 'torch==2.13.0+cpu'`.
"""
import argparse, resource, statistics, time
import torch, torch.nn as nn, torch.nn.functional as F

NORMAL = (['1x1', 'max_pool_3x3', 'none', '1x7_7x1', '1x1', '1x7_7x1', 'max_pool_3x3', 'none', 'avg_pool_3x3', '1x1'],
          [1, 1, 1, 0, 0, 0, 2, 2, 1, 5], [0, 1, 1, 0, 0, 1, 0])
REDUCTION = (['max_pool_2x2', 'max_pool_3x3', 'none', '3x3', '1x7_7x1', 'max_pool_3x3', 'none', 'max_pool_2x2', 'avg_pool_3x3', '1x1'],
             [0, 0, 2, 1, 2, 2, 3, 1, 2, 3], [1, 1, 1, 1, 0, 0, 0])

def same_pads(size, k, s):
    out = (size + s - 1) // s
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2

class Conv(nn.Module):
    """TF conv2d: SAME (extra pad bottom/right) or VALID, no bias."""
    def __init__(self, cin, cout, k, s=(1, 1), padding='SAME'):
        super().__init__()
        self.k, self.s, self.padding = (k, k) if isinstance(k, int) else k, (s, s) if isinstance(s, int) else s, padding
        self.conv = nn.Conv2d(cin, cout, self.k, self.s, bias=False)
    def forward(self, x):
        if self.padding == 'SAME':
            t, b = same_pads(x.shape[2], self.k[0], self.s[0]); l, r = same_pads(x.shape[3], self.k[1], self.s[1])
            if t or b or l or r: x = F.pad(x, (l, r, t, b))
        return self.conv(x)

def bn(c): return nn.BatchNorm2d(c, eps=1.001e-5, momentum=0.1)

def pool(kind, x, k, s):
    if kind == 'max':
        t, b = same_pads(x.shape[2], k, s); l, r = same_pads(x.shape[3], k, s)
        return F.max_pool2d(F.pad(x, (l, r, t, b), value=float('-inf')), k, s)
    assert s == 1 and k % 2 == 1
    return F.avg_pool2d(x, k, 1, padding=k // 2, count_include_pad=False)

class Op(nn.Module):
    def __init__(self, name, cin, f, stride):
        super().__init__()
        self.name, self.stride, self.f = name, stride, f
        if name in ('3x3', '1x7_7x1'):
            r = f // 4
            self.pre = nn.Sequential(nn.ReLU(), Conv(cin, r, 1), bn(r), nn.ReLU())
            if name == '3x3': self.core = nn.Sequential(Conv(r, r, 3, stride), bn(r))
            else: self.core = nn.Sequential(Conv(r, r, (1, 7), (1, stride)), bn(r), nn.ReLU(), Conv(r, r, (7, 1), (stride, 1)), bn(r))
            self.post = nn.Sequential(nn.ReLU(), Conv(r, f, 1), bn(f))
        elif name in ('none', '1x1'):
            self.proj = None
            if stride > 1 or name == '1x1' or cin != f: self.proj = nn.Sequential(nn.ReLU(), Conv(cin, f, 1, stride), bn(f))
        else:
            self.kind, self.k = name.split('_')[0], int(name[-1])
            self.proj = nn.Sequential(Conv(cin, f, 1), bn(f)) if cin != f else None
    def forward(self, x):
        if self.name in ('3x3', '1x7_7x1'): return self.post(self.core(self.pre(x)))
        if self.name in ('none', '1x1'): return self.proj(x) if self.proj is not None else x
        x = pool(self.kind, x, self.k, self.stride)
        return self.proj(x) if self.proj is not None else x

class FactorizedReduction(nn.Module):
    def __init__(self, cin, f):
        super().__init__()
        self.p1, self.p2, self.bn = Conv(cin, f // 2, 1), Conv(cin, f // 2, 1), bn(f)
    def forward(self, x):
        x = F.relu(x)
        a = self.p1(x[:, :, ::2, ::2])
        b = self.p2(F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:][:, :, ::2, ::2])
        return self.bn(torch.cat([a, b], 1))

class Cell(nn.Module):
    def __init__(self, spec, cin, cprev, prev_size, cur_size, f, stride):
        super().__init__()
        ops, idx, used = spec
        self.idx, self.used = idx, used
        if cprev is None: self.prev = None
        elif prev_size != cur_size: self.prev = FactorizedReduction(cprev, f)
        elif cprev != f: self.prev = nn.Sequential(nn.ReLU(), Conv(cprev, f, 1), bn(f))
        else: self.prev = nn.Identity()
        self.base = nn.Sequential(nn.ReLU(), Conv(cin, f, 1), bn(f))
        chans = [f, f if cprev is not None else cin]
        self.ops = nn.ModuleList()
        for i in range(10):
            self.ops.append(Op(ops[i], chans[idx[i]], f, stride if idx[i] < 2 else 1))
            if i % 2 == 1: chans.append(f)
        self.out_channels = sum(c for c, u in zip(chans, used) if not u)
    def forward(self, x, prev):
        h1 = x if self.prev is None and prev is None else self.prev(prev if prev is not None else x)
        states = [self.base(x), h1]
        for k in range(5):
            states.append(self.ops[2 * k](states[self.idx[2 * k]]) + self.ops[2 * k + 1](states[self.idx[2 * k + 1]]))
        return torch.cat([s for s, u in zip(states, self.used) if not u], 1)

class AmoebaNetD(nn.Module):
    def __init__(self, num_cells, F_, image, classes, aux):
        super().__init__()
        self.stem = nn.Sequential(Conv(3, 32, 3, 2, 'VALID'), bn(32))
        size = (image - 3) // 2 + 1
        cells, sizes, chans = [], [None, size], [None, 32]
        reductions = [int(k / 3 * num_cells) for k in (1, 2)]
        plan = [('stem', REDUCTION, 0.25, 2), ('stem', REDUCTION, 0.5, 2)]
        scale = 1.0
        for c in range(num_cells):
            if c in reductions: scale *= 2; plan.append(('red', REDUCTION, scale, 2))
            plan.append(('normal', NORMAL, scale, 1))
        self.aux_after = len(plan) - 1 - (num_cells - reductions[1]) - 0  # index of cell int(2n/3)-1 in plan
        self.aux_after = [i for i, p in enumerate(plan) if p[0] == 'normal'][reductions[1] - 1]
        for kind, spec, sc, stride in plan:
            f = int(F_ * sc)
            cur = sizes[-1]; out = (cur + stride - 1) // stride
            cell = Cell(spec, chans[-1], chans[-2], sizes[-2], cur, f, stride)
            cells.append(cell); chans.append(cell.out_channels); sizes.append(out)
        self.cells = nn.ModuleList(cells)
        self.aux = None
        if aux:
            c, s = chans[self.aux_after + 2], sizes[self.aux_after + 2]
            k = (s - 5) // 3 + 1
            self.aux = nn.Sequential(nn.ReLU(), nn.AvgPool2d(5, 3), Conv(c, 51, 1), bn(51), nn.ReLU(),
                                     Conv(51, 307, k, 1, 'VALID'), bn(307), nn.ReLU(), nn.Flatten(), nn.Linear(307, classes))
        self.fc = nn.Linear(chans[-1], classes)
        self.drop = nn.Dropout(0.5)
    def forward(self, x):
        x = self.stem(x)
        prev, aux = None, None
        for i, cell in enumerate(self.cells):
            x, prev = cell(x, prev), x
            if self.aux is not None and i == self.aux_after and self.training: aux = self.aux(x)
        return self.fc(self.drop(F.relu(x).mean((2, 3)))), aux

def main():
    p = argparse.ArgumentParser()
    p.add_argument('--preset', default='tiny')
    p.add_argument('--steps', type=int, default=10)
    p.add_argument('--threads', type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    cells, F_, image, batch, classes, aux = {'bench-small': (6, 64, 128, 32, 1001, True), 'tiny': (3, 16, 32, 64, 10, False)}[a.preset]
    model = AmoebaNetD(cells, F_, image, classes, aux).to(memory_format=torch.channels_last)
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.RMSprop(model.parameters(), lr=0.01, alpha=0.9, eps=1.0, momentum=0.9)
    ema = [p.detach().clone() for p in model.parameters()]
    decayed = [p for n, p in model.named_parameters() if p.dim() > 1]
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    x = (torch.rand(batch, 3, image, image) * 2 - 1).to(memory_format=torch.channels_last)
    y = torch.randint(0, classes, (batch,))
    times = []
    for step in range(a.steps):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        logits, aux_logits = model(x)
        loss = loss_fn(logits, y) + 4e-5 * sum((w * w).sum() for w in decayed) / 2
        if aux_logits is not None: loss = loss + 0.4 * loss_fn(aux_logits, y)
        loss.backward()
        opt.step()
        with torch.no_grad():
            d = min(0.9999, (1 + step) / (10 + step))
            torch._foreach_lerp_(ema, list(model.parameters()), 1 - d)
        times.append(time.perf_counter() - t)
    times = sorted(times[1:])
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"torch {torch.__version__} preset {a.preset}: {params} parameters, batch {batch}, {a.threads} threads")
    print(f"images/s median {batch / statistics.median(times):.1f} best {batch / times[0]:.1f} over {len(times)} steps; peak RSS {rss:.1f} MiB")

if __name__ == '__main__':
    main()
