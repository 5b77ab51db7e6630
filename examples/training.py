"""What the example training scripts share (development only, needs torch): the epoch loop over numpy
arrays, accuracy, and the ONNX export the examples ship (torch's legacy exporter, batch-norm folded)."""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn


def fit(model: nn.Module, x: np.ndarray, y: np.ndarray, opt, sched, epochs: int, batch: int, rng: np.random.Generator,
        augment: Callable[[torch.Tensor, np.ndarray], torch.Tensor] = lambda xb, _idx: xb) -> nn.Module:
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
    torch.onnx.export(model.eval(), torch.zeros(*input_shape), path, input_names=[input_name], output_names=["logits"],
                      dynamo=False, opset_version=17)
    print(f"wrote {path}")
