"""Train the example model: a ResNet-8 (MLPerf Tiny layout) on all 60k Fashion-MNIST training images.

Development only (needs torch). Writes resnet8.onnx beside this file, exported with torch's legacy
exporter (batch-norm folded into the convolutions). About 4 minutes on 2 cores:

    python examples/fashion_mnist/train_resnet8.py
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fashion_mnist import load

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # examples/training.py

from training import accuracy, export, fit  # noqa: E402


def conv_bn(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(conv_bn(cin, cout, stride), nn.ReLU(), conv_bn(cout, cout, 1))
        self.skip = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x):
        return torch.relu(self.body(x) + self.skip(x))


class ResNet8(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(conv_bn(1, 16, 1), nn.ReLU())
        self.stages = nn.Sequential(BasicBlock(16, 16, 1), BasicBlock(16, 32, 2), BasicBlock(32, 64, 2))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, classes))

    def forward(self, x):
        return self.head(self.stages(self.stem(x)))


def train(epochs: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x, y = load("train")
    model = ResNet8()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=epochs * (len(x) // 128))

    def flip(xb: torch.Tensor, idx: np.ndarray) -> torch.Tensor:
        # Random horizontal flips: clothes are mirror-symmetric, and it costs nothing.
        mirrored = torch.from_numpy(rng.random(len(idx)) < 0.5)
        return torch.where(mirrored[:, None, None, None], xb.flip(3), xb)

    return fit(model, x, y, opt, sched, epochs, 128, rng, flip)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--output", type=Path, default=HERE / "resnet8.onnx")
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = train(args.epochs, args.seed).eval()
    x_test, y_test = load("test")
    print(f"test accuracy: {accuracy(model, x_test, y_test):.4f}")
    export(model, (1, 1, 28, 28), "image", args.output)


if __name__ == "__main__":
    main()
