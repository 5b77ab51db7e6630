"""Train the ECG example: a plain 1-D CNN that classifies 5 s rhythm strips.

Development only (needs torch). Reads train.npz/test.npz from make_data.py, writes ecg_cnn.onnx beside this file
(torch's legacy exporter, batch-norm folded):

    python examples/ecg/make_data.py --per-class 2000 && python examples/ecg/train_cnn1d.py

(`--per-class 2000`, and calibration and test a quarter of it: the data the shipped model was trained on;
make_data.py's default makes more, for augment.)
"""

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # examples/training.py

from training import adamw_one_cycle, fit, load_split, train_and_export  # noqa: E402

# (channels, kernel, stride, dilation). Strides first, then dilations: by 36 % of the MACs the receptive field
# spans 2 s, two RR intervals at 60 bpm, which telling an irregular rhythm from a regular one needs; the two
# widest layers at the end do most of the work (64 % of the MACs), as in the usual ECG CNNs
BLOCKS = [(24, 5, 2, 1), (32, 5, 2, 1), (32, 3, 1, 2), (48, 3, 1, 4), (64, 3, 1, 8), (96, 3, 1, 1), (96, 3, 1, 2)]


def conv(cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1) -> list[nn.Module]:
    return [
        nn.Conv1d(cin, cout, kernel, stride, dilation * (kernel // 2), dilation, bias=False),
        nn.BatchNorm1d(cout),
        nn.ReLU(),
    ]


class CNN1D(nn.Module):
    """A strided stem, seven conv blocks, global average pooling, dense."""

    def __init__(self, classes: int = 4):
        super().__init__()
        layers, cin = conv(1, 16, 7, 2) + [nn.MaxPool1d(2)], 16  # 62.5 Hz: still 5-7 samples per P wave
        for cout, kernel, stride, dilation in BLOCKS:
            layers, cin = layers + conv(cin, cout, kernel, stride, dilation), cout
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(cin, classes))

    def forward(self, x):
        return self.head(self.features(x))


def augment(xb: torch.Tensor, _idx) -> torch.Tensor:
    """Label-preserving changes against memorising 8,000 strips: electrode polarity, more white noise; then
    normalised again, as make_data.py normalises."""
    sign = torch.where(torch.rand(len(xb), 1, 1) < 0.5, -1.0, 1.0)
    xb = sign * xb + 0.3 * torch.rand(len(xb), 1, 1) * torch.randn_like(xb)
    return (xb - xb.mean(-1, keepdim=True)) / xb.std(-1, keepdim=True)


def train(epochs: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    x, y = load_split(HERE, "train")
    model = CNN1D(int(y.max()) + 1)
    opt, sched = adamw_one_cycle(model, 1e-2, epochs * (len(x) // 64))
    return fit(model, x, y, opt, sched, epochs, 64, np.random.default_rng(seed), augment)


def main():
    train_and_export(
        __doc__,
        train,
        20,
        HERE,
        "ecg_cnn.onnx",
        (1, 1, 1250),
        "ecg",
        "strips from a random stream training never drew from",
    )


if __name__ == "__main__":
    main()
