#!/usr/bin/env python3
"""Writes the PyTorch reference values for Fathom's ResNet (tests/reference/test_reference_resnet.cpp).

    PY=$(../shared/anchors/setup-torch.sh)           # or any Python with torch
    "$PY" scripts/torch_resnet_reference.py          # rewrites the two files below

- tests/reference/data/resnet_keys.txt: every state_dict key of resnet18 and resnet50, in
  order, with whether it is a parameter or a buffer, its dtype and shape. From torchvision when
  it imports (PYTHONPATH may point at a `pip install --target` copy), else from the plain-torch
  transcription below, which must then give the same keys and shapes (checked when both exist).
- tests/reference/data/resnet18.txt (format of scripts/torch_reference.py): a resnet18 with 10
  classes on a [2, 3, 48, 48] input, in eval mode and then in train mode (one step of batch
  statistics), its logits, cross-entropy loss, the gradients of a few parameters (and, in train
  mode, of the input), and the running statistics after the train-mode forward.

No weights are checked in (resnet18 is 45 MB): every parameter, buffer and the input are made
by formula (fill() below: an integer hash of the flat index and the tensor's name, scaled in
f64 and rounded to f32), which the C++ test repeats. PyTorch computes in f64 from
those f32 values, on one thread.
"""
import argparse
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_reference import Case, f32  # noqa: E402


# ---- torchvision's ResNet (v1.5) in plain torch, under torchvision's names ----

def conv3x3(i, o, stride=1):
    return nn.Conv2d(i, o, 3, stride=stride, padding=1, bias=False)


def conv1x1(i, o, stride=1):
    return nn.Conv2d(i, o, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1, self.bn1 = conv3x3(inplanes, planes, stride), nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2, self.bn2 = conv3x3(planes, planes), nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1, self.bn1 = conv1x1(inplanes, planes), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = conv3x3(planes, planes, stride), nn.BatchNorm2d(planes)
        self.conv3, self.bn3 = conv1x1(planes, planes * 4), nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    def __init__(self, block, layers, num_classes=1000):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], 2)
        self.layer3 = self._make_layer(block, 256, layers[2], 2)
        self.layer4 = self._make_layer(block, 512, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(num_classes=1000):
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes)


def resnet50(num_classes=1000):
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes)


def torchvision_models():
    try:
        import torchvision.models as tvm
        return tvm
    except ImportError:
        return None


# ---- the weights by formula (tests/reference/test_reference_resnet.cpp repeats it) ----

def name_hash(name):
    return sum((i + 1) * ord(ch) for i, ch in enumerate(name)) % 9973


def uniform_hash(i, h):
    """A value in [-1, 1) from the flat index i and the name's hash h: an integer mix mod 2^32
    (Knuth's multiplier, then murmur3's finaliser steps), the same bits in C++'s uint32 math."""
    r = ((i + 1 + h * 1000003) * 2654435761) % 2**32
    r ^= r >> 15
    r = (r * 2246822519) % 2**32
    r ^= r >> 13
    return r / 2**31 - 1.0


def fill(name, shape):
    """f32 values offset + scale * uniform_hash(i, hash(name)), by what the tensor is, computed
    in f64. Pseudo-random rather than smooth: a sine over the index made channels whose batch
    variance nearly vanished in train mode, which no precision survives."""
    n, h = math.prod(shape), name_hash(name)
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "input":
        scale, offset = 1.0, 0.0
    elif len(shape) >= 2:  # conv or fc weight: kaiming_uniform's bound for relu, sqrt(6 / fan_in)
        scale, offset = math.sqrt(6.0 / math.prod(shape[1:])), 0.0
    elif leaf == "weight":  # batch-norm gamma
        scale, offset = 0.2, 1.0
    elif leaf == "running_var":
        scale, offset = 0.5, 1.0
    else:  # biases, running means
        scale, offset = 0.1, 0.0
    vals = [f32(offset + scale * uniform_hash(i, h)) for i in range(n)]
    return torch.tensor(vals, dtype=torch.float32).reshape(shape)


def keys_text():
    tvm = torchvision_models()
    lines = ["# Fathom reference: torchvision's ResNet state_dict keys, in order: MODEL param|buffer "
             "NAME DTYPE DIM...",
             f"# Written by scripts/torch_resnet_reference.py with torch {torch.__version__}"
             + (f" and torchvision {__import__('torchvision').__version__}" if tvm else
                " (torchvision absent: from its plain-torch transcription)") + "; regenerate, do not edit."]
    for name, plain in (("resnet18", resnet18), ("resnet50", resnet50)):
        m = getattr(tvm, name)() if tvm else plain()
        if tvm:  # the transcription must agree with torchvision, or the reference is wrong
            mine = {k: tuple(v.shape) for k, v in plain().state_dict().items()}
            theirs = {k: tuple(v.shape) for k, v in m.state_dict().items()}
            assert list(mine.items()) == list(theirs.items()), f"{name}: transcription differs"
        params = {k for k, _ in m.named_parameters()}
        for k, v in m.state_dict().items():
            dtype = {torch.float32: "f32", torch.int64: "i64"}[v.dtype]
            lines.append(" ".join([name, "param" if k in params else "buffer", k, dtype]
                                  + [str(d) for d in v.shape]))
        lines.append(f"{name} count {sum(p.numel() for p in m.parameters())}")
    return "\n".join(lines) + "\n"


GRADS = ["fc.bias", "bn1.weight", "bn1.bias", "layer1.0.bn1.weight",
         "layer4.1.bn2.weight", "layer4.1.bn2.bias"]
STATS = ["bn1.running_mean", "bn1.running_var", "layer3.0.downsample.1.running_mean",
         "layer4.1.bn2.running_var"]


def resnet18_case():
    c = Case("resnet18", 0, "resnet18(num_classes=10), every tensor from the formula fill(): "
             "eval-mode then train-mode forward of input [2, 3, 48, 48], cross-entropy on target, "
             "gradients, running statistics after the train-mode forward (momentum 0.1).")
    m = resnet18(10).double()
    with torch.no_grad():
        for k, v in m.state_dict().items():
            if v.dtype != torch.int64:
                v.copy_(fill(k, list(v.shape)).double())
    x = fill("input", [2, 3, 48, 48]).double().requires_grad_(True)
    target = c.add("target", torch.tensor([3, 7], dtype=torch.int64))
    for mode in ("eval", "train"):
        m.train(mode == "train")
        m.zero_grad()
        x.grad = None
        logits = m(x)
        loss = F.cross_entropy(logits, target)
        loss.backward()
        c.add(f"{mode}.logits", logits)
        c.add(f"{mode}.loss", loss)
        if mode == "train":  # f32 (1e-7 is plenty), and once: 13824 values are 200 KB of text
            c.add(f"{mode}.grad_input", x.grad.float())
        params = dict(m.named_parameters())
        for k in GRADS:
            c.add(f"{mode}.grad.{k}", params[k].grad)
    buffers = dict(m.named_buffers())
    for k in STATS:
        c.add(f"train.{k}", buffers[k])
    return c


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "reference", "data"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "resnet_keys.txt"), "w") as f:
        f.write(keys_text())
    case = resnet18_case()
    path = os.path.join(args.out, case.name + ".txt")
    with open(path, "w") as f:
        f.write(case.text().replace("scripts/torch_reference.py", "scripts/torch_resnet_reference.py"))
    print(f"{os.path.relpath(path)}: {len(case.entries)} tensors", file=sys.stderr)


if __name__ == "__main__":
    main()
