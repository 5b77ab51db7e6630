"""Read the Fashion-MNIST idx files that Debian's `dataset-fashion-mnist` package installs."""

import gzip
from pathlib import Path

import numpy as np

DATA_DIR = Path("/usr/share/datasets/fashion-mnist")


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images as float32 (N, 1, 28, 28) scaled to [0, 1], labels as int64 (N,)."""
    prefix = {"train": "train", "test": "t10k"}[split]
    images = _read_idx(DATA_DIR / f"{prefix}-images-idx3-ubyte.gz")
    labels = _read_idx(DATA_DIR / f"{prefix}-labels-idx1-ubyte.gz")
    x = (images.astype(np.float32) / 255.0)[:, None, :, :]
    return x, labels.astype(np.int64)
