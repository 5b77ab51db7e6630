"""Train the example models: CIFAR-style ResNets on Fashion-MNIST's training images.

Development only (needs torch). Writes resnet{depth}.onnx beside this file, exported with torch's legacy
exporter (batch-norm folded into the convolutions). ResNet-8 (the MLPerf Tiny layout, the README's example)
takes about 4 minutes on 2 cores, ResNet-20 (the deeper benchmark model) about 12:

    python examples/fashion_mnist/train_resnet.py [--depth 8|20] [--hold-out 0.2]

The network never sees the --hold-out share of train.npz that `augment --data train.npz` sets the thresholds on
(eenn_tvm.data.split, at augment's default --seed and a --val-fraction of that share): the guarantee assumes those
images are as new to the network as the test images, and on its own training images a ResNet-8 trained on all 60k
is 2 points more accurate than on new ones (94.2 % against 92.1 %). Both `resnet8.onnx` and `resnet20.onnx` were
trained so, on 48,000 images (test accuracy 91.83 % and 92.99 %).
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from fashion_mnist import load
from torch import nn

from eenn_tvm.data import split

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # examples/training.py

from resnets import cifar_resnet  # noqa: E402
from training import accuracy, export, fit  # noqa: E402


def train(depth: int, epochs: int, seed: int, hold_out: float) -> nn.Module:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x, y = load("train")
    if hold_out > 0:
        kept, _ = split(y, hold_out, 0)  # as augment splits at --seed 0 (its default) and --val-fraction hold_out
        x, y = x[kept], y[kept]
    model = cifar_resnet(depth, in_channels=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=epochs * (len(x) // 128))

    def flip(xb: torch.Tensor, idx: np.ndarray) -> torch.Tensor:
        # Random horizontal flips: clothes are mirror-symmetric, and it costs nothing.
        mirrored = torch.from_numpy(rng.random(len(idx)) < 0.5)
        return torch.where(mirrored[:, None, None, None], xb.flip(3), xb)

    return fit(model, x, y, opt, sched, epochs, 128, rng, flip)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=8, choices=(8, 20, 56))
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hold-out", type=float, default=0.2, help="share of the images left for the thresholds")
    parser.add_argument("-o", "--output", type=Path, help="default: resnet{depth}.onnx beside this script")
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = train(args.depth, args.epochs, args.seed, args.hold_out).eval()
    x_test, y_test = load("test")
    print(f"test accuracy: {accuracy(model, x_test, y_test):.4f}")
    export(model, (1, 1, 28, 28), "image", args.output or HERE / f"resnet{args.depth}.onnx")


if __name__ == "__main__":
    main()
