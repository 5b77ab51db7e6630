"""Exit heads: small classifiers on pooled features, trained after training with the backbone frozen.

Trained with numpy and scipy's L-BFGS on the cached features (no torch at run time), deterministic
for a seed. Features are standardised for training and the standardisation is folded back into the
first layer, so a deployed head is just pooling followed by one or two dense layers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from eenn_tvm.data import read_arrays
from eenn_tvm.errors import EennError

# Pooled views of a feature map: global average, and adaptive average into 2 bins per spatial dim.
POOL_BINS = {"gap": 1, "pool2": 2}
# kind -> (pooling of the feature map, hidden units or None for a linear head)
HEAD_KINDS = {
    "gap_linear": ("gap", None),
    "pool2_linear": ("pool2", None),
    "pool2_mlp": ("pool2", 32),
}
L2 = 1e-3  # weight decay on standardised features
MAX_ITER = 200
# Heads train on a seeded subsample at most this large: their few parameters gain little from more,
# and the matrix products over the samples are what training costs.
MAX_TRAIN_SAMPLES = 20_000
MAX_POOL2_CHANNELS = 256


@dataclass
class Head:
    kind: str
    layers: list[tuple[np.ndarray, np.ndarray]]  # (weight (in, out), bias (out,)) per dense layer; ReLU between

    @property
    def pooling(self) -> str:
        return HEAD_KINDS[self.kind][0]

    @property
    def classes(self) -> int:
        return self.layers[-1][1].shape[0]

    def logits(self, features: np.ndarray) -> np.ndarray:
        a = features
        for i, (w, b) in enumerate(self.layers):
            a = a @ w + b
            if i < len(self.layers) - 1:
                a = np.maximum(a, 0)
        return a

    def macs(self, shape: list[int]) -> int:
        """Pooling (one per input element) plus the dense layers (one per weight); ReLUs one per unit."""
        pooling = math.prod(shape[1:]) if len(shape) > 2 else 0
        dense = sum(w.size for w, _ in self.layers)
        relus = sum(b.size for _, b in self.layers[:-1])
        return pooling + dense + relus

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
        width = pooled_width(shape, head.pooling)
        for w, b in head.layers:
            fits = w.ndim == 2 and w.shape[0] == width and b.shape == (w.shape[-1],)
            if not fits or w.dtype != np.float32 or b.dtype != np.float32 or not np.isfinite(w).all():
                raise EennError(f"{path}: its layers do not fit a {kind} head at a {shape} point: {again}")
            width = w.shape[1]
        if width != classes:
            raise EennError(f"{path}: gives {width} classes where the model has {classes}: {again}")
        return head


def pooled_width(shape: list[int], pooling: str) -> int:
    """Features per sample after pooling a (1, C, *spatial) map into POOL_BINS[pooling] per spatial dim."""
    return shape[1] * POOL_BINS[pooling] ** (len(shape) - 2)


def kinds_for(shape: list[int]) -> list[str]:
    """Head kinds worth training at a point. 2x2 pooling recovers the spatial detail a narrow map loses to global
    pooling; it adds nothing on a map with no spatial extent, and on a wide one (more than MAX_POOL2_CHANNELS)
    global pooling alone is rich, while the 2x2 heads would be 4x larger (a ResNet-152's 1024-channel points:
    4096 inputs per head) and would dominate the training time of the whole search."""
    spatial = math.prod(shape[2:]) if len(shape) > 2 else 1
    detail = spatial > 1 and shape[1] <= MAX_POOL2_CHANNELS
    return [k for k, (pooling, _) in HEAD_KINDS.items() if pooling == "gap" or detail]


def poolings_for(shape: list[int]) -> list[str]:
    """The pooled views the heads at a point read (the feature run computes only these)."""
    return sorted({HEAD_KINDS[k][0] for k in kinds_for(shape)})


def train(kind: str, x: np.ndarray, y: np.ndarray, classes: int, seed: int, max_iter: int = MAX_ITER) -> Head:
    """Fit a head of `kind` to pooled features x (N, F) and labels y (at most `max_iter` L-BFGS iterations)."""
    _, hidden = HEAD_KINDS[kind]
    rng = np.random.default_rng(seed)
    if len(x) > MAX_TRAIN_SAMPLES:
        keep = np.sort(rng.choice(len(x), MAX_TRAIN_SAMPLES, replace=False))
        x, y = x[keep], y[keep]
    x = x.astype(np.float64)
    mean, scale = x.mean(0), x.std(0) + 1e-6
    z = ((x - mean) / scale).astype(np.float32)
    dims = [(z.shape[1], classes)] if hidden is None else [(z.shape[1], hidden), (hidden, classes)]
    layers = _fit(dims, z, y, rng, hidden is None, max_iter)
    w0, b0 = layers[0]
    layers[0] = (w0 / scale[:, None], b0 - (mean / scale) @ w0)
    return Head(kind, [(w.astype(np.float32), b.astype(np.float32)) for w, b in layers])


def _fit(dims, z, y, rng, zero_init: bool, max_iter: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Minimise softmax cross-entropy + L2 over dense layers with ReLU between, by L-BFGS."""
    sizes = [(i * o, o) for i, o in dims]
    onehot = np.eye(dims[-1][1], dtype=np.float32)[y]

    def unpack(theta):
        layers, at = [], 0
        for (i, o), (nw, nb) in zip(dims, sizes):
            w = theta[at : at + nw].reshape(i, o).astype(np.float32)
            layers.append((w, theta[at + nw : at + nw + nb].astype(np.float32)))
            at += nw + nb
        return layers

    def loss_and_grad(theta):
        layers = unpack(theta)
        acts = [z]
        for k, (w, b) in enumerate(layers):
            a = acts[-1] @ w + b
            acts.append(np.maximum(a, 0) if k < len(layers) - 1 else a)
        logits = acts[-1] - acts[-1].max(1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(1, keepdims=True)
        n = len(z)
        loss = -np.log(p[np.arange(n), y] + 1e-12).mean() + 0.5 * L2 * sum((w * w).sum() for w, _ in layers)
        delta = (p - onehot) / n
        grads = []
        for k in range(len(layers) - 1, -1, -1):
            w, _ = layers[k]
            grads.append((acts[k].T @ delta + L2 * w, delta.sum(0)))
            if k:
                delta = (delta @ w.T) * (acts[k] > 0)
        flat = np.concatenate([g.ravel() for gw, gb in reversed(grads) for g in (gw, gb)])
        return float(loss), flat.astype(np.float64)

    parts = []
    for (i, _), (nw, nb) in zip(dims, sizes):
        w = np.zeros(nw) if zero_init else rng.standard_normal(nw) * math.sqrt(2.0 / i)
        parts += [w, np.zeros(nb)]
    result = minimize(loss_and_grad, np.concatenate(parts), jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    return unpack(result.x)
