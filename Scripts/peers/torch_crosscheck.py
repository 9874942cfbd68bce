"""Independent check of the Swift model, loss, gradients and update: AmoebaNet-D written again in
PyTorch from tensorflow/tpu's amoeba_net (model_builder.py, network_utils.py) and the spec
(../shared/reference/amoebanet.md), functional, every variable looked up by the reference's own
name in an `amoeba export` file, computed in float64.

    python3 Scripts/peers/torch_crosscheck.py --weights W.safetensors --inputs X.f32 --swift R.safetensors

W: `amoeba export` (trainable variables and batch-norm moving statistics), X: `amoeba data dump`
(float32 [N, S, S, 3]), R: `amoeba crosscheck` on the same W and X (its metadata holds the model
flags, the labels and the step). Compares (`errors` says how: max|swift - torch| over the tensor
relative to its largest value) the evaluation logits; one training step's total loss and cross-entropy, the gradient of every
trainable variable, and every state tensor after the step (weights, RMSProp slots, batch-norm
moving statistics, moving averages). Dropout and drop-path use the masks R says the step drew,
after checking each is 0 or 1/keep and that R drew one exactly where the reference applies one.
PyTorch's own float32 run of the same is printed beside each figure, for scale. Exits 1 naming
every tensor over its tolerance. Needs
`pip install 'torch==2.13.0+cpu'`.
"""
import argparse, json, math, struct, sys
import numpy
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)

# amoeba_net_d (tensorflow/tpu model_specs.py): operations, hiddenstate_indices, used_hiddenstates.
NORMAL = (['1x1', 'max_pool_3x3', 'none', '1x7_7x1', '1x1', '1x7_7x1', 'max_pool_3x3', 'none', 'avg_pool_3x3', '1x1'],
          [1, 1, 1, 0, 0, 0, 2, 2, 1, 5], [0, 1, 1, 0, 0, 1, 0])
REDUCTION = (['max_pool_2x2', 'max_pool_3x3', 'none', '3x3', '1x7_7x1', 'max_pool_3x3', 'none', 'max_pool_2x2', 'avg_pool_3x3', '1x1'],
             [0, 0, 2, 1, 2, 2, 3, 1, 2, 3], [1, 1, 1, 1, 0, 0, 0])

# Tolerances (max|a - b| / max|b| per tensor) for float32 against float64 over a whole network.
AMBIGUOUS = 1e-4  # of the largest |value| at a ReLU
# The optimizer slots are functions of the gradient (ms = ρ·ms + (1 − ρ)·g², mom = lr·g/√(ms + ε), or g):
# they carry its error.
TOLERANCE = {'eval/logits': 1e-4, 'loss': 1e-5, 'grad': 2e-3, 'after/RMSProp': 2e-3, 'after/RMSProp_1': 2e-3, 'after/Momentum': 2e-3, 'after': 1e-4}


def read_safetensors(path):
    data = open(path, 'rb').read()
    n = struct.unpack('<Q', data[:8])[0]
    header = json.loads(data[8:8 + n])
    meta = header.pop('__metadata__', {})
    out = {}
    for name, h in header.items():
        assert h['dtype'] in ('F32', 'U8'), f'{path}: {name} is {h["dtype"]}, expected F32 or U8'
        b, e = h['data_offsets']
        t = torch.frombuffer(bytearray(data[8 + n + b:8 + n + e]), dtype=torch.float32 if h['dtype'] == 'F32' else torch.uint8)
        out[name] = t.reshape(h['shape']) if h['shape'] else t.reshape(())
    return out, meta


def same_pads(size, k, s):
    """TensorFlow SAME: out = ceil(size/s), the odd pixel of padding at the bottom/right."""
    total = max((-(-size // s) - 1) * s + k - size, 0)
    return total // 2, total - total // 2


class Net:
    """The network as tensorflow/tpu builds it, over a dict of variables by scope name."""

    def __init__(self, variables, flags, training, masks=None, decisions=None, choices=None):
        self.v, self.flags, self.training = variables, flags, training
        self.masks = masks or {}
        # The Swift step's ReLU decisions [(NHWC shape, bool)] and max-pool choices [(output NHWC
        # shape, window tap)], taken where ours is within AMBIGUOUS of the kink (a value near zero,
        # two taps nearly equal), where float32 rounding may go either way.
        self.decisions, self.taken, self.flips = decisions, set(), 0
        self.choices, self.taken_pools = choices, set()
        self.used, self.used_masks, self.moments = set(), set(), {}
        self.eps = max(float(flags['batch_norm_epsilon']), 1.001e-5)  # tf.nn.fused_batch_norm's floor
        self.drop_path_on = training and float(flags['drop_connect_keep_prob']) < 1

    def relu(self, x):
        if self.decisions is None:
            return F.relu(x)
        nhwc = x.detach().permute(0, 2, 3, 1) if x.dim() == 4 else x.detach()
        p = nhwc.reshape(-1)
        ambiguous = p.abs() <= AMBIGUOUS * p.abs().max()
        ours = p > 0
        for j, (shape, theirs) in enumerate(self.decisions):
            if j in self.taken or shape != tuple(nhwc.shape) or ((theirs != ours) & ~ambiguous).any():
                continue
            self.taken.add(j)
            self.flips += int((theirs != ours).sum())
            mask = theirs.reshape(shape).to(x.dtype)
            return x * (mask.permute(0, 3, 1, 2) if x.dim() == 4 else mask)
        raise KeyError(f'no ReLU of the Swift step has the decisions of ReLU {len(self.taken)} here (shape {tuple(nhwc.shape)}), '
                       f'or {int(ambiguous.sum())} values within {AMBIGUOUS:g} of zero aside')

    def var(self, name):
        if name not in self.v:
            raise KeyError(f'the export has no variable {name}, which the reference creates here')
        self.used.add(name)
        return self.v[name]

    # slim.conv2d (no bias; the arg_scope's activation_fn=None) on NCHW; kernels are HWIO.
    def conv(self, x, scope, stride=(1, 1), padding='SAME'):
        w = self.var(scope + '/weights')
        kh, kw = w.shape[0], w.shape[1]
        if padding == 'SAME':
            t, b = same_pads(x.shape[2], kh, stride[0]); l, r = same_pads(x.shape[3], kw, stride[1])
            x = F.pad(x, (l, r, t, b))
        return F.conv2d(x, w.permute(3, 2, 0, 1), stride=stride)

    def batch_norm(self, x, scope):
        gamma, beta = self.var(scope + '/gamma'), self.var(scope + '/beta')
        if self.training:
            mean = x.mean((0, 2, 3))
            var = x.var((0, 2, 3), unbiased=False)
            self.moments[scope] = (mean, var, x.numel() // x.shape[1])
        else:
            mean, var = self.var(scope + '/moving_mean'), self.var(scope + '/moving_variance')
        shape = (1, -1, 1, 1)
        return (x - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps) * gamma.view(shape) + beta.view(shape)

    def mask(self, name, like):
        if name not in self.masks:
            raise KeyError(f'the Swift step drew no mask {name}, where the reference applies one')
        self.used_masks.add(name)
        return self.masks[name]

    def pool(self, x, kind, k, s):
        t, b = same_pads(x.shape[2], k, s); l, r = same_pads(x.shape[3], k, s)
        if kind == 'max' and self.choices is not None:
            return self.max_pool_as_taken(F.pad(x, (l, r, t, b), value=-math.inf), k, s)
        if kind == 'max':
            return F.max_pool2d(F.pad(x, (l, r, t, b), value=-math.inf), k, s)
        if kind == 'min':
            return -F.max_pool2d(F.pad(-x, (l, r, t, b), value=-math.inf), k, s)
        # SAME average pooling divides by the number of real (unpadded) pixels in the window.
        sums = F.avg_pool2d(F.pad(x, (l, r, t, b)), k, s) * (k * k)
        counts = F.avg_pool2d(F.pad(torch.ones_like(x[:1, :1]), (l, r, t, b)), k, s) * (k * k)
        return sums / counts

    def max_pool_as_taken(self, padded, k, s):
        n, c = padded.shape[:2]
        oh, ow = (padded.shape[2] - k) // s + 1, (padded.shape[3] - k) // s + 1
        taps = F.unfold(padded, k, stride=s).view(n, c, k * k, oh * ow)
        with torch.no_grad():
            ours = taps.argmax(2)  # the first of equals, as TensorFlow's and our gradient take
            top = taps.topk(2, dim=2).values
            finite = padded[torch.isfinite(padded)]
            ambiguous = (top[:, :, 0] - top[:, :, 1]) <= AMBIGUOUS * finite.abs().max()
        shape = (n, oh, ow, c)
        for j, (site_shape, theirs) in enumerate(self.choices):
            if j in self.taken_pools or site_shape != shape:
                continue
            theirs = theirs.reshape(shape).permute(0, 3, 1, 2).reshape(n, c, oh * ow).long()
            if ((theirs != ours) & ~ambiguous).any():
                continue
            self.taken_pools.add(j)
            self.flips += int((theirs != ours).sum())
            return taps.gather(2, theirs.unsqueeze(2)).view(n, c, oh, ow)
        raise KeyError(f'no max pool of the Swift step chose the taps of max pool {len(self.taken_pools)} here (output {shape})')

    def factorized_reduction(self, x, scope, filters, stride):
        if stride == 1:
            return self.batch_norm(self.conv(x, scope + '/path_conv'), scope + '/path_bn')
        path1 = self.conv(x[:, :, ::stride, ::stride], scope + '/path1_conv')
        path2 = F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:][:, :, ::stride, ::stride]
        path2 = self.conv(path2, scope + '/path2_conv')
        return self.batch_norm(torch.cat([path1, path2], 1), scope + '/final_path_bn')

    def conv_operation(self, x, scope, op, stride, filters):
        if op == '3x3':
            return self.conv(x, scope + '/3x3', (stride, stride))
        if op == '1x7_7x1':
            x = self.conv(x, scope + '/1x7', (1, stride))
            x = self.relu(self.batch_norm(x, scope + '/bn_1x7_7x1'))
            return self.conv(x, scope + '/7x1', (stride, 1))
        raise NotImplementedError(op)

    def operation(self, x, scope, op, stride, from_original_input, filters):
        if stride > 1 and not from_original_input:
            stride = 1
        inputs = x.shape[1]
        if op in ('3x3', '1x7_7x1'):
            reduced = int(filters / 4)
            if reduced < 1:
                x = self.batch_norm(self.conv_operation(self.relu(x), scope, op, stride, filters), scope + '/bn')
            else:
                x = self.batch_norm(self.conv(self.relu(x), scope + '/pre_1x1'), scope + '/pre_bn')
                x = self.batch_norm(self.conv_operation(self.relu(x), scope, op, stride, reduced), scope + '/bn')
                x = self.batch_norm(self.conv(self.relu(x), scope + '/post_1x1'), scope + '/post_bn')
        elif op in ('none', '1x1'):
            if stride > 1 or op == '1x1' or inputs != filters:
                x = self.batch_norm(self.conv(self.relu(x), scope + '/1x1', (stride, stride)), scope + '/bn_1')
        elif 'pool' in op:
            kind, k = op.split('_')[0], int(op.split('_')[-1].split('x')[0])
            x = self.pool(x, kind, k, stride)
            if inputs != filters:
                x = self.batch_norm(self.conv(x, scope + '/1x1'), scope + '/bn_1')
        else:
            raise NotImplementedError(op)
        if op != 'none' and self.drop_path_on:
            x = x * self.mask(scope + '/drop_path', x).view(-1, 1, 1, 1)
        return x

    def cell(self, x, scope, spec, filter_scaling, stride, prev):
        ops, indices, used = spec
        filters = int(int(self.flags['reduction_size']) * filter_scaling)
        # _reduce_prev_layer
        if prev is None:
            prev = x
        elif prev.shape[2] != x.shape[2]:
            prev = self.factorized_reduction(self.relu(prev), scope, filters, 2)
        elif prev.shape[1] != filters:
            prev = self.batch_norm(self.conv(self.relu(prev), scope + '/prev_1x1'), scope + '/prev_bn')
        states = [self.batch_norm(self.conv(self.relu(x), scope + '/1x1'), scope + '/beginning_bn'), prev]
        for k in range(5):
            a, b = indices[2 * k], indices[2 * k + 1]
            left = self.operation(states[a], f'{scope}/comb_iter_{k}/left', ops[2 * k], stride, a < 2, filters)
            right = self.operation(states[b], f'{scope}/comb_iter_{k}/right', ops[2 * k + 1], stride, b < 2, filters)
            states.append(left + right)
        final = states[-1]
        for i, u in enumerate(used):
            s = states[i]
            if not u and (s.shape[2] != final.shape[2] or s.shape[1] != final.shape[1]):
                states[i] = self.factorized_reduction(s, f'{scope}/cell_output/reduction_{i}', final.shape[1],
                                                      2 if s.shape[2] != final.shape[2] else 1)
        return torch.cat([s for s, u in zip(states, used) if not u], 1)

    def aux_head(self, x, scope):
        x = F.avg_pool2d(self.relu(x), 5, 3)
        x = self.relu(self.batch_norm(self.conv(x, scope + '/aux_logits/proj'), scope + '/aux_logits/aux_bn0'))
        x = self.relu(self.batch_norm(self.conv(x, scope + '/aux_logits/Conv', padding='VALID'), scope + '/aux_logits/aux_bn1'))
        return x.flatten(1) @ self.var(scope + '/aux_logits/FC/weights') + self.var(scope + '/aux_logits/FC/biases')

    def __call__(self, images):
        f = self.flags
        num_cells = int(f['num_cells'])
        x = images.permute(0, 3, 1, 2)
        net = self.batch_norm(self.conv(x, 'stem/conv0', (2, 2), 'VALID'), 'stem/conv0_bn')
        outputs = [None, net]
        scaling = 1.0 / 4
        for c in range(2):
            net = self.cell(net, f'cell_stem_{c}', REDUCTION, scaling, 2, outputs[-2])
            outputs.append(net)
            scaling *= 2
        reductions = [int(k / 3 * num_cells) for k in (1, 2)]
        scaling, aux = 1.0, None
        for c in range(num_cells):
            if c in reductions:
                scaling *= 2
                net = self.cell(net, f'reduction_cell_{reductions.index(c)}', REDUCTION, scaling, 2, outputs[-2])
                outputs.append(net)
            net = self.cell(net, f'cell_{c}', NORMAL, scaling, 1, outputs[-2])
            if f['use_aux_head'] == 'true' and self.training and c == reductions[1] - 1:
                aux = self.aux_head(net, f'aux_{c}')
            outputs.append(net)
        net = self.relu(net).mean((2, 3))
        if self.training and float(f['dense_dropout_keep_prob']) < 1:
            net = net * self.mask('final_layer/dropout', net)
        return net @ self.var('final_layer/FC/weights') + self.var('final_layer/FC/biases'), aux


def smoothed_cross_entropy(logits, labels, smoothing):
    """tf.losses.softmax_cross_entropy with label_smoothing, averaged over the batch."""
    classes = logits.shape[1]
    target = F.one_hot(labels, classes).to(logits.dtype) * (1 - smoothing) + smoothing / classes
    return -(target * F.log_softmax(logits, 1)).sum(1).mean()


def compute(exported, images, labels, flags, swift_masks, keep, lr, dtype, decisions=None, choices=None):
    """Evaluation logits, then one training step from the exported weights: losses, gradients
    and every state tensor after the update, in `dtype`; with the Swift step's ReLU `decisions`
    where ours are ambiguous, when given."""
    weights = {k: v.to(dtype) for k, v in exported.items()}
    images = images.to(dtype)
    statistics = {k for k in weights if k.endswith('/moving_mean') or k.endswith('/moving_variance')}
    trainable = [k for k in weights if k not in statistics]
    out, problems = {}, []
    with torch.no_grad():
        net = Net(weights, flags, training=False)
        out['eval/logits'], _ = net(images)
    unused = set(weights) - net.used - {k for k in weights if k.startswith('aux_')}
    if unused:
        problems.append(f'the export has variables the reference evaluation network does not create: {sorted(unused)[:5]}')

    params = {k: weights[k].clone().requires_grad_(k in trainable) for k in weights}
    masks = {k: v.to(dtype) for k, v in swift_masks.items()}
    net = Net(params, flags, training=True, masks=masks, decisions=decisions, choices=choices)
    logits, aux = net(images)
    if decisions is not None:
        if len(net.taken) != len(decisions) or len(net.taken_pools) != len(choices):
            problems.append(f'the Swift step has {len(decisions)} ReLUs and {len(choices)} max pools, '
                            f'the reference {len(net.taken)} and {len(net.taken_pools)}')
        out['flips'] = net.flips
    cross_entropy = smoothed_cross_entropy(logits, labels, 0.1)
    total = cross_entropy
    if aux is not None:
        total = total + 0.4 * smoothed_cross_entropy(aux, labels, 0.1)
    if set(masks) - net.used_masks:
        problems.append(f'the Swift step drew masks the reference has no place for: {sorted(set(masks) - net.used_masks)[:5]}')
    # An export from a run with the aux head holds its variables; a step without it leaves them be.
    trainable = [k for k in trainable if k in net.used]
    statistics = {k for k in statistics if k.rsplit('/', 1)[0] in net.moments}
    decayed = [k for k in trainable if k.endswith('weights')]  # conv, separable and FC kernels, not BN or biases
    total = total + float(flags['weight_decay']) * sum((params[k] ** 2).sum() / 2 for k in decayed)
    out['loss/total'], out['loss/cross_entropy'] = total.detach(), cross_entropy.detach()
    grads = torch.autograd.grad(total, [params[k] for k in trainable])
    for name, g in zip(trainable, grads):
        out['grad/' + name] = g

    # The update: TensorFlow's ApplyRMSProp (ms starts at 1, mom at 0), the BN moving statistics
    # (assign_moving_average, Bessel-corrected variance), then ExponentialMovingAverage with
    # num_updates = the incremented global step, over the trainable variables and the statistics.
    decay, momentum, eps = 0.9, 0.9, 1.0
    after = {}
    with torch.no_grad():
        for name, g in zip(trainable, grads):
            w = weights[name]
            if flags['optimizer'] == 'rmsprop':
                ms = 1 + (g * g - 1) * (1 - decay)
                mom = lr * g / torch.sqrt(ms + eps)
                after[name], after[name + '/RMSProp'], after[name + '/RMSProp_1'] = w - mom, ms, mom
            elif flags['optimizer'] == 'momentum':
                after[name], after[name + '/Momentum'] = w - lr * g, g
            else:
                after[name] = w - lr * g
        bn_decay = float(flags['batch_norm_decay'])
        for scope, (mean, var, count) in net.moments.items():
            for stat, value in (('moving_mean', mean), ('moving_variance', var * count / max(count - 1, 1))):
                moving = weights[f'{scope}/{stat}']
                after[f'{scope}/{stat}'] = moving - (moving - value) * (1 - bn_decay)
        updates = int(flags['global_step']) + 1
        ema_decay = min(float(flags['moving_average_decay']), (1 + updates) / (10 + updates))
        for name in trainable + sorted(statistics):
            shadow = weights[name]
            after[name + '/ExponentialMovingAverage'] = shadow - (shadow - after[name]) * (1 - ema_decay)
    for name, value in after.items():
        out['after/' + name] = value
    return out, problems, len(trainable)


def group(name):
    """Tensors compared on a common scale: the logits, the losses, the gradients, and each kind of
    state tensor (variables, each optimizer slot, moving statistics, moving averages)."""
    if not name.startswith('after/'):
        return name.split('/')[0] if '/' in name else name
    last = name.split('/')[-1]
    if last in ('RMSProp', 'RMSProp_1', 'Momentum', 'ExponentialMovingAverage', 'moving_mean', 'moving_variance'):
        return 'after/' + last
    return 'after/variable'


def errors(values, reference):
    """max|a - b| over the tensor, divided by its own largest |b| or, when that is below 1% of the
    largest in its group, by that 1%: a weight just before a batch norm with one input channel
    has a gradient that is zero but for epsilon (the norm undoes its scale), a sum that cancels
    almost exactly, and its error relative to itself says nothing."""
    scale = {}
    for name, t in reference.items():
        scale[group(name)] = max(scale.get(group(name), 0.0), t.abs().max().item())
    out = {}
    for name, t in reference.items():
        a, b = values[name].to(torch.float64).reshape(-1), t.detach().to(torch.float64).reshape(-1)
        assert a.shape == b.shape, f'{name}: shape {tuple(values[name].shape)} vs {tuple(t.shape)}'
        floor = max(b.abs().max().item(), 1e-2 * scale[group(name)], 1e-30)
        out[name] = (a - b).abs().max().item() / floor
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--weights', required=True)
    p.add_argument('--inputs', required=True)
    p.add_argument('--swift', required=True)
    p.add_argument('--threads', type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    exported, _ = read_safetensors(a.weights)
    swift, flags = read_safetensors(a.swift)
    size = int(flags['image_size'])
    raw = open(a.inputs, 'rb').read()
    images = torch.frombuffer(bytearray(raw), dtype=torch.float32).reshape(-1, size, size, 3)
    labels = torch.tensor([int(x) for x in flags['labels'].split(',')])
    keep, lr = swift['step/drop_path_keep_prob'].item(), swift['step/learning_rate'].item()
    masks = {k[len('mask/'):]: v for k, v in swift.items() if k.startswith('mask/')}
    failures = []
    for name, m in masks.items():
        factor = 1 / keep if name.endswith('/drop_path') else 1 / float(flags['dense_dropout_keep_prob'])
        bad = ((m != 0) & ((m.double() - factor).abs() > 1e-6 * factor)).sum().item()
        if bad:
            failures.append(f'mask {name}: {bad} values are neither 0 nor 1/keep = {factor}')

    decisions = []
    for j, dims in enumerate(flags['relu_shapes'].split(',') if flags.get('relu_shapes') else []):
        shape = tuple(int(d) for d in dims.split('x'))
        bits = torch.from_numpy(numpy.unpackbits(swift[f'relu/{j}'].numpy(), bitorder='little')[:math.prod(shape)].astype(bool))
        decisions.append((shape, bits))
    choices = []
    for j, dims in enumerate(flags['maxpool_shapes'].split(',') if flags.get('maxpool_shapes') else []):
        choices.append((tuple(int(d) for d in dims.split('x')), swift[f'maxpool/{j}']))
    try:
        reference, problems, trainable = compute(exported, images, labels, flags, masks, keep, lr, torch.float64, decisions, choices)
    except KeyError as e:
        # A variable, mask or ReLU the reference needs that the Swift side does not have: wiring.
        print(f'MISMATCH: {e.args[0]}')
        sys.exit(1)
    flips = reference.pop('flips', 0)
    failures += problems
    # The same in PyTorch's float32: what float32 arithmetic alone costs, for scale.
    single, _, _ = compute(exported, images, labels, flags, masks, keep, lr, torch.float32, decisions, choices)
    single.pop("flips", 0)
    missing = [k for k in reference if k not in swift]
    extra = [k for k in swift if k.startswith('after/') and k not in reference]
    if missing or extra:
        failures.append(f'tensors differ: Swift lacks {missing[:5]}, torch has no {extra[:5]}')
    compared = {k: v for k, v in reference.items() if k in swift}
    ours, theirs = errors(swift, compared), errors(single, compared)

    print(f'torch {torch.__version__}, float64: {int(flags["num_cells"])} cells, F={flags["reduction_size"]}, '
          f'{size}x{size}, batch {images.shape[0]}, step {flags["global_step"]}, lr {lr:.6g}, '
          f'dropout keep {flags["dense_dropout_keep_prob"]}, drop-path keep {keep:.4g}, {len(masks)} masks, '
          f'{trainable} trainable variables; {len(decisions)} ReLUs and {len(choices)} max pools, at {flips} places within '
          f'{AMBIGUOUS:g} of the kink the Swift step went the other way (taken as it did)')
    claimed = set()
    for family, tolerance in TOLERANCE.items():
        names = [k for k in ours if (k == family or k.startswith(family + '/') or group(k) == family) and k not in claimed]
        claimed.update(names)
        if not names:
            continue
        worst = max(names, key=lambda k: ours[k])
        print(f'  {family:12s} {len(names):5d} tensors: Swift worst {ours[worst]:.2e} ({worst}), '
              f'torch float32 worst {max(theirs[k] for k in names):.2e}; tolerance {tolerance:g}')
        failures += [f'{k}: error {ours[k]:.3g} > {tolerance:g} (torch float32: {theirs[k]:.3g})'
                     for k in sorted(names, key=lambda k: -ours[k]) if ours[k] > tolerance]
    if failures:
        print(f'MISMATCH ({len(failures)}):')
        for f in failures[:20]:
            print('  ' + f)
        sys.exit(1)
    print('agrees')


if __name__ == '__main__':
    main()
