"""Exit heads: small classifiers on pooled features, trained after training with the backbone frozen.

Trained with numpy and scipy's L-BFGS on the cached features (no torch at run time), deterministic
for a seed. Features are standardised for training and the standardisation is folded back into the
first layer, so a deployed head is just pooling followed by one or two dense layers. A convolutional
head (`grid_conv`) pools the map to a small grid, runs a 1x1 convolution and ReLU on every grid cell, averages
the cells and classifies: its first layer is the convolution's (in channels, out channels) matrix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy.optimize import minimize

from eenn_tvm.data import read_arrays
from eenn_tvm.errors import EennError

# Pooled views of a feature map, by adaptive average pooling into this many bins per spatial dim: global average,
# 2 bins (flattened into one feature vector), and the grid the convolutional head runs on (kept as cells).
POOL_BINS = {"gap": 1, "pool2": 2}
GRID_BINS = {1: 8, 2: 4}  # spatial dims -> bins: 8 cells on a 1-D map, 4x4 on a 2-D one


class HeadKind(NamedTuple):
    pooling: str  # the pooled view it reads
    hidden: int | None  # units of the hidden layer; None: a linear head
    pointwise: bool = False  # the hidden layer is a 1x1 convolution on each grid cell, averaged after its ReLU


HEAD_KINDS = {
    "gap_linear": HeadKind("gap", None),
    "pool2_linear": HeadKind("pool2", None),
    "pool2_mlp": HeadKind("pool2", 32),
    "grid_conv": HeadKind("grid", 32, pointwise=True),
}
L2 = 1e-3  # weight decay on standardised features
MAX_ITER = 200
# Heads train on a seeded subsample at most this large: their few parameters gain little from more,
# and the matrix products over the samples are what training costs.
MAX_TRAIN_SAMPLES = 20_000
MAX_GRID_TRAIN_SAMPLES = 8_000  # a convolutional head's products run over every grid cell (8 or 16 per sample)
MAX_POOL2_CHANNELS = 256


@dataclass
class Head:
    kind: str
    layers: list[tuple[np.ndarray, np.ndarray]]  # (weight (in, out), bias (out,)) per dense layer; ReLU between

    @property
    def pooling(self) -> str:
        return HEAD_KINDS[self.kind].pooling

    @property
    def pointwise(self) -> bool:
        return HEAD_KINDS[self.kind].pointwise

    @property
    def classes(self) -> int:
        return self.layers[-1][1].shape[0]

    def logits(self, features: np.ndarray) -> np.ndarray:
        """From pooled features: (N, F), or (N, C, cells) for a convolutional head."""
        a, cells = _rows(features) if self.pointwise else (features, 1)
        for i, (w, b) in enumerate(self.layers):
            a = a @ w + b
            if i < len(self.layers) - 1:
                a = np.maximum(a, 0)
                if i == 0 and cells > 1:
                    a = a.reshape(-1, cells, a.shape[1]).mean(1)
        return a

    def macs(self, shape: list[int]) -> int:
        """Pooling (one per input element) plus the dense layers (one per weight); ReLUs one per unit. A
        convolutional head's first layer and its ReLU run on every grid cell, and averaging the cells is one per
        cell and unit."""
        pooling = math.prod(shape[1:]) if len(shape) > 2 else 0
        cells = pooled_shape(shape, self.pooling)[1] if self.pointwise else 1
        w0, b0 = self.layers[0]
        dense = sum(w.size for w, _ in self.layers) + (cells - 1) * w0.size
        relus = sum(b.size for _, b in self.layers[:-1]) + (cells - 1) * b0.size
        averaging = cells * b0.size if self.pointwise else 0
        return pooling + dense + relus + averaging

    def param_bytes(self) -> int:
        return 4 * sum(w.size + b.size for w, b in self.layers)

    def save(self, path: Path) -> None:
        arrays = {f"{name}{k}": a for k, layer in enumerate(self.layers) for name, a in zip("wb", layer)}
        np.savez(path, kind=np.array(self.kind), **arrays)

    @classmethod
    def load(cls, path: Path, kind: str, shape: list[int], classes: int) -> Head:
        """A head `save` wrote, checked against what the plan says sits there: a `kind` head at a point of `shape`
        with `classes` outputs (a missing, swapped or replaced file is refused, not run)."""
        again = "run `eenn-tvm augment` again"
        if not path.is_file():
            raise EennError(f"{path}: the exit head's weights are missing: {again}")
        arrays = read_arrays(path, None, again)
        count = sum(1 for name in arrays if name.startswith("w"))
        try:
            head = cls(str(arrays["kind"]), [(arrays[f"w{k}"], arrays[f"b{k}"]) for k in range(count)])
        except KeyError as err:
            raise EennError(f"{path}: not an exit head (no array {err}): {again}") from None
        if head.kind != kind:
            raise EennError(f"{path}: a {head.kind} head where the plan has a {kind} head (swapped files?): {again}")
        if len(head.layers) != (1 if HEAD_KINDS[kind].hidden is None else 2):
            raise EennError(f"{path}: has {len(head.layers)} layers, not those of a {kind} head: {again}")
        width = pooled_shape(shape, head.pooling)[0]  # features, or a convolutional head's channels
        for w, b in head.layers:
            fits = w.ndim == 2 and w.shape[0] == width and b.shape == (w.shape[-1],)
            if not fits or w.dtype != np.float32 or b.dtype != np.float32 or not np.isfinite(w).all():
                raise EennError(f"{path}: its layers do not fit a {kind} head at a {shape} point: {again}")
            width = w.shape[1]
        if width != classes:
            raise EennError(f"{path}: gives {width} classes where the model has {classes}: {again}")
        return head


def _rows(features: np.ndarray) -> tuple[np.ndarray, int]:
    """(N, C, cells) -> (N * cells, C), the cells of a sample consecutive: one row per 1x1 convolution."""
    n, channels, cells = features.shape
    return features.transpose(0, 2, 1).reshape(n * cells, channels), cells


def bins_of(pooling: str, shape: list[int] | tuple[int, ...]) -> int:
    """Bins per spatial dim of a pooled view of a map of `shape` (batch, C, *spatial)."""
    return GRID_BINS[len(shape) - 2] if pooling == "grid" else POOL_BINS[pooling]


def pooled_shape(shape: list[int], pooling: str) -> tuple[int, ...]:
    """Per sample, a (1, C, *spatial) map pooled into bins_of(pooling) per spatial dim: (C * bins**dims,) features,
    or (C, cells) for the grid a convolutional head reads."""
    cells = bins_of(pooling, shape) ** (len(shape) - 2)
    return (shape[1], cells) if pooling == "grid" else (shape[1] * cells,)


def kinds_for(shape: list[int]) -> list[str]:
    """Head kinds worth training at a point. 2x2 pooling recovers the spatial detail a narrow map loses to global
    pooling; it adds nothing on a map with no spatial extent, and on a wide one (more than MAX_POOL2_CHANNELS)
    global pooling alone is rich, while the 2x2 heads would be 4x larger (a ResNet-152's 1024-channel points:
    4096 inputs per head) and would dominate the training time of the whole search. The convolutional head needs a
    1-D or 2-D map at least as large as its grid."""
    spatial = math.prod(shape[2:]) if len(shape) > 2 else 1
    detail = spatial > 1 and shape[1] <= MAX_POOL2_CHANNELS
    grid = detail and len(shape) - 2 in GRID_BINS and min(shape[2:]) >= GRID_BINS[len(shape) - 2]
    wanted = {"gap": True, "pool2": detail, "grid": grid}
    return [k for k, kind in HEAD_KINDS.items() if wanted[kind.pooling]]


def poolings_for(shape: list[int]) -> list[str]:
    """The pooled views the heads at a point read (the feature run computes only these)."""
    return sorted({HEAD_KINDS[k].pooling for k in kinds_for(shape)})


def train(
    kind: str,
    x: np.ndarray,
    y: np.ndarray,
    classes: int,
    seed: int,
    max_iter: int = MAX_ITER,
    weights: np.ndarray | None = None,
) -> Head:
    """Fit a head of `kind` to pooled features x (N, F), or (N, C, cells) for a convolutional head, and labels y
    (at most `max_iter` L-BFGS iterations); each sample's loss weighted by `weights` (N,) when given."""
    spec = HEAD_KINDS[kind]
    rng = np.random.default_rng(seed)
    cap = MAX_GRID_TRAIN_SAMPLES if spec.pointwise else MAX_TRAIN_SAMPLES
    weights = np.ones(len(x)) if weights is None else np.asarray(weights, np.float64)
    if len(x) > cap:
        keep = np.sort(rng.choice(len(x), cap, replace=False))
        x, y, weights = x[keep], y[keep], weights[keep]
    rows, cells = _rows(x) if spec.pointwise else (x, 1)
    rows = rows.astype(np.float64)
    mean, scale = rows.mean(0), rows.std(0) + 1e-6
    z = ((rows - mean) / scale).astype(np.float32)
    hidden = spec.hidden
    dims = [(z.shape[1], classes)] if hidden is None else [(z.shape[1], hidden), (hidden, classes)]
    layers = _fit(dims, z, cells, y, weights / weights.sum(), rng, hidden is None, max_iter)
    w0, b0 = layers[0]
    layers[0] = (w0 / scale[:, None], b0 - (mean / scale) @ w0)
    return Head(kind, [(w.astype(np.float32), b.astype(np.float32)) for w, b in layers])


def _fit(dims, z, cells, y, weights, rng, zero_init: bool, max_iter: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Minimise the `weights`-weighted softmax cross-entropy (weights sum to 1) + L2 over dense layers with ReLU
    between, by L-BFGS. z holds `cells` consecutive rows per sample: the first layer runs on each, and its ReLU
    output is averaged over them (a 1x1 convolution on a grid, then global average pooling)."""
    sizes = [(i * o, o) for i, o in dims]
    onehot = np.eye(dims[-1][1], dtype=np.float32)[y]
    weights = weights.astype(np.float32)[:, None]

    def unpack(theta):
        layers, at = [], 0
        for (i, o), (nw, nb) in zip(dims, sizes):
            w = theta[at : at + nw].reshape(i, o).astype(np.float32)
            layers.append((w, theta[at + nw : at + nw + nb].astype(np.float32)))
            at += nw + nb
        return layers

    def loss_and_grad(theta):
        layers = unpack(theta)
        acts, relus = [z], []  # the input of each layer; each hidden layer's ReLU output (before averaging)
        for k, (w, b) in enumerate(layers):
            a = acts[-1] @ w + b
            if k < len(layers) - 1:
                a = np.maximum(a, 0)
                relus.append(a)
                if k == 0 and cells > 1:
                    a = a.reshape(-1, cells, a.shape[1]).mean(1)
            acts.append(a)
        logits = acts[-1] - acts[-1].max(1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(1, keepdims=True)
        n = len(y)
        nll = -(weights[:, 0] * np.log(p[np.arange(n), y] + 1e-12)).sum()
        loss = nll + 0.5 * L2 * sum((w * w).sum() for w, _ in layers)
        delta = (p - onehot) * weights
        grads = []
        for k in range(len(layers) - 1, -1, -1):
            w, _ = layers[k]
            grads.append((acts[k].T @ delta + L2 * w, delta.sum(0)))
            if k:
                delta = delta @ w.T
                if k == 1 and cells > 1:
                    delta = np.repeat(delta / cells, cells, axis=0)
                delta = delta * (relus[k - 1] > 0)
        flat = np.concatenate([g.ravel() for gw, gb in reversed(grads) for g in (gw, gb)])
        return float(loss), flat.astype(np.float64)

    parts = []
    for (i, _), (nw, nb) in zip(dims, sizes):
        w = np.zeros(nw) if zero_init else rng.standard_normal(nw) * math.sqrt(2.0 / i)
        parts += [w, np.zeros(nb)]
    result = minimize(loss_and_grad, np.concatenate(parts), jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    return unpack(result.x)
