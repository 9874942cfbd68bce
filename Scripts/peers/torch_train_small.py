"""Peer for the non-ImageNet switches: the PyTorch replica of AmoebaNet-D (torch_amoebanet.py)
trained with the reference's recipe — RMSProp as TensorFlow's (ms starts at 1, epsilon 1.0 inside
the root, momentum 0.9), the staircase learning rate with linear warm-up, label smoothing 0.1,
weight decay 4e-5·Σw²/2 on conv and FC kernels, dropout 0.5, BN decay 0.9, evaluation on the
moving averages (0.9999, num_updates) — on a picture folder in ImageNet's raw layout, with the same
two switches as `amoeba train`: --train_preprocessing inception|crop_flip|center, --fc_init
fan_out|zeros. Prints the validation top-1 of the averaged weights.

    python3 Scripts/peers/torch_train_small.py --raw DIR [--train_preprocessing M] [--fc_init I] [--epochs 30] [--lr 0.04]

Needs `pip install 'torch==2.13.0+cpu' pillow`.
"""
import argparse, math, os, random, sys
import numpy as np
import torch, torch.nn as nn, torch.nn.functional as F
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
from torch_amoebanet import AmoebaNetD, Conv  # noqa: E402


def load(raw):
    synsets = sorted(os.listdir(f"{raw}/train"))
    val_synsets = open(f"{raw}/synset_labels.txt").read().split()
    labels = {s: k + 1 for k, s in enumerate(sorted(set(synsets) | set(val_synsets)))}
    train = [(np.array(Image.open(f"{raw}/train/{s}/{f}").convert("RGB")), labels[s])
             for s in synsets for f in sorted(os.listdir(f"{raw}/train/{s}"))]
    files = sorted(os.listdir(f"{raw}/validation"))
    val = [(np.array(Image.open(f"{raw}/validation/{f}").convert("RGB")), labels[s]) for f, s in zip(files, val_synsets)]
    return train, val, len(labels) + 1


def resize(picture, box, size, flip):
    top, left, h, w = box
    x = torch.from_numpy(picture[top:top + h, left:left + w]).permute(2, 0, 1).float()[None] / 255
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)[0]
    return x.flip(2) if flip else x


def central(picture, size):
    h, w = picture.shape[:2]
    ch, cw = int(h * 0.875), int(w * 0.875)
    return resize(picture, ((h - ch) // 2, (w - cw) // 2, ch, cw), size, False)


def distorted(picture, size, area, rng, jitter):
    h, w = picture.shape[:2]
    for _ in range(100):
        a = rng.uniform(*area) * h * w
        aspect = rng.uniform(3 / 4, 4 / 3)
        cw, ch = int(round(math.sqrt(a * aspect))), int(round(math.sqrt(a / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            box = (rng.randint(0, h - ch), rng.randint(0, w - cw), ch, cw)
            break
    else:
        box = (0, 0, h, w)
    x = resize(picture, box, size, rng.random() < 0.5)
    if jitter:
        x = (x + rng.uniform(-32 / 255, 32 / 255)).clamp(0, 1)
    return x


def preprocess(picture, mode, size, rng):
    if mode == "center":
        return central(picture, size)
    return distorted(picture, size, (0.05, 1.0) if mode == "inception" else (0.5, 1.0), rng, mode == "inception")


def reference_init(model, fc_init):
    """variance_scaling_initializer(FAN_OUT): truncated normal, stddev √(1.3·2/fan_out); biases 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.trunc_normal_(m.weight, std=math.sqrt(2.6 / fan_out), a=-2 * math.sqrt(2.6 / fan_out), b=2 * math.sqrt(2.6 / fan_out))
        elif isinstance(m, nn.Linear):
            std = math.sqrt(2.6 / m.out_features)
            if fc_init == "zeros":
                nn.init.zeros_(m.weight)
            else:
                nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)
            nn.init.zeros_(m.bias)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--raw", required=True)
    p.add_argument("--train_preprocessing", default="inception", choices=["inception", "crop_flip", "center"])
    p.add_argument("--fc_init", default="fan_out", choices=["fan_out", "zeros"])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--lr", type=float, default=0.04)
    p.add_argument("--lr_decay_value", type=float, default=0.9)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--image_size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = random.Random(a.seed)
    train, val, classes = load(a.raw)
    model = AmoebaNetD(3, 16, a.image_size, classes, False)
    reference_init(model, a.fc_init)
    params = list(model.parameters())
    decayed = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    ms = [torch.ones_like(w) for w in params]
    mom = [torch.zeros_like(w) for w in params]
    ema = {k: v.detach().clone().float() for k, v in model.state_dict().items() if v.dtype.is_floating_point}
    per_epoch_lr = len(train) // a.batch
    total = a.epochs * ((len(train) + a.batch - 1) // a.batch)
    warmup = int(0.01 * per_epoch_lr * a.epochs)
    step, first_loss = 0, None
    for epoch in range(a.epochs):
        order = list(range(len(train)))
        rng.shuffle(order)
        for b in range(0, len(order), a.batch):
            if step >= total:
                break
            batch = [train[i] for i in order[b:b + a.batch]]
            x = torch.stack([preprocess(pic, a.train_preprocessing, a.image_size, rng) for pic, _ in batch]) * 2 - 1
            y = torch.tensor([label for _, label in batch])
            lr = a.lr * step / warmup if step < warmup else a.lr * a.lr_decay_value ** (step // per_epoch_lr)
            lr = max(lr, 1e-4 * a.lr)
            model.train()
            logits, _ = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=0.1) + 4e-5 * sum((w * w).sum() for w in decayed) / 2
            if first_loss is None:
                first_loss = loss.item()
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():
                for w, g, s, m in zip(params, grads, ms, mom):
                    s.mul_(0.9).add_(0.1 * g * g)
                    m.mul_(0.9).add_(lr * g / torch.sqrt(s + 1.0))
                    w.sub_(m)
                step += 1
                decay = min(0.9999, (1 + step) / (10 + step))
                for k, v in model.state_dict().items():
                    if k in ema:
                        ema[k].mul_(decay).add_((1 - decay) * v.float())
    model.load_state_dict({**model.state_dict(), **ema})
    model.eval()
    with torch.no_grad():
        x = torch.stack([central(pic, a.image_size) for pic, _ in val]) * 2 - 1
        y = torch.tensor([label for _, label in val])
        top1 = (model(x)[0].argmax(1) == y).float().mean().item()
    print(f"torch {torch.__version__}: {len(train)} training / {len(val)} validation pictures, {classes} classes, "
          f"{a.train_preprocessing}, fc_init {a.fc_init}, {step} steps of {a.batch}, lr {a.lr}: "
          f"first loss {first_loss:.2f}, top-1 {top1:.4f} (moving-average weights)")


if __name__ == "__main__":
    main()
