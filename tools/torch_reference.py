#!/usr/bin/env python3
"""PyTorch reference for convnet's CIFAR-10 recipes (configs/fast94.yaml, fast96.yaml, vgg11_bn.yaml,
vgg16_bn.yaml, resnet18.yaml, resnet20.yaml).

Trains the same architecture with the same recipe on the same CIFAR-10 binary files that convnet
reads, so that accuracy and time compare side by side on one GPU (docs/results.md):

    tools/torch_reference.py --recipe fast94 --data data/cifar10 --seeds 5 --json-out r.jsonl
    tools/torch_reference.py --recipe vgg16_bn --precision tf32 --seeds 2

--data holds data_batch_1..5.bin and test_batch.bin (directly or in cifar-10-batches-bin/): one
label byte and 3072 bytes of CHW pixel planes per record, the official format and what
`convnet convert-data` / tools/prepare_cifar10.sh --format binary write from the shared JPEG copy,
so both frameworks see byte-identical pixels in the same order.

fast94 follows airbench94 (Keller Jordan's cifar10-airbench) in fp32 or tf32: whitening conv
initialised from 5000 normalised training images chosen class-balanced exactly as convnet's
train.init_images does (the first of every class, then the second, ...; the converted JPEG copy is
sorted by class, so airbench's "first 5000" would be all airplanes), alternating flip, +-2 px
reflect translate, loss summed over the batch with airbench's lr and weight decay scaling,
BatchNorm biases at 64x LR, whitening bias trained for 3 epochs, lookahead from epoch 3 every 5
steps with decay 0.95^5 * (step/total)^3, copied back at the end of every epoch, and 6-view TTA.
fast96 follows airbench96 (its 06/13/24 version) with the same code: widths 128/512/512, three
convs per group with a residual over the last two (GELU after the sum), BatchNorm momentum 0.1,
+-4 px reflect translate, 12 px cutout (zeroed after normalisation, the square inside the image),
31 epochs, warm-up over 10% of the steps then linear to 0, and lookahead from the first 5th step,
copied back only after each update and at the last step (no copy-back at epoch ends).
The VGG and ResNet recipes follow convnet's trainer: batch-mean loss, PyTorch SGD with L2 weight
decay on conv and linear weights only (on every parameter when the recipe's
optimizer.decay_norm_and_bias is true, as the ResNet recipes and their PyTorch sources have it),
convnet's step-based warm-up + linear/cosine/multistep schedule, random crop with zero padding and
random flip drawn per image and epoch, and convnet's init: kaiming_normal(fan_out) convs, BN scale 1
and shift 0, PyTorch's default Linear. The ResNets are kuangliu/pytorch-cifar's ResNet18/34
(projection shortcuts) and He et al. 2016's resnet20 ... resnet1202 with the option A shortcut as
akamaster/pytorch_resnet_cifar10 (same module names, so the state dicts are interchangeable with
convnet's checkpoints; --model resnet56 trains another depth with the resnet20 recipe).

The whole data set lives on the device as uint8 and batches are augmented there (as convnet's
device loader does), so data loading is not part of the timed loop. Timing (CUDA events on a GPU):
  train_seconds  from the start of the whitening init (fast94, fast96) or of the first step to the end of
                 training, per-epoch evaluations excluded (airbench's definition)
  eval_seconds   the final evaluation (with TTA for fast94 and fast96)
  wall_seconds   model construction to the final accuracy, everything included
A short warm-up run (random labels, --warmup-steps steps) precedes the timed runs so that
cudnn.benchmark's autotuning is not timed, as airbench does. One JSON object per seed goes to
stdout and, with --json-out, is appended to that file (tools/results_table.py reads them).

Runs on the CPU too (no CUDA device, or --device cpu) for smoke tests with --train-limit,
--test-limit and --epochs. Needs only torch (PyYAML, when installed, is used to check that
configs/RECIPE.yaml still says what this script trains).
"""

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)

VGG_CFGS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}

# The recipes, mirroring configs/*.yaml (check_config compares them when PyYAML is installed).
# Keys are convnet's config keys.
CLASSIC_VGG = {
    "train.batch_size": 128,
    "train.label_smoothing": 0.0,
    "optimizer.lr": 0.1,
    "optimizer.momentum": 0.9,
    "optimizer.nesterov": True,
    "optimizer.weight_decay": 5e-4,
    "schedule.name": "linear",
    "schedule.warmup_epochs": 2,
    "schedule.warmup_start_factor": 0.1,
    "schedule.final_lr_factor": 0.0,
    "data.augment.crop_padding": 4,
    "data.augment.padding_mode": "zero",
    "data.augment.flip_mode": "random",
    "train.eval_every": 5,
}

# The ResNet recipes' common part (configs/resnet18.yaml, configs/resnet20.yaml): plain momentum
# SGD with weight decay on every parameter, as their PyTorch sources (torch.optim.SGD(model.parameters(), ...)).
CLASSIC_RESNET = {
    "train.batch_size": 128,
    "train.label_smoothing": 0.0,
    "optimizer.lr": 0.1,
    "optimizer.momentum": 0.9,
    "optimizer.nesterov": False,
    "optimizer.decay_norm_and_bias": True,
    "schedule.warmup_epochs": 0,
    "data.augment.crop_padding": 4,
    "data.augment.padding_mode": "zero",
    "data.augment.flip_mode": "random",
    "train.eval_every": 5,
}

# ResNets: (stem width, widths, blocks per stage, shortcut); the names are convnet's model.name.
RESNETS = {
    "resnet18": (64, (64, 128, 256, 512), (2, 2, 2, 2), "projection"),
    "resnet34": (64, (64, 128, 256, 512), (3, 4, 6, 3), "projection"),
    **{f"resnet{d}": (16, (16, 32, 64), ((d - 2) // 6,) * 3, "pad") for d in (20, 32, 44, 56, 110, 1202)},
}

# The airbench recipes' common part (configs/fast94.yaml, configs/fast96.yaml).
AIRBENCH = {
    "train.batch_size": 1024,
    "train.label_smoothing": 0.2,
    "train.init_images": 5000,
    "optimizer.momentum": 0.85,
    "optimizer.nesterov": True,
    "optimizer.decay_norm_and_bias": True,
    "optimizer.decay_scales_with_lr_mult": False,
    "data.augment.padding_mode": "reflect",
    "data.augment.flip_mode": "alternating",
    "schedule.name": "linear",
    "schedule.warmup_start_factor": 0.2,
    "ema.mode": "lookahead",
    "ema.every": 5,
    "train.tta": "flip_translate",
}

# airbench's own parametrisation (per 1024 examples, summed loss; configs/fast94.yaml derives
# convnet's values from it), the part both versions share.
AIRBENCH_HYP = {
    "bias_scaler": 64.0,
    "ema_decay_base": 0.95,
    "ema_decay_pow": 3.0,
    "whiten_bias_epochs": 3,
    "whiten_eps": 5e-4,
    "bn_eps": 1e-12,
    "scale": 1.0 / 9.0,
}

RECIPES = {
    # airbench94.py
    "fast94": {
        **AIRBENCH,
        "train.epochs": 9.9,
        "data.augment.crop_padding": 2,
        "data.augment.cutout": 0,
        "schedule.final_lr_factor": 0.07,
        "airbench": {
            **AIRBENCH_HYP,
            "lr": 11.5,
            "weight_decay": 0.0153,
            "warmup_fraction": 0.23,
            "ema_start_epochs": 3,
            "ema_copy_back_each_epoch": True,  # airbench94: "copy back parameters a final time after each epoch"
            "bn_momentum": 0.4,  # PyTorch convention (airbench's 0.6 is 1 - this)
            "widths": (64, 256, 256),
            "residual": False,  # two convs per group
        },
    },
    # airbench96.py, 06/13/24 version
    "fast96": {
        **AIRBENCH,
        "train.epochs": 31,
        "data.augment.crop_padding": 4,
        "data.augment.cutout": 12,
        "schedule.final_lr_factor": 0.0,
        "airbench": {
            **AIRBENCH_HYP,
            "lr": 9.0,
            "weight_decay": 0.012,
            "warmup_fraction": 0.1,
            "ema_start_epochs": 0,
            "ema_copy_back_each_epoch": False,  # only after each update and the last step
            "bn_momentum": 0.1,  # PyTorch's default
            "widths": (128, 512, 512),
            "residual": True,  # three convs per group, a residual over the last two
        },
    },
    # The classic VGG recipe (configs/vgg11_bn.yaml, configs/vgg16_bn.yaml) for both depths.
    "vgg11_bn": {**CLASSIC_VGG, "model.name": "vgg11", "train.epochs": 50},
    "vgg16_bn": {**CLASSIC_VGG, "model.name": "vgg16", "train.epochs": 60},
    # kuangliu/pytorch-cifar's recipe (configs/resnet18.yaml)
    "resnet18": {**CLASSIC_RESNET, "model.name": "resnet18", "train.epochs": 200, "optimizer.weight_decay": 5e-4,
                 "schedule.name": "cosine", "schedule.final_lr_factor": 0.0},
    # He et al. 2016, section 4.2 (configs/resnet20.yaml): /10 at 32k and 48k steps, 64k steps in all
    "resnet20": {**CLASSIC_RESNET, "model.name": "resnet20", "train.epochs": 164, "optimizer.weight_decay": 1e-4,
                 "schedule.name": "multistep", "schedule.milestones": [82, 123], "schedule.gamma": 0.1},
}


def log(msg):
    print(f"[torch_reference] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------

RECORD = 1 + 3 * 32 * 32


def read_cifar_file(path):
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) == 0 or len(raw) % RECORD != 0:
        raise SystemExit(f"{path}: {len(raw)} bytes is not a whole number of {RECORD}-byte CIFAR-10 records")
    rec = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(-1, RECORD)
    labels = rec[:, 0].long()
    if int(labels.max()) > 9:
        raise SystemExit(f"{path}: label {int(labels.max())} out of range 0-9")
    images = rec[:, 1:].reshape(-1, 3, 32, 32).clone()
    return images, labels


def load_cifar(data_dir):
    root = data_dir
    if not os.path.exists(os.path.join(root, "data_batch_1.bin")):
        root = os.path.join(data_dir, "cifar-10-batches-bin")
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    missing = [n for n in names if not os.path.exists(os.path.join(root, n))]
    if missing:
        raise SystemExit(
            f"--data {data_dir}: missing {', '.join(missing)}. Create the binary files with "
            f"tools/prepare_cifar10.sh --from ../shared/data/cifar10-jpeg.tar.xz --out {data_dir} --format binary")
    parts = [read_cifar_file(os.path.join(root, n)) for n in names[:5]]
    train_x = torch.cat([p[0] for p in parts])
    train_y = torch.cat([p[1] for p in parts])
    test_x, test_y = read_cifar_file(os.path.join(root, "test_batch.bin"))
    return train_x, train_y, test_x, test_y


def balanced_subset(labels, limit):
    """Indices (in data order) of a class-balanced subset of `limit` examples."""
    if limit <= 0 or limit >= len(labels):
        return torch.arange(len(labels))
    classes = int(labels.max()) + 1
    # rank of each example within its class
    rank = torch.zeros(len(labels), dtype=torch.long)
    seen = [0] * classes
    for i, y in enumerate(labels.tolist()):
        rank[i] = seen[y]
        seen[y] += 1
    per = limit // classes
    extra = limit - per * classes
    quota = torch.tensor([per + (1 if c < extra else 0) for c in range(classes)])
    return torch.nonzero(rank < quota[labels]).flatten()


class DeviceData:
    """uint8 images resident on the device, padded once; batches are cropped, flipped and
    normalised there: pixel = (v / 255 - mean) / std, as convnet's normalize_pixel."""

    def __init__(self, images_u8, labels, device, pad, pad_mode):
        self.n = len(labels)
        self.pad = pad
        self.images = images_u8.to(device)
        self.labels = labels.to(device)
        if pad > 0:
            mode = "reflect" if pad_mode == "reflect" else "constant"
            # F.pad's reflect needs floating point; the values stay exact integers 0..255.
            padded = F.pad(self.images.float(), (pad,) * 4, mode=mode)
            self.padded = padded.round().to(torch.uint8)
        else:
            self.padded = self.images
        self.mean = torch.tensor(CIFAR_MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(CIFAR_STD, device=device).view(1, 3, 1, 1)

    def normalize(self, x_u8):
        return (x_u8.float() / 255.0 - self.mean) / self.std

    def batch(self, idx, shift_y=None, shift_x=None, flip=None):
        """Images idx, each cropped at (shift_y, shift_x) in [-pad, pad] and mirrored where flip."""
        if shift_y is None and flip is None:
            return self.normalize(self.images[idx]).contiguous(memory_format=torch.channels_last)
        b = len(idx)
        dev = self.images.device
        ar = torch.arange(32, device=dev)
        sy = shift_y if shift_y is not None else torch.zeros(b, dtype=torch.long, device=dev)
        sx = shift_x if shift_x is not None else torch.zeros(b, dtype=torch.long, device=dev)
        cols = ar.expand(b, 32)
        if flip is not None:
            cols = torch.where(flip.view(-1, 1), 31 - cols, cols)  # flip the cropped image
        rows = ar.view(1, 32) + sy.view(-1, 1) + self.pad
        cols = cols + sx.view(-1, 1) + self.pad
        src = self.padded[idx]  # [B, 3, H+2p, W+2p]
        out = src[torch.arange(b, device=dev).view(-1, 1, 1), :, rows.view(b, 32, 1), cols.view(b, 1, 32)]
        out = out.permute(0, 3, 1, 2)  # advanced indexing put channels last
        return self.normalize(out).contiguous(memory_format=torch.channels_last)


# ----------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------


class Scale(nn.Module):
    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


def conv_pytorch_dirac(c_in, c_out):
    """3x3 conv, no bias: PyTorch's default init, then the first min(out, in) filters the identity."""
    conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[: min(c_in, c_out)])
    return conv


def airbench_bn(h, c):
    m = nn.BatchNorm2d(c, eps=h["bn_eps"], momentum=h["bn_momentum"])
    m.weight.requires_grad_(False)  # scale frozen at 1
    return m


class ResidualConvGroup(nn.Module):
    """airbench96's ConvGroup (06/13/24): conv1 -> pool -> norm1 -> GELU = x0; conv2 -> norm2 ->
    GELU -> conv3 -> norm3; GELU(x + x0). Module names as airbench's."""

    def __init__(self, h, c_in, c_out):
        super().__init__()
        self.conv1 = conv_pytorch_dirac(c_in, c_out)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = airbench_bn(h, c_out)
        self.conv2 = conv_pytorch_dirac(c_out, c_out)
        self.norm2 = airbench_bn(h, c_out)
        self.conv3 = conv_pytorch_dirac(c_out, c_out)
        self.norm3 = airbench_bn(h, c_out)
        self.activ = nn.GELU()

    def forward(self, x):
        x0 = self.activ(self.norm1(self.pool(self.conv1(x))))
        x = self.norm3(self.conv3(self.activ(self.norm2(self.conv2(x0)))))
        return self.activ(x + x0)


def make_airbench(h):
    """airbench94 (h["residual"] false: two convs per group, one flat Sequential) or airbench96
    (residual groups); model[0] is the whitening conv either way."""
    layers = [nn.Conv2d(3, 24, 2, padding=0, bias=True), nn.GELU()]
    nn.init.zeros_(layers[0].bias)
    layers[0].weight.requires_grad_(False)
    c_in = 24
    for width in h["widths"]:
        if h["residual"]:
            layers.append(ResidualConvGroup(h, c_in, width))
        else:
            layers += [conv_pytorch_dirac(c_in, width), nn.MaxPool2d(2), airbench_bn(h, width), nn.GELU(),
                       conv_pytorch_dirac(width, width), airbench_bn(h, width), nn.GELU()]
        c_in = width
    layers += [nn.MaxPool2d(3), nn.Flatten(), nn.Linear(c_in, 10, bias=False), Scale(h["scale"])]
    return nn.Sequential(*layers)


def make_vgg(name):
    layers, c_in = [], 3
    for v in VGG_CFGS[name]:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
            continue
        conv = nn.Conv2d(c_in, v, 3, padding=1, bias=False)
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        layers += [conv, nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
        c_in = v
    layers += [nn.Flatten(), nn.Linear(512, 10)]  # PyTorch's default Linear init, as convnet's
    return nn.Sequential(*layers)


def init_like_convnet(model):
    """convnet's init: kaiming_normal(fan_out) convs, BN 1 and 0; Linear keeps PyTorch's default."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class PadShortcut(nn.Module):
    """He et al.'s option A: x[:, :, ::s, ::s] with zero channels on both sides, no parameters
    (akamaster's LambdaLayer(F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4)))),
    half the added channels in front; convnet's PadChannels."""

    def __init__(self, stride, added):
        super().__init__()
        self.stride, self.before, self.after = stride, added // 2, added - added // 2

    def forward(self, x):
        return F.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0, self.before, self.after))


class BasicBlock(nn.Module):
    def __init__(self, in_planes, planes, stride, shortcut):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()  # identity, no state
        if stride != 1 or in_planes != planes:
            if shortcut == "projection":
                self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                                              nn.BatchNorm2d(planes))
            else:
                self.shortcut = PadShortcut(stride, planes - in_planes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """Module names as kuangliu's and akamaster's: conv1, bn1, layer1..layerS, linear."""

    def __init__(self, stem, widths, blocks, shortcut, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, stem, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        in_planes = stem
        for s, (planes, n) in enumerate(zip(widths, blocks)):
            layers = []
            for b in range(n):
                layers.append(BasicBlock(in_planes, planes, 2 if s > 0 and b == 0 else 1, shortcut))
                in_planes = planes
            setattr(self, f"layer{s + 1}", nn.Sequential(*layers))
        self.stages = len(widths)
        self.linear = nn.Linear(in_planes, num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        for s in range(self.stages):
            out = getattr(self, f"layer{s + 1}")(out)
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)  # global average pool
        return self.linear(out)


def make_resnet(name):
    model = ResNet(*RESNETS[name])
    init_like_convnet(model)
    return model


def make_model(name):
    return make_resnet(name) if name in RESNETS else make_vgg(name)


def class_balanced_subset(labels, limit):
    """convnet's class_balanced_subset (datasets/cifar10.h): the first example of every class, then
    the second of every class, ... (ties by class) until `limit` are chosen, in increasing order."""
    if limit <= 0 or limit >= len(labels):
        return list(range(len(labels)))
    rank = {}
    keyed = []
    for i, y in enumerate(labels):
        r = rank.get(y, 0)
        rank[y] = r + 1
        keyed.append((r, y, i))
    keyed.sort()
    return sorted(i for _, _, i in keyed[:limit])


def init_whitening(conv, images, eps):
    """Whitening filters from the k x k patches of `images` (normalised, [N, C, H, W])."""
    k = conv.kernel_size[0]
    c = images.shape[1]
    patches = images.unfold(2, k, 1).unfold(3, k, 1)  # [N, C, H', W', k, k]
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * k * k).double()
    cov = patches.T @ patches / patches.shape[0]  # uncentred, as airbench
    eigenvalues, eigenvectors = torch.linalg.eigh(cov)
    order = torch.argsort(eigenvalues, descending=True)
    eigenvalues, eigenvectors = eigenvalues[order], eigenvectors[:, order]
    filters = (eigenvectors.T / torch.sqrt(eigenvalues + eps).view(-1, 1)).reshape(-1, c, k, k)
    with torch.no_grad():
        conv.weight.copy_(torch.cat([filters, -filters]).to(conv.weight.dtype))


# ----------------------------------------------------------------------------------------------
# Schedules
# ----------------------------------------------------------------------------------------------


def airbench_lr_factor(step, total, warmup_steps, start, end):
    """airbench's triangle: start -> 1 over [0, warmup_steps], 1 -> end over [warmup_steps, total]."""
    step = min(step, total)
    if step < warmup_steps:
        return start + (1.0 - start) * step / warmup_steps
    return 1.0 + (end - 1.0) * (step - warmup_steps) / max(total - warmup_steps, 1)


def convnet_lr(r, step, steps_per_epoch, total):
    """convnet's LrSchedule (core/optim/schedule.cpp) for the linear, cosine and multistep schedules."""
    base = r["optimizer.lr"]

    def to_steps(epochs):
        return int(math.floor(epochs * steps_per_epoch + 0.5))  # llround

    warmup = to_steps(r["schedule.warmup_epochs"])
    step = min(step, total)
    if step < warmup:
        s = r["schedule.warmup_start_factor"]
        return base * (s + (1.0 - s) * step / warmup)
    if r["schedule.name"] == "multistep":
        passed = sum(1 for m in r["schedule.milestones"] if to_steps(m) <= step)
        return base * r["schedule.gamma"] ** passed
    span = total - warmup
    t = min(max((step - warmup) / span, 0.0), 1.0) if span > 0 else 1.0
    final = r["schedule.final_lr_factor"] * base
    if r["schedule.name"] == "cosine":
        return final + (base - final) * (1.0 + math.cos(math.pi * t)) / 2.0
    return base + (final - base) * t


# ----------------------------------------------------------------------------------------------
# Timing and evaluation
# ----------------------------------------------------------------------------------------------


class Timer:
    """Elapsed seconds between start() and stop(): CUDA events on a GPU, perf_counter otherwise."""

    def __init__(self, device):
        self.cuda = device.type == "cuda"
        self.total = 0.0

    def start(self):
        if self.cuda:
            self.a = torch.cuda.Event(enable_timing=True)
            self.b = torch.cuda.Event(enable_timing=True)
            self.a.record()
        else:
            self.t0 = time.perf_counter()

    def stop(self):
        if self.cuda:
            self.b.record()
            torch.cuda.synchronize()
            dt = 1e-3 * self.a.elapsed_time(self.b)
        else:
            dt = time.perf_counter() - self.t0
        self.total += dt
        return dt


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.no_grad()
def evaluate(model, data, tta, chunk, limit_chunks=0):
    """Top-1 accuracy over `data`; tta 'flip_translate' is airbench's level 2 (6 views)."""
    model.eval()
    correct = 0
    seen = 0
    for i, start in enumerate(range(0, data.n, chunk)):
        if limit_chunks and i >= limit_chunks:
            break
        idx = torch.arange(start, min(start + chunk, data.n), device=data.images.device)
        x = data.batch(idx)
        if tta == "flip_translate":
            def mirror(v):
                return 0.5 * model(v) + 0.5 * model(v.flip(-1))
            padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
            up_left = padded[:, :, 0:32, 0:32].contiguous(memory_format=torch.channels_last)
            down_right = padded[:, :, 2:34, 2:34].contiguous(memory_format=torch.channels_last)
            logits = 0.5 * mirror(x) + 0.25 * mirror(up_left) + 0.25 * mirror(down_right)
        elif tta == "flip":
            logits = 0.5 * model(x) + 0.5 * model(x.flip(-1))
        else:
            logits = model(x)
        correct += int((logits.argmax(1) == data.labels[idx]).sum())
        seen += len(idx)
    model.train()
    return correct / max(seen, 1)


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------


def cutout_corners(n, size, device, gen):
    """airbench's cutout: the top-left corner of each image's size x size square, uniform over
    [0, 32 - size] in each axis (the square lies inside the image); [n, 2] (y, x)."""
    return torch.randint(0, 32 - size + 1, (n, 2), device=device, generator=gen)


def apply_cutout(x, corners, size):
    """Zeroes the square of side `size` at `corners` (top-left, [B, 2]) of the normalised batch x."""
    ar = torch.arange(32, device=x.device)
    dy = ar.view(1, 32) - corners[:, 0:1]
    dx = ar.view(1, 32) - corners[:, 1:2]
    mask = ((dy >= 0) & (dy < size)).view(-1, 1, 32, 1) & ((dx >= 0) & (dx < size)).view(-1, 1, 1, 32)
    return x.masked_fill_(mask, 0.0)


def train_airbench(r, train, test, device, seed, epochs, warmup_steps_limit, compile_model, eval_chunk):
    """fast94 (airbench94) and fast96 (airbench96): airbench's training loop."""
    h = r["airbench"]
    torch.manual_seed(seed)
    warmup = warmup_steps_limit > 0
    wall0 = time.perf_counter()
    batch = r["train.batch_size"]
    momentum = r["optimizer.momentum"]
    steps_per_epoch = train.n // batch  # last partial batch dropped
    if steps_per_epoch < 1:
        raise SystemExit(f"batch size {batch} is larger than the training set ({train.n})")
    total = math.ceil(steps_per_epoch * epochs)
    if warmup:
        total = min(total, warmup_steps_limit)
    warmup_lr_steps = int(h["warmup_fraction"] * total)
    kilostep_scale = 1024 * (1 + 1 / (1 - momentum))
    lr = h["lr"] / kilostep_scale
    wd = h["weight_decay"] * batch / kilostep_scale
    lr_bias = lr * h["bias_scaler"]

    model = make_airbench(h).to(device).to(memory_format=torch.channels_last)
    norm_ids = {id(p) for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()}
    norm_biases = [p for p in model.parameters() if id(p) in norm_ids and p.requires_grad]
    others = [p for p in model.parameters() if id(p) not in norm_ids and p.requires_grad]
    groups = [dict(params=norm_biases, lr=lr_bias, weight_decay=wd / lr_bias, base_lr=lr_bias),
              dict(params=others, lr=lr, weight_decay=wd / lr, base_lr=lr)]
    opt = torch.optim.SGD(groups, momentum=momentum, nesterov=True)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=r["train.label_smoothing"], reduction="sum")
    net = torch.compile(model) if compile_model else model

    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    labels = train.labels
    if warmup:
        labels = torch.randint(0, 10, (train.n,), device=device, generator=gen)
    # alternating flip: one random bit per image for the run, inverted in odd epochs
    base_flip = torch.rand(train.n, device=device, generator=gen) < 0.5
    cutout = r.get("data.augment.cutout", 0)

    timer = Timer(device)
    timer.start()
    init_n = min(r["train.init_images"], train.n)
    init_indices = class_balanced_subset(train.labels.cpu().tolist(), init_n)
    init_whitening(model[0], train.batch(torch.tensor(init_indices, device=device)), h["whiten_eps"])
    timer.stop()

    ema = None
    step = 0
    epoch_ips = []
    for epoch in range(math.ceil(epochs)):
        if step >= total:
            break
        model[0].bias.requires_grad_(epoch < h["whiten_bias_epochs"])
        timer.start()
        perm = torch.randperm(train.n, device=device, generator=gen)
        shifts = torch.randint(-train.pad, train.pad + 1, (train.n, 2), device=device, generator=gen)
        flips = base_flip ^ bool(epoch % 2)
        corners = cutout_corners(train.n, cutout, device, gen) if cutout > 0 else None
        seen = 0
        for i in range(steps_per_epoch):
            idx = perm[i * batch:(i + 1) * batch]
            x = train.batch(idx, shifts[idx, 0], shifts[idx, 1], flips[idx])
            if corners is not None:
                x = apply_cutout(x, corners[idx], cutout)
            factor = airbench_lr_factor(step, total, warmup_lr_steps, r["schedule.warmup_start_factor"],
                                        r["schedule.final_lr_factor"])
            for g in opt.param_groups:
                g["lr"] = g["base_lr"] * factor
            loss = loss_fn(net(x), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            seen += len(idx)
            if epoch >= h["ema_start_epochs"] and step % r["ema.every"] == 0:
                if ema is None:
                    ema = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}
                else:
                    rho = h["ema_decay_base"] ** r["ema.every"] * (step / total) ** h["ema_decay_pow"]
                    with torch.no_grad():
                        current = model.state_dict()
                        for k, avg in ema.items():
                            avg.lerp_(current[k], 1 - rho)
                            current[k].copy_(avg)
            if step >= total:
                break
        # airbench94 copies the average back at every epoch end; airbench96 only at the last step
        # (its update with decay 1), the other steps since the last 5th being dropped either way.
        if ema is not None and (h["ema_copy_back_each_epoch"] or step >= total):
            with torch.no_grad():
                current = model.state_dict()
                for k, avg in ema.items():
                    current[k].copy_(avg)
        dt = timer.stop()
        epoch_ips.append(seen / max(dt, 1e-9))

    eval_timer = Timer(device)
    eval_timer.start()
    tta = r["train.tta"]
    acc_tta = evaluate(net, test, tta, eval_chunk, limit_chunks=1 if warmup else 0)
    eval_timer.stop()
    sync(device)
    wall = time.perf_counter() - wall0
    acc_plain = evaluate(net, test, "none", eval_chunk, limit_chunks=1 if warmup else 0)
    return dict(test_accuracy=acc_tta, test_accuracy_no_tta=acc_plain, tta=tta, train_seconds=timer.total,
                eval_seconds=eval_timer.total, total_seconds=timer.total + eval_timer.total, wall_seconds=wall,
                steps=step, steps_per_epoch=steps_per_epoch, images_per_sec=step * batch / max(timer.total, 1e-9),
                epoch_images_per_sec=epoch_ips)


def train_classic(r, train, test, device, seed, epochs, warmup_steps_limit, compile_model, eval_chunk, eval_every):
    """The VGG and ResNet recipes: convnet's trainer, step for step."""
    torch.manual_seed(seed)
    warmup = warmup_steps_limit > 0
    wall0 = time.perf_counter()
    batch = r["train.batch_size"]
    steps_per_epoch = train.n // batch
    if steps_per_epoch < 1:
        raise SystemExit(f"batch size {batch} is larger than the training set ({train.n})")
    total = math.ceil(steps_per_epoch * epochs)
    num_epochs = math.ceil(epochs)
    if warmup:
        total, num_epochs = min(total, warmup_steps_limit), 1

    model = make_model(r["model.name"]).to(device).to(memory_format=torch.channels_last)
    # convnet's defaults: weight decay on conv and linear weights, not on BN parameters and biases,
    # unless optimizer.decay_norm_and_bias
    decay_all = r.get("optimizer.decay_norm_and_bias", False)
    decay = [p for p in model.parameters() if decay_all or p.dim() > 1]
    no_decay = [p for p in model.parameters() if not decay_all and p.dim() <= 1]
    opt = torch.optim.SGD([dict(params=decay, weight_decay=r["optimizer.weight_decay"]),
                           dict(params=no_decay, weight_decay=0.0)],
                          lr=r["optimizer.lr"], momentum=r["optimizer.momentum"], nesterov=r["optimizer.nesterov"])
    loss_fn = nn.CrossEntropyLoss(label_smoothing=r["train.label_smoothing"])
    net = torch.compile(model) if compile_model else model

    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    labels = train.labels
    if warmup:
        labels = torch.randint(0, 10, (train.n,), device=device, generator=gen)
    timer = Timer(device)
    step = 0
    epoch_ips = []
    test_acc = None
    for epoch in range(num_epochs):
        if step >= total:
            break
        timer.start()
        perm = torch.randperm(train.n, device=device, generator=gen)
        shifts = torch.randint(-train.pad, train.pad + 1, (train.n, 2), device=device, generator=gen)
        flips = torch.rand(train.n, device=device, generator=gen) < 0.5
        seen = 0
        for i in range(steps_per_epoch):
            idx = perm[i * batch:(i + 1) * batch]
            x = train.batch(idx, shifts[idx, 0], shifts[idx, 1], flips[idx])
            lr = convnet_lr(r, step, steps_per_epoch, total)
            for g in opt.param_groups:
                g["lr"] = lr
            loss = loss_fn(net(x), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            seen += len(idx)
            if step >= total:
                break
        dt = timer.stop()
        epoch_ips.append(seen / max(dt, 1e-9))
        last = epoch + 1 == num_epochs or step >= total
        if not last and not warmup and (epoch + 1) % eval_every == 0:
            acc = evaluate(net, test, "none", eval_chunk)
            log(f"  epoch {epoch + 1}/{num_epochs}: test accuracy {100 * acc:.2f}%, {epoch_ips[-1]:.0f} images/s")
    eval_timer = Timer(device)
    eval_timer.start()
    test_acc = evaluate(net, test, "none", eval_chunk, limit_chunks=1 if warmup else 0)
    eval_timer.stop()
    sync(device)
    wall = time.perf_counter() - wall0
    return dict(test_accuracy=test_acc, test_accuracy_no_tta=test_acc, tta="none", train_seconds=timer.total,
                eval_seconds=eval_timer.total, total_seconds=timer.total + eval_timer.total, wall_seconds=wall,
                steps=step, steps_per_epoch=steps_per_epoch, images_per_sec=step * batch / max(timer.total, 1e-9),
                epoch_images_per_sec=epoch_ips)


# ----------------------------------------------------------------------------------------------
# Config check, environment, main
# ----------------------------------------------------------------------------------------------


def same_value(a, b, rel=1e-6):
    if isinstance(b, bool) or not isinstance(b, (int, float)):
        return a == b
    try:
        return math.isclose(float(a), float(b), rel_tol=rel)
    except (TypeError, ValueError):
        return False


def check_airbench_config(r, cfg):
    """The airbench hyperparameters against the converted values and the layers of the config
    (configs/fast94.yaml derives the conversions); a list of mismatches."""
    h, opt, ema = r["airbench"], cfg.get("optimizer", {}), cfg.get("ema", {})
    batch, momentum = r["train.batch_size"], r["optimizer.momentum"]
    kilostep_scale = 1024 * (1 + 1 / (1 - momentum))
    lr = h["lr"] * batch / kilostep_scale
    wd = h["weight_decay"] * batch / kilostep_scale / lr
    steps = (50000 // batch) * r["train.epochs"]
    warmup = int(h["warmup_fraction"] * math.ceil(steps))
    got_warmup = math.floor(cfg.get("schedule", {}).get("warmup_epochs", 0) * (50000 // batch) + 0.5)
    layers = cfg.get("model", {}).get("layers") or []
    convs = [l for l in layers if l.get("type") == "conv"]
    norms = [l for l in layers if l.get("type") == "batch_norm"]
    per_group = 3 if h["residual"] else 2
    want_widths = [w for w in h["widths"] for _ in range(per_group)]
    whiten = convs[0] if convs else {}
    scales = [l.get("factor") for l in layers if l.get("type") == "scale"]
    checks = [
        ("optimizer.lr", opt.get("lr"), lr),
        ("optimizer.weight_decay", opt.get("weight_decay"), wd),
        ("schedule.warmup_epochs (in steps)", got_warmup, warmup),
        ("ema.start_epochs", ema.get("start_epochs", 0), h["ema_start_epochs"]),
        ("ema.decay", ema.get("decay"), h["ema_decay_base"] ** r["ema.every"]),
        ("ema.decay_power", ema.get("decay_power"), h["ema_decay_pow"]),
        ("whitening conv out_channels", whiten.get("out_channels"), 24),
        ("whitening conv whitening_eps", whiten.get("whitening_eps"), h["whiten_eps"]),
        ("whitening conv bias_train_epochs", whiten.get("bias_train_epochs"), h["whiten_bias_epochs"]),
        ("3x3 conv widths", [c.get("out_channels") for c in convs[1:]], want_widths),
        ("residual adds", sum(l.get("type") == "add" for l in layers), len(h["widths"]) if h["residual"] else 0),
        ("batch_norm layers", len(norms), len(want_widths)),
        ("scale factor", scales[0] if len(scales) == 1 else scales, h["scale"]),
    ]
    for i, n in enumerate(norms):
        checks += [(f"batch_norm {i} eps", n.get("eps"), h["bn_eps"]),
                   (f"batch_norm {i} momentum", n.get("momentum"), h["bn_momentum"]),
                   (f"batch_norm {i} bias_lr_mult", n.get("bias_lr_mult"), h["bias_scaler"]),
                   (f"batch_norm {i} freeze_scale", n.get("freeze_scale"), True)]
    return [f"{key}: config {got!r}, airbench's values give {want!r}" for key, got, want in checks
            if got is None or not same_value(got, want, 1e-5)]


def check_config(recipe, r, path):
    """Warn where configs/RECIPE.yaml no longer says what RECIPES[recipe] trains."""
    try:
        import yaml
    except ImportError:
        log("PyYAML not installed: not comparing the recipe with " + path)
        return
    if not os.path.exists(path):
        log(f"{path} not found: not comparing the recipe with convnet's config")
        return
    with open(path) as f:
        cfg = yaml.safe_load(f)
    mismatches = []
    for key, want in r.items():
        if "." not in key:
            continue
        node = cfg
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            continue  # convnet's default applies; not worth a warning
        if not same_value(node, want):
            mismatches.append(f"{key}: config {node!r}, this script {want!r}")
    if "airbench" in r:
        mismatches += check_airbench_config(r, cfg)
    for m in mismatches:
        log(f"WARNING {path}: {m}")


def environment(device):
    env = dict(torch=torch.__version__, python=platform.python_version(), host=platform.node())
    if device.type == "cuda":
        env.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                   cudnn=torch.backends.cudnn.version())
    else:
        env.update(gpu=None, cpu=platform.processor() or platform.machine(), threads=torch.get_num_threads())
    return env


def git_commit():
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(["git", "-C", here, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", required=True, choices=sorted(RECIPES))
    p.add_argument("--data", default="data/cifar10", help="folder with the CIFAR-10 binary files")
    p.add_argument("--seeds", type=int, default=1, help="number of seeds (runs)")
    p.add_argument("--seed-start", type=int, default=0, help="first seed")
    p.add_argument("--precision", choices=["fp32", "tf32"], default="fp32",
                   help="fp32: strict fp32 matmuls and convolutions; tf32: TF32 allowed in both")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (off by default)")
    p.add_argument("--epochs", type=float, default=None, help="override the recipe's epochs")
    p.add_argument("--model", default=None, choices=sorted(RESNETS),
                   help="ResNet recipes: train this ResNet instead (convnet: --set model.name=...)")
    p.add_argument("--train-limit", type=int, default=0, help="class-balanced subset of N training images")
    p.add_argument("--test-limit", type=int, default=0, help="class-balanced subset of N test images")
    p.add_argument("--warmup-steps", type=int, default=None,
                   help="steps of the untimed warm-up run (default 20 on a GPU, 0 on the CPU)")
    p.add_argument("--eval-every", type=int, default=None, help="VGG: evaluate every N epochs (default: config's)")
    p.add_argument("--eval-batch", type=int, default=2000, help="evaluation chunk size")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--config", default=None, help="convnet config to compare with (default configs/RECIPE.yaml)")
    p.add_argument("--json-out", default=None, help="append one JSON object per seed to this file")
    args = p.parse_args()

    r = RECIPES[args.recipe]
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    check_config(args.recipe, r, args.config or os.path.join(repo, "configs", args.recipe + ".yaml"))
    if args.model is not None:
        if r.get("model.name") not in RESNETS:
            raise SystemExit(f"--model: only for the ResNet recipes, not {args.recipe}")
        r = {**r, "model.name": args.model}

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device available")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    tf32 = args.precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = True
    if args.compile and not hasattr(torch, "compile"):
        raise SystemExit(f"--compile needs torch >= 2.0 (this is {torch.__version__})")
    epochs = args.epochs if args.epochs is not None else r["train.epochs"]
    warmup_steps = args.warmup_steps if args.warmup_steps is not None else (20 if device.type == "cuda" else 0)
    eval_every = args.eval_every or r.get("train.eval_every", 1)

    t_load = time.perf_counter()
    train_x, train_y, test_x, test_y = load_cifar(args.data)
    tr = balanced_subset(train_y, args.train_limit)
    te = balanced_subset(test_y, args.test_limit)
    pad = r["data.augment.crop_padding"]
    train = DeviceData(train_x[tr], train_y[tr], device, pad, r["data.augment.padding_mode"])
    test = DeviceData(test_x[te], test_y[te], device, 0, "zero")
    sync(device)
    load_seconds = time.perf_counter() - t_load
    log(f"{args.recipe}: {train.n} training and {test.n} test images from {args.data} on {device} "
        f"({load_seconds:.1f} s), precision {args.precision}, epochs {epochs}")

    def run(seed, warmup_limit):
        if "airbench" in r:
            return train_airbench(r, train, test, device, seed, epochs, warmup_limit, args.compile, args.eval_batch)
        return train_classic(r, train, test, device, seed, epochs, warmup_limit, args.compile, args.eval_batch,
                             eval_every)

    if warmup_steps > 0:
        w = run(10_000 + args.seed_start, warmup_steps)
        log(f"warm-up: {w['steps']} steps in {w['wall_seconds']:.1f} s (not reported)")

    env = environment(device)
    results = []
    for seed in range(args.seed_start, args.seed_start + args.seeds):
        res = run(seed, 0)
        rec = dict(recipe=args.recipe, model=r.get("model.name"), framework="pytorch", backend="torch",
                   precision=args.precision, seed=seed, device=device.type, epochs=epochs,
                   batch_size=r["train.batch_size"], train_images=train.n, test_images=test.n, compile=args.compile,
                   channels_last=True, load_seconds=load_seconds)
        rec.update(res)
        rec["epoch_images_per_sec"] = [round(v, 1) for v in rec["epoch_images_per_sec"]]
        rec["median_epoch_images_per_sec"] = (statistics.median(rec["epoch_images_per_sec"])
                                              if rec["epoch_images_per_sec"] else None)
        rec.update(env)
        rec.update(commit=git_commit(), command=" ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
                   date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
        log(f"seed {seed}: test accuracy {100 * rec['test_accuracy']:.2f}%"
            + (f" ({100 * rec['test_accuracy_no_tta']:.2f}% without TTA)" if rec["tta"] != "none" else "")
            + f", train {rec['train_seconds']:.2f} s, total {rec['total_seconds']:.2f} s, wall "
            f"{rec['wall_seconds']:.2f} s, {rec['images_per_sec']:.0f} images/s")
        line = json.dumps(rec)
        print(line, flush=True)
        if args.json_out:
            with open(args.json_out, "a") as f:
                f.write(line + "\n")
        results.append(rec)
    if len(results) > 1:
        accs = [100 * x["test_accuracy"] for x in results]
        log(f"{len(accs)} seeds: accuracy {statistics.mean(accs):.2f} +- {statistics.stdev(accs):.2f}%, "
            f"train {statistics.mean(x['train_seconds'] for x in results):.2f} s mean")


if __name__ == "__main__":
    main()
