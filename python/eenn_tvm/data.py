"""Labelled data: `.npz` files with `x` (N, ...) float32 and `y` (N,) integer labels, checked against the model;
optionally `groups` (N,) integers naming who or what each sample comes from (speaker, patient, recording), which
makes the accuracy margin account for samples of one group being alike. Stream data (`augment --stream`) also
carry `stream` (N,) integers naming the recording each window comes from and `order` (N,) the window's position in
it (distinct within a stream), and are put in stream order; the stream is then the group, unless `groups` names
whose recordings they are (one group per stream: a speaker's streams are alike).

A file (data, or any other `.npz` eenn-tvm reads: `read_arrays`) is checked before anything in it is inflated: it
must be a zip of `.npy` arrays (what `numpy.savez` writes), and the shape and dtype in each array's header must hold
no Python objects and fit in `EENN_MAX_DATA_GB` (a 2 MB file can inflate to gigabytes). Nothing is ever unpickled.
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib import format as npy

from eenn_tvm.errors import EennError

MIN_PER_CLASS = 10  # samples of each class a data file needs to train exits and set thresholds
MIN_SPLIT_PER_CLASS = 2  # of each class on each side of the split: heads to train, thresholds to set
LIMIT_VARIABLE = "EENN_MAX_DATA_GB"
DEFAULT_LIMIT_GB = 2.0
ARRAYS = ("x", "y", "groups", "stream", "order")  # what is read; other arrays in the file are left alone


@dataclass
class Dataset:
    x: np.ndarray  # (N, *sample_shape) float32
    y: np.ndarray  # (N,) int64
    groups: np.ndarray | None = None  # (N,) int64: samples of a group are not independent (stream data: see below)
    order: np.ndarray | None = None  # (N,) int64, stream data only: position in its stream
    stream: np.ndarray | None = None  # (N,) int64, stream data only: the recording; also the group, unless given

    def __len__(self) -> int:
        return len(self.y)

    @property
    def is_stream(self) -> bool:
        """Consecutive windows of recordings (`stream` and `order` given), not independent samples."""
        return self.order is not None

    def head(self, count: int) -> Dataset:
        """The first `count` samples (of stream data: the first windows in stream order)."""
        cut = slice(0, count)
        return Dataset(*(None if a is None else a[cut] for a in (self.x, self.y, self.groups, self.order, self.stream)))


def load_npz(path: str | Path, sample_shape: tuple[int, ...], classes: int) -> Dataset:
    """Read and check a data file for a model whose input is (1, *sample_shape) and that has `classes` outputs."""
    path = Path(path)
    if not path.is_file():
        what = "not a regular file" if path.exists() else "no such file"
        raise EennError(f"{path}: {what}: give an .npz with arrays x (N, ...) and y (N,)")
    arrays = read_arrays(path, ARRAYS, "save x (N, ...) and y (N,) with numpy.savez")
    missing = {"x", "y"} - arrays.keys()
    if missing:
        raise EennError(f"{path}: has no array {' or '.join(sorted(missing))}: it needs x (N, ...) and y (N,)")
    data = check(Dataset(arrays["x"], arrays["y"], arrays.get("groups")), sample_shape, classes, str(path))
    if "stream" in arrays or "order" in arrays:
        return as_streams(data, arrays, str(path))
    return data


def as_streams(data: Dataset, arrays: dict[str, np.ndarray], where: str) -> Dataset:
    """Windows of recordings, checked and put in stream order (by stream, then order). The group of a window is
    the data's (one per stream: a speaker's or a patient's recordings are alike) or else its stream."""
    n = len(data)
    for name in ("stream", "order"):
        a = arrays.get(name)
        if a is None:
            raise EennError(f"{where}: stream data need both stream and order (N,): {name} is missing")
        if a.shape != (n,) or not np.issubdtype(a.dtype, np.integer):
            raise EennError(f"{where}: {name} is {a.dtype} {a.shape}: it must be integers, one per sample ({n})")
    stream, order = arrays["stream"].astype(np.int64), arrays["order"].astype(np.int64)
    if n and order.min() < 0:
        raise EennError(f"{where}: order holds negative positions ({order.min()}): give 0, 1, 2, ... per stream")
    rank = np.lexsort((order, stream))
    repeated = np.flatnonzero((np.diff(stream[rank]) == 0) & (np.diff(order[rank]) == 0))
    if len(repeated):
        first = rank[repeated[0]]
        raise EennError(
            f"{where}: stream {stream[first]} has two windows at order {order[first]}: each position once per stream"
        )
    if data.groups is not None:
        mixed = np.flatnonzero((np.diff(stream[rank]) == 0) & (np.diff(data.groups[rank]) != 0))
        if len(mixed):
            raise EennError(
                f"{where}: stream {stream[rank[mixed[0]]]} holds windows of two groups: a stream is the recording of "
                "one group (one speaker, one patient)"
            )
    groups = stream if data.groups is None else data.groups
    return Dataset(data.x[rank], data.y[rank], groups[rank], order[rank], stream[rank])


def read_arrays(path: Path, names: tuple[str, ...] | None, advice: str) -> dict[str, np.ndarray]:
    """The arrays of an .npz file (those `names`, or all), their headers checked before anything is inflated:
    no pickled objects, no more than the size limit. An error names the file and ends with `advice`."""
    if not zipfile.is_zipfile(path):
        raise EennError(f"{path}: is {_what_instead(path)}, not an .npz: {advice}")
    try:
        with zipfile.ZipFile(path) as archive:
            members = _members(archive, path, names)
            _check_size(path, members)
            return {name: _read(archive, member) for name, member in members.items()}
    except (zipfile.BadZipFile, zlib.error, ValueError, EOFError, OSError) as err:
        raise EennError(f"{path}: a damaged .npz ({err}): {advice}") from None


def check(data: Dataset, sample_shape: tuple[int, ...], classes: int, where: str = "data") -> Dataset:
    x, y = data.x, data.y
    if x.ndim < 1 or y.ndim != 1 or len(x) != len(y):
        raise EennError(f"{where}: x is {x.shape} and y is {y.shape}: they need the same number of samples N")
    if len(y) == 0:
        raise EennError(f"{where}: holds no samples (x is {x.shape}): give a file with labelled samples")
    if tuple(x.shape[1:]) != tuple(sample_shape):
        want = "x".join(map(str, sample_shape))
        raise EennError(f"{where}: samples are {'x'.join(map(str, x.shape[1:]))} but the model takes {want}")
    if not np.issubdtype(x.dtype, np.floating):
        raise EennError(f"{where}: x is {x.dtype}; it must be float32 (scaled as the model was trained)")
    if not np.issubdtype(y.dtype, np.integer):
        raise EennError(f"{where}: y is {y.dtype}; labels must be integers 0..{classes - 1}")
    if y.min() < 0 or y.max() >= classes:
        raise EennError(
            f"{where}: labels run from {y.min()} to {y.max()}, but the model has {classes} classes: "
            f"labels must be 0..{classes - 1}"
        )
    finite = np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    if not finite.all():
        raise EennError(
            f"{where}: x holds NaN or infinite values (in {(~finite).sum()} of {len(x)} samples, the first is sample "
            f"{np.flatnonzero(~finite)[0]}): drop or repair them"
        )
    groups = data.groups
    if groups is not None and (groups.shape != y.shape or not np.issubdtype(groups.dtype, np.integer)):
        raise EennError(
            f"{where}: groups is {groups.dtype} {groups.shape}: it must be integers, one per sample ({len(y)})"
        )
    return Dataset(
        np.ascontiguousarray(x, dtype=np.float32),
        y.astype(np.int64),
        None if groups is None else groups.astype(np.int64),
        data.order,
    )


def require_per_class(data: Dataset, classes: int, where: str) -> None:
    """Every class with at least MIN_PER_CLASS samples: said the same way for every file that needs it."""
    counts = np.bincount(data.y, minlength=classes)
    short = np.flatnonzero(counts < MIN_PER_CLASS)
    if len(short):
        listed = ", ".join(f"{c} ({counts[c]})" for c in short[:5]) + (", ..." if len(short) > 5 else "")
        raise EennError(
            f"{where}: too few samples of class {listed}: at least {MIN_PER_CLASS} per class are needed "
            "to train the exits and set their thresholds"
        )


def require_split_fits(labels: np.ndarray, val_fraction: float) -> None:
    """The split must leave MIN_SPLIT_PER_CLASS samples of every class on each side."""
    counts = np.bincount(labels)
    smallest = int(counts[counts > 0].min())
    held_out = _held_out(smallest, val_fraction)
    if held_out < MIN_SPLIT_PER_CLASS or smallest - held_out < MIN_SPLIT_PER_CLASS:
        low, high = MIN_SPLIT_PER_CLASS / smallest, 1 - MIN_SPLIT_PER_CLASS / smallest
        choice = f"choose one from {low:.2g} to {high:.2g}" if low <= high else "give more data"
        raise EennError(
            f"--val-fraction {val_fraction:g}: leaves {held_out} of the {smallest} samples of the smallest class to "
            f"set the thresholds and {smallest - held_out} to train the heads (at least {MIN_SPLIT_PER_CLASS} "
            f"each): {choice}, or --calibration-data"
        )


def split(
    labels: np.ndarray, val_fraction: float, seed: int, groups: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A stratified, seeded split: sorted indices of (train, validation). With groups, whole groups go to one side
    (not stratified), so the thresholds are set on speakers or patients the heads never saw, as new data will be."""
    rng = np.random.default_rng(seed)
    if groups is not None:
        names = rng.permutation(np.unique(groups))
        sizes = np.cumsum([np.count_nonzero(groups == g) for g in names])
        held = names[: max(1, int(np.searchsorted(sizes, val_fraction * len(labels))) + 1)]
        if len(held) == len(names):
            raise EennError(
                f"the data has {len(names)} groups, too few to hold whole groups out for the thresholds: "
                "give more groups, or the thresholds' data with --calibration-data"
            )
        in_val = np.isin(groups, held)
        return np.flatnonzero(~in_val), np.flatnonzero(in_val)
    val = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rng.shuffle(members)
        val.append(members[: _held_out(len(members), val_fraction)])
    val_index = np.sort(np.concatenate(val))
    train_mask = np.ones(len(labels), bool)
    train_mask[val_index] = False
    return np.flatnonzero(train_mask), val_index


def _held_out(count: int, val_fraction: float) -> int:
    return max(1, round(count * val_fraction))


def limit_bytes() -> int:
    text = os.environ.get(LIMIT_VARIABLE, str(DEFAULT_LIMIT_GB))
    try:
        gb = float(text)
    except ValueError:
        gb = math.nan
    if not math.isfinite(gb) or gb <= 0:
        raise EennError(f"{LIMIT_VARIABLE}={text}: must be a positive number of gigabytes, e.g. 16")
    return int(gb * 1e9)


def _members(archive: zipfile.ZipFile, path: Path, names) -> dict[str, tuple[zipfile.ZipInfo, tuple, np.dtype]]:
    """The arrays to read, with the shape and dtype their headers declare (only the headers are inflated)."""
    members = {}
    for info in archive.infolist():
        name = info.filename.removesuffix(".npy")
        if names is not None and name not in names:
            continue
        with archive.open(info) as stream:
            version = npy.read_magic(stream)
            read_header = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
            shape, _fortran, dtype = read_header(stream)
        if dtype.hasobject:
            raise EennError(f"{path}: {name} holds Python objects (pickled), never loaded: save numeric arrays")
        if info.file_size < math.prod(shape) * dtype.itemsize:
            raise EennError(f"{path}: {name} is cut short (damaged): write it again with numpy.savez")
        members[name] = (info, shape, dtype)
    return members


def _check_size(path: Path, members: dict) -> None:
    total = sum(math.prod(shape) * dtype.itemsize for _, shape, dtype in members.values())
    limit = limit_bytes()
    if total > limit:
        raise EennError(
            f"{path}: its arrays take {total / 1e9:.3g} GB once inflated, over the {limit / 1e9:.3g} GB limit: "
            f"raise it with {LIMIT_VARIABLE}={math.ceil(total / 1e9)} if memory allows, or give a smaller file"
        )


def _read(archive: zipfile.ZipFile, member: tuple) -> np.ndarray:
    with archive.open(member[0]) as stream:
        return npy.read_array(stream, allow_pickle=False)


def _what_instead(path: Path) -> str:
    head = path.read_bytes()[:512]
    if head.startswith(b"\x93NUMPY"):
        return "a single .npy array"
    if head and all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        return "a text file"
    return "a file of another kind"


def load_split(
    path: str | Path,
    sample_shape: tuple[int, ...],
    classes: int,
    val_fraction: float | None,
    seed: int,
    calibration_path: str | Path | None = None,
) -> tuple[Dataset, np.ndarray, np.ndarray]:
    """All samples in one set (one backbone run) and the indices that train the heads and set the thresholds.

    Without a calibration file a stratified share (`val_fraction`) of the data (whole groups when it has groups) sets
    the thresholds; with one (say, speakers or patients the heads never saw) the thresholds are set on it alone.
    """
    data = load_npz(path, sample_shape, classes)
    require_per_class(data, classes, str(path))
    if calibration_path is None:
        require_split_fits(data.y, val_fraction)
        return (data, *split(data.y, val_fraction, seed, data.groups))
    calibration = load_npz(calibration_path, sample_shape, classes)
    require_per_class(calibration, classes, str(calibration_path))
    groups = None if calibration.groups is None else np.concatenate([np.full(len(data), -1), calibration.groups])
    both = Dataset(np.concatenate([data.x, calibration.x]), np.concatenate([data.y, calibration.y]), groups)
    return both, np.arange(len(data)), np.arange(len(data), len(both))
