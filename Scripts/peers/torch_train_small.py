"""Peer for the non-ImageNet switches: the PyTorch replica of AmoebaNet-D (torch_amoebanet.py)
trained with the reference's recipe — RMSProp as TensorFlow's (ms starts at 1, epsilon 1.0 inside
the root, momentum 0.9), the staircase learning rate with linear warm-up, label smoothing 0.1,
weight decay 4e-5·Σw²/2 on conv and FC kernels, dropout 0.5, BN decay 0.9, evaluation on the
moving averages (0.9999, num_updates) — on a picture folder in ImageNet's raw layout, with the same
two switches as `amoeba train`: --train_preprocessing inception|crop_flip|center, --fc_init
fan_out|zeros. Prints the validation top-1 of the averaged weights.

    python3 Scripts/peers/torch_train_small.py --raw DIR [--train_preprocessing M] [--fc_init I] [--epochs 30] [--lr 0.04]

Needs `pip install 'torch==2.13.0+cpu' pillow tensorflow-cpu`: the preprocessing is the reference's,
written with TensorFlow's image ops (sample_distorted_bounding_box, resize_bilinear, central_crop).
"""
import argparse, math, os, random, sys
import numpy as np
import torch, torch.nn as nn, torch.nn.functional as F
from PIL import Image
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402  (the reference's own image ops)
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)
tf.get_logger().setLevel("ERROR")

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


def central(picture, size):
    """The reference's preprocess_for_eval: central_crop(0.875), resize_bilinear (TF1 sampling)."""
    x = tf.image.central_crop(tf.image.convert_image_dtype(picture, tf.float32), 0.875)
    return tf.compat.v1.image.resize_bilinear(x[None], [size, size], align_corners=False)[0].numpy()


def distorted(picture, mode, size, rng):
    """The reference's preprocess_for_train (fast mode) with TensorFlow's own ops: the whole image as
    the box, sample_distorted_bounding_box (min_object_covered 0.1, aspect 3/4-4/3, area 5-100%, 100
    attempts), crop, resize_bilinear, random flip, the fast YCbCr colour distortion; crop_flip: area
    50-100%, covered 0.5, no colour."""
    x = tf.image.convert_image_dtype(picture, tf.float32)
    begin, extent, _ = tf.image.sample_distorted_bounding_box(
        tf.shape(x), bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]),
        min_object_covered=0.1 if mode == "inception" else 0.5, aspect_ratio_range=(3 / 4, 4 / 3),
        area_range=(0.05, 1.0) if mode == "inception" else (0.5, 1.0), max_attempts=100,
        use_image_if_no_bounding_boxes=True)
    x = tf.compat.v1.image.resize_bilinear(tf.slice(x, begin, extent)[None], [size, size], align_corners=False)[0].numpy()
    if rng.random() < 0.5:
        x = x[:, ::-1]
    if mode == "inception":
        br, cb, cr = rng.uniform(-32 / 255, 32 / 255), rng.uniform(-0.1, 0.1), rng.uniform(-0.1, 0.1)
        x = np.clip(x + np.array([1.402 * cr + br, -0.344136 * cb - 0.714136 * cr + br, 1.772 * cb + br], np.float32), 0, 1)
    return x


def preprocess(picture, mode, size, rng):
    return central(picture, size) if mode == "center" else distorted(picture, mode, size, rng)


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
    tf.random.set_seed(a.seed)
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
            x = torch.from_numpy(np.stack([preprocess(pic, a.train_preprocessing, a.image_size, rng) for pic, _ in batch])).permute(0, 3, 1, 2) * 2 - 1
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
        x = torch.from_numpy(np.stack([central(pic, a.image_size) for pic, _ in val])).permute(0, 3, 1, 2) * 2 - 1
        y = torch.tensor([label for _, label in val])
        top1 = (model(x)[0].argmax(1) == y).float().mean().item()
    print(f"torch {torch.__version__}: {len(train)} training / {len(val)} validation pictures, {classes} classes, "
          f"{a.train_preprocessing}, fc_init {a.fc_init}, {step} steps of {a.batch}, lr {a.lr}: "
          f"first loss {first_loss:.2f}, top-1 {top1:.4f} (moving-average weights)")


if __name__ == "__main__":
    main()
