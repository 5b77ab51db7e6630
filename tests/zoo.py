"""Small CNNs of every shape the front end must handle, with what an independent count says about them.

Each model knows its block boundaries (the shapes of the candidate exit points the analysis must
find) and counts its own MACs with forward hooks on torch modules, independently of our ONNX rules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn


def conv_bn_relu(cin, cout, k=3, stride=1, groups=1, dims=2, act=nn.ReLU):
    conv = (nn.Conv1d if dims == 1 else nn.Conv2d)(cin, cout, k, stride, k // 2, groups=groups, bias=False)
    bn = (nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d)(cout)
    return nn.Sequential(conv, bn, act())


class PlainCNN(nn.Module):
    input_shape = (1, 3, 32, 32)
    boundaries = ((1, 8, 16, 16), (1, 16, 8, 8), (1, 32))

    def __init__(self):
        super().__init__()
        self.block1 = nn.Sequential(conv_bn_relu(3, 8), nn.MaxPool2d(2))
        self.block2 = nn.Sequential(conv_bn_relu(8, 16), nn.MaxPool2d(2))
        self.fc1 = nn.Sequential(nn.Flatten(), nn.Linear(16 * 8 * 8, 32), nn.ReLU())
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        return self.fc2(self.fc1(self.block2(self.block1(x))))


class PooledClassifier(nn.Module):
    """stem -> blocks -> global average pool -> linear: the layout most of the zoo shares."""

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.body = nn.Sequential(
            conv_bn_relu(cin, cout, stride=stride), nn.Conv2d(cout, cout, 3, 1, 1), nn.BatchNorm2d(cout)
        )
        self.skip = nn.Identity() if stride == 1 and cin == cout else nn.Conv2d(cin, cout, 1, stride)

    def forward(self, x):
        return torch.relu(self.body(x) + self.skip(x))


class ResNet(PooledClassifier):
    input_shape = (1, 3, 16, 16)
    boundaries = ((1, 8, 16, 16), (1, 8, 16, 16), (1, 16, 8, 8), (1, 16, 1, 1))

    def __init__(self):
        super().__init__()
        self.stem = conv_bn_relu(3, 8)
        self.blocks = nn.Sequential(BasicBlock(8, 8, 1), BasicBlock(8, 16, 2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)


class MobileNet(PooledClassifier):
    input_shape = (1, 3, 32, 32)
    boundaries = ((1, 8, 16, 16), (1, 16, 16, 16), (1, 32, 8, 8), (1, 32, 1, 1))

    def __init__(self):
        super().__init__()
        self.stem = conv_bn_relu(3, 8, stride=2)
        self.blocks = nn.Sequential(
            nn.Sequential(conv_bn_relu(8, 8, groups=8), conv_bn_relu(8, 16, k=1)),
            nn.Sequential(conv_bn_relu(16, 16, stride=2, groups=16), conv_bn_relu(16, 32, k=1)),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 10)


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expansion, depthwise 3x3, linear 1x1 projection; ReLU6 (ONNX Clip) between."""

    def __init__(self, cin, cout, stride, expand=2):
        super().__init__()
        hidden = cin * expand
        self.body = nn.Sequential(
            conv_bn_relu(cin, hidden, k=1, act=nn.ReLU6),
            conv_bn_relu(hidden, hidden, stride=stride, groups=hidden, act=nn.ReLU6),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.skip = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.body(x) if self.skip else self.body(x)


class MobileNetV2(PooledClassifier):
    input_shape = (1, 3, 32, 32)
    # The second block has no skip, so its expanded map is a point too (one tensor live).
    boundaries = ((1, 8, 16, 16), (1, 8, 16, 16), (1, 16, 16, 16), (1, 16, 8, 8), (1, 32, 8, 8), (1, 32, 1, 1))

    def __init__(self):
        super().__init__()
        self.stem = conv_bn_relu(3, 8, stride=2, act=nn.ReLU6)
        self.blocks = nn.Sequential(
            InvertedResidual(8, 8, 1), InvertedResidual(8, 16, 2), conv_bn_relu(16, 32, k=1, act=nn.ReLU6)
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 10)


class InceptionBlock(nn.Module):
    def __init__(self, cin):
        super().__init__()
        self.b1 = conv_bn_relu(cin, 8, k=1)
        self.b3 = nn.Sequential(conv_bn_relu(cin, 4, k=1), conv_bn_relu(4, 8))
        self.bp = nn.Sequential(nn.MaxPool2d(3, 1, 1), conv_bn_relu(cin, 8, k=1))

    def forward(self, x):
        return torch.cat([self.b1(x), self.b3(x), self.bp(x)], 1)


class Inception(PooledClassifier):
    input_shape = (1, 3, 16, 16)
    boundaries = ((1, 8, 16, 16), (1, 24, 16, 16), (1, 16, 8, 8), (1, 16, 1, 1))

    def __init__(self):
        super().__init__()
        self.stem = conv_bn_relu(3, 8)
        self.blocks = nn.Sequential(InceptionBlock(8), conv_bn_relu(24, 16, stride=2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)


class ECGNet(PooledClassifier):
    input_shape = (1, 1, 256)
    boundaries = ((1, 8, 64), (1, 16, 16), (1, 32, 4), (1, 32, 1))

    def __init__(self):
        super().__init__()
        self.stem = nn.Identity()
        self.blocks = nn.Sequential(
            *(
                nn.Sequential(conv_bn_relu(cin, cout, k=7, stride=2, dims=1), nn.MaxPool1d(2))
                for cin, cout in [(1, 8), (8, 16), (16, 32)]
            )
        )
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Linear(32, 5)


class MLP(nn.Module):
    input_shape = (1, 1, 28, 28)
    boundaries = ((1, 64), (1, 32))

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)
        )

    def forward(self, x):
        return self.net(x)


MODELS = {
    "plain": PlainCNN,
    "resnet": ResNet,
    "mobilenet": MobileNet,
    "mobilenet_v2": MobileNetV2,
    "inception": Inception,
    "ecg": ECGNet,
    "mlp": MLP,
}
EXPORTERS = ("legacy", "dynamo")
ALL_ZOO = [(m, e) for m in MODELS for e in EXPORTERS]


@dataclass
class ZooModel:
    path: Path
    model: nn.Module
    input_shape: tuple[int, ...]
    boundaries: list[tuple[int, ...]]


def make(name: str, exporter: str, directory: Path) -> ZooModel:
    """Build the model with fixed random weights (and non-trivial batch-norm statistics) and export it."""
    torch.manual_seed(0)
    model = MODELS[name]()
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 1.5)
    model.eval()
    path = directory / f"{name}_{exporter}.onnx"
    example = torch.randn(model.input_shape)
    if exporter == "legacy":
        torch.onnx.export(model, example, path, dynamo=False, input_names=["x"], output_names=["y"], opset_version=17)
    else:
        torch.onnx.export(model, (example,), path, dynamo=True, input_names=["x"], output_names=["y"], verbose=False)
    return ZooModel(path, model, model.input_shape, model.boundaries)


def self_labelled(model_path: Path, input_shape, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random inputs labelled by the model's own outputs, standardised per class so that every class is
    represented though the weights are random: data a random model can be augmented on."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(seed).standard_normal((n, *input_shape[1:])).astype(np.float32)
    logits = np.concatenate([session.run(None, {"x": x[i : i + 1]})[0] for i in range(n)])
    return x, ((logits - logits.mean(0)) / logits.std(0)).argmax(1)


def independent_macs(model: nn.Module, input_shape) -> dict[str, int]:
    """MACs of convolutions, linear layers and pooling, counted from the torch modules themselves."""
    counts = {"conv": 0, "dense": 0, "pool": 0}

    def hook(module, inputs, output):
        if isinstance(module, (nn.Conv1d, nn.Conv2d)):
            counts["conv"] += output.numel() * module.in_channels // module.groups * math.prod(module.kernel_size)
        elif isinstance(module, nn.Linear):
            counts["dense"] += output.numel() * module.in_features
        elif isinstance(module, (nn.MaxPool1d, nn.MaxPool2d)):
            k = (
                module.kernel_size
                if isinstance(module.kernel_size, tuple)
                else (module.kernel_size,) * (output.dim() - 2)
            )
            counts["pool"] += output.numel() * math.prod(k)
        elif isinstance(module, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)):
            counts["pool"] += inputs[0].numel()

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    with torch.no_grad():
        model(torch.zeros(input_shape))
    for h in handles:
        h.remove()
    return counts
