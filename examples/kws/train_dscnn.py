"""Train the keyword-spotting example: the MLPerf Tiny DS-CNN layout on the synthesised keywords.

Development only (needs torch). Reads train.npz/test.npz from make_data.py, writes dscnn.onnx beside this file
(torch's legacy exporter, batch-norm folded):

    python examples/kws/make_data.py --per-class 800 && python examples/kws/train_dscnn.py

(`--per-class 800`: the data the shipped model was trained on; make_data.py's default makes more, for augment.)
"""

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # examples/training.py

from training import adamw_one_cycle, fit, load_split, train_and_export  # noqa: E402

WIDTH = 64


def separable(channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels, channels, 3, 1, 1, groups=channels, bias=False),
        nn.BatchNorm2d(channels),
        nn.ReLU(),
        nn.Conv2d(channels, channels, 1, bias=False),
        nn.BatchNorm2d(channels),
        nn.ReLU(),
    )


class DSCNN(nn.Module):
    """MLPerf Tiny KWS: a 10x4 strided convolution, four depthwise-separable blocks, average pooling, dense."""

    def __init__(self, classes: int = 12):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, WIDTH, (10, 4), (2, 2), (5, 1), bias=False), nn.BatchNorm2d(WIDTH), nn.ReLU()
        )
        self.blocks = nn.Sequential(*[separable(WIDTH) for _ in range(4)])
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(WIDTH, classes))

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


def train(epochs: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    x, y = load_split(HERE, "train")
    model = DSCNN()
    opt, sched = adamw_one_cycle(model, 1e-3, epochs * (len(x) // 64))
    return fit(model, x, y, opt, sched, epochs, 64, np.random.default_rng(seed))


def main():
    train_and_export(__doc__, train, 30, HERE, "dscnn.onnx", (1, 1, 49, 10), "mfcc", "voices never heard in training")


if __name__ == "__main__":
    main()
