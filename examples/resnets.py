"""The ResNet family the examples and benchmarks train or time (development only, needs torch).

`ResNet((n1, n2, n3), widths)` is the CIFAR layout of He et al.: a 3x3 stem, stages of residual blocks, the
first block of every stage after the first halving the resolution, global average pooling, one dense layer.
Basic blocks (two 3x3 convolutions) give ResNet-8 (1, 1, 1: the MLPerf Tiny layout) and ResNet-20/56/110
(3, 9, 18 per stage); bottleneck blocks (1x1, 3x3, 1x1, four times wider out) on four stages (3, 8, 36, 3) give
the ResNet-152 commonly trained on CIFAR-10.
"""

import torch
from torch import nn


def conv_bn(cin: int, cout: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout))


def shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    return nn.Identity() if stride == 1 and cin == cout else conv_bn(cin, cout, 1, stride)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(conv_bn(cin, width, 3, stride), nn.ReLU(), conv_bn(width, width, 3, 1))
        self.skip = shortcut(cin, width, stride)

    def forward(self, x):
        return torch.relu(self.body(x) + self.skip(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        out = width * self.expansion
        self.body = nn.Sequential(
            conv_bn(cin, width, 1, 1), nn.ReLU(), conv_bn(width, width, 3, stride), nn.ReLU(), conv_bn(width, out, 1, 1)
        )
        self.skip = shortcut(cin, out, stride)

    def forward(self, x):
        return torch.relu(self.body(x) + self.skip(x))


class ResNet(nn.Module):
    def __init__(
        self,
        blocks: tuple[int, ...],
        widths: tuple[int, ...] = (16, 32, 64),
        block=BasicBlock,
        in_channels: int = 1,
        classes: int = 10,
    ):
        super().__init__()
        self.stem = nn.Sequential(conv_bn(in_channels, widths[0], 3, 1), nn.ReLU())
        layers, cin = [], widths[0]
        for stage, (count, width) in enumerate(zip(blocks, widths)):
            for i in range(count):
                layers.append(block(cin, width, 2 if stage > 0 and i == 0 else 1))
                cin = width * block.expansion
        self.stages = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes))

    def forward(self, x):
        return self.head(self.stages(self.stem(x)))


def cifar_resnet(depth: int, in_channels: int = 3, classes: int = 10) -> ResNet:
    """ResNet-8/20/56/110 (basic blocks, depth = 6n + 2) or ResNet-152 (bottlenecks, 3-8-36-3, widths 64-512)."""
    if depth == 152:
        return ResNet((3, 8, 36, 3), (64, 128, 256, 512), Bottleneck, in_channels, classes)
    if depth == 8:
        return ResNet((1, 1, 1), in_channels=in_channels, classes=classes)
    if (depth - 2) % 6:
        raise ValueError(f"depth {depth}: basic-block CIFAR ResNets have depth 6n + 2 (8, 20, 56, 110) or 152")
    n = (depth - 2) // 6
    return ResNet((n, n, n), in_channels=in_channels, classes=classes)
