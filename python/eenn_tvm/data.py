"""Labelled data: `.npz` files with `x` (N, ...) float32 and `y` (N,) integer labels, checked against the model;
optionally `groups` (N,) integers naming who or what each sample comes from (speaker, patient, recording), which
makes the accuracy margin account for samples of one group being alike."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eenn_tvm.errors import EennError

MIN_PER_CLASS = 10  # below this a class cannot be split into head-training and threshold-setting parts


@dataclass
class Dataset:
    x: np.ndarray  # (N, *sample_shape) float32
    y: np.ndarray  # (N,) int64
    groups: np.ndarray | None = None  # (N,) int64: samples of a group are not independent

    def __len__(self) -> int:
        return len(self.y)


def load_npz(path: str | Path, sample_shape: tuple[int, ...], classes: int) -> Dataset:
    """Read and check a data file for a model whose input is (1, *sample_shape) and that has `classes` outputs."""
    path = Path(path)
    if not path.is_file():
        raise EennError(f"{path}: no such file: give an .npz with arrays x (N, ...) and y (N,)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = {"x", "y"} - set(npz.files)
            if missing:
                raise EennError(f"{path}: has no array {' or '.join(sorted(missing))}: it needs x (N, ...) and y (N,)")
            x, y = npz["x"], npz["y"]
            groups = npz["groups"] if "groups" in npz.files else None
    except (zipfile.BadZipFile, ValueError, OSError) as err:
        raise EennError(f"{path}: not a readable .npz file ({err})") from None
    return check(Dataset(x, y, groups), sample_shape, classes, str(path))


def check(data: Dataset, sample_shape: tuple[int, ...], classes: int, where: str = "data") -> Dataset:
    x, y = data.x, data.y
    if x.ndim < 1 or y.ndim != 1 or len(x) != len(y):
        raise EennError(f"{where}: x is {x.shape} and y is {y.shape}: they need the same number of samples N")
    if tuple(x.shape[1:]) != tuple(sample_shape):
        want = "x".join(map(str, sample_shape))
        raise EennError(f"{where}: samples are {'x'.join(map(str, x.shape[1:]))} but the model takes {want}")
    if not np.issubdtype(x.dtype, np.floating):
        raise EennError(f"{where}: x is {x.dtype}; it must be float32 (scaled as the model was trained)")
    if not np.issubdtype(y.dtype, np.integer):
        raise EennError(f"{where}: y is {y.dtype}; labels must be integers 0..{classes - 1}")
    if len(y) and (y.min() < 0 or y.max() >= classes):
        raise EennError(f"{where}: labels run from {y.min()} to {y.max()} but the model has {classes} classes")
    if not np.isfinite(x).all():
        raise EennError(f"{where}: x holds NaN or infinite values")
    groups = data.groups
    if groups is not None and (groups.shape != y.shape or not np.issubdtype(groups.dtype, np.integer)):
        raise EennError(
            f"{where}: groups is {groups.dtype} {groups.shape}: it must be integers, one per sample ({len(y)})"
        )
    return Dataset(
        np.ascontiguousarray(x, dtype=np.float32),
        y.astype(np.int64),
        None if groups is None else groups.astype(np.int64),
    )


def require_per_class(data: Dataset, classes: int, minimum: int = MIN_PER_CLASS, where: str = "data") -> None:
    counts = np.bincount(data.y, minlength=classes)
    if counts.min() < minimum:
        short = [str(c) for c in np.flatnonzero(counts < minimum)]
        have = "no samples" if minimum == 1 else f"fewer than {minimum} samples"
        raise EennError(
            f"{where}: class {', '.join(short[:5])} has {have} "
            f"(at least {minimum} per class are needed to train exits and set thresholds)"
        )


def split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A stratified, seeded split: sorted indices of (train, validation)."""
    if not 0 < val_fraction < 1:
        raise EennError(f"--val-fraction {val_fraction} must be between 0 and 1")
    rng = np.random.default_rng(seed)
    val = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rng.shuffle(members)
        val.append(members[: max(1, round(len(members) * val_fraction))])
    val_index = np.sort(np.concatenate(val))
    train_mask = np.ones(len(labels), bool)
    train_mask[val_index] = False
    return np.flatnonzero(train_mask), val_index


def load_split(
    path: str | Path,
    sample_shape: tuple[int, ...],
    classes: int,
    val_fraction: float | None,
    seed: int,
    calibration_path: str | Path | None = None,
) -> tuple[Dataset, np.ndarray, np.ndarray]:
    """All samples in one set (one backbone run) and the indices that train the heads and set the thresholds.

    Without a calibration file a stratified share (`val_fraction`) of the data sets the thresholds; with one (say,
    speakers or patients the heads never saw) the thresholds are set on it alone.
    """
    data = load_npz(path, sample_shape, classes)
    if calibration_path is None:
        require_per_class(data, classes)
        return (data, *split(data.y, val_fraction, seed))
    calibration = load_npz(calibration_path, sample_shape, classes)
    require_per_class(data, classes, minimum=1, where=str(path))
    require_per_class(calibration, classes, minimum=1, where=str(calibration_path))
    groups = None if calibration.groups is None else np.concatenate([np.full(len(data), -1), calibration.groups])
    both = Dataset(np.concatenate([data.x, calibration.x]), np.concatenate([data.y, calibration.y]), groups)
    return both, np.arange(len(data)), np.arange(len(data), len(both))
