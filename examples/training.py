"""What the example training scripts share (development only, needs torch): the epoch loop over numpy
arrays, accuracy, and the ONNX export the examples ship (torch's legacy exporter, batch-norm folded)."""

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn


def fit(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    opt,
    sched,
    epochs: int,
    batch: int,
    rng: np.random.Generator,
    augment: Callable[[torch.Tensor, np.ndarray], torch.Tensor] = lambda xb, _idx: xb,
) -> nn.Module:
    """Shuffled mini-batches, one scheduler step per batch; `augment` may change each batch before it is used."""
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(len(x))
        for i in range(len(x) // batch):
            idx = order[i * batch : (i + 1) * batch]
            xb = augment(torch.from_numpy(x[idx]), idx)
            loss = nn.functional.cross_entropy(model(xb), torch.from_numpy(y[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        print(f"epoch {epoch + 1}/{epochs}: loss {loss.item():.3f}", flush=True)
    return model


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(torch.from_numpy(x[i : i + 1000])).argmax(1) for i in range(0, len(x), 1000)])
    return float((pred.numpy() == y).mean())


def export(model: nn.Module, input_shape: tuple[int, ...], input_name: str, path: Path) -> None:
    torch.onnx.export(
        model.eval(),
        torch.zeros(*input_shape),
        path,
        input_names=[input_name],
        output_names=["logits"],
        dynamo=False,
        opset_version=17,
    )
    print(f"wrote {path}")


def load_split(folder: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """x and y of folder/name.npz, as the examples' make_data.py scripts write them."""
    with np.load(folder / f"{name}.npz") as npz:
        return npz["x"], npz["y"]


def adamw_one_cycle(model: nn.Module, weight_decay: float, total_steps: int, lr: float = 3e-3):
    """AdamW under a one-cycle schedule: what the keyword and ECG examples train with."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    return opt, torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total_steps)


def train_and_export(
    doc: str,
    train: Callable[[int, int], nn.Module],
    epochs: int,
    folder: Path,
    output: str,
    input_shape: tuple[int, ...],
    input_name: str,
    test_note: str,
) -> None:
    """The examples' command line: --epochs, --seed, -o; train, print the accuracy on folder/test.npz, export."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--output", type=Path, default=folder / output)
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = train(args.epochs, args.seed).eval()
    x_test, y_test = load_split(folder, "test")
    print(f"test accuracy ({test_note}): {accuracy(model, x_test, y_test):.4f}")
    export(model, input_shape, input_name, args.output)
