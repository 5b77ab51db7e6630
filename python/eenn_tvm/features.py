"""Features, once: one run of the backbone over the data with every candidate point tapped.

The taps are pooled as the heads need them and cached on disk, keyed by the model, the data and the batch size, so
training heads and searching never run the backbone again. The bulk run uses onnxruntime on the simplified model: for
this many small inferences it is several times faster than TVM's untuned host build (see bench/features.py), and its
outputs match TVM's to 1e-5. It runs `batch` samples per call where the model allows it (its batch made symbolic
gives the same outputs as one sample at a time), here or, sharded, on a Ray cluster (eenn_tvm.cluster): each shard
is computed by `TappedBackbone.features`, so both give the same features bit for bit at the same batch size.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from eenn_tvm import onnx_runtime
from eenn_tvm.analysis import ExitPoint
from eenn_tvm.cache import CACHE
from eenn_tvm.frontend import ImportedModel
from eenn_tvm.heads import GRID_BINS, POOL_BINS, bins_of, pooled_shape, poolings_for
from eenn_tvm.textui import progress

CHUNK_BYTES = 256 << 20  # raw taps held at once before pooling (a ResNet-152 taps ~17 MB per sample)
BATCH = 32  # samples per onnxruntime call: 1.5x batch 1 on ResNet-20 (bench/scaling.py --feature-pass)


def adaptive_avg_pool(a: np.ndarray, bins: int) -> np.ndarray:
    """(N, C, *spatial) -> (N, C * bins**len(spatial)), with torch's adaptive-pooling bin edges."""
    for axis in range(2, a.ndim):
        size = a.shape[axis]
        pieces = [
            a.take(range(math.floor(i * size / bins), math.ceil((i + 1) * size / bins)), axis=axis).mean(
                axis=axis, keepdims=True
            )
            for i in range(bins)
        ]
        a = np.concatenate(pieces, axis=axis)
    return a.reshape(len(a), -1)


def pooled_view(a: np.ndarray, pooling: str) -> np.ndarray:
    """(N, C, *spatial) -> (N, *heads.pooled_shape): the features a head of that pooling reads."""
    pooled = adaptive_avg_pool(a, bins_of(pooling, a.shape))
    return pooled.reshape(len(a), a.shape[1], -1) if pooling == "grid" else pooled


@dataclass
class Features:
    """Pooled activations at every candidate point, and the model's own output, for every sample."""

    pooled: dict[str, dict[str, np.ndarray]]  # point name -> pooling -> (N, *heads.pooled_shape)
    final: np.ndarray  # (N, classes) the model's output

    @classmethod
    def empty(cls, points: list[ExitPoint], samples: int, classes: int) -> Features:
        """Preallocated, to be filled shard by shard: gathering pieces and concatenating them would hold
        everything twice."""
        pooled = {
            p.name: {k: np.empty((samples, *pooled_shape(p.shape, k)), np.float32) for k in poolings_for(p.shape)}
            for p in points
        }
        return cls(pooled, np.empty((samples, classes), np.float32))

    def fill(self, start: int, part: Features) -> None:
        """Samples start.. from the features of one shard."""
        stop = start + len(part.final)
        self.final[start:stop] = part.final
        for name, kinds in part.pooled.items():
            for kind, array in kinds.items():
                self.pooled[name][kind][start:stop] = array


@dataclass
class TappedBackbone:
    """The model with every candidate point as an extra output, serialised so it can be sent to other processes,
    and the number of samples per onnxruntime call it allows."""

    onnx_bytes: bytes
    points: list[ExitPoint]
    model_outputs: int  # outputs before the taps; the first is the classifier's
    classes: int
    batch: int

    @property
    def shard(self) -> int:
        """Samples computed at once, a multiple of the batch: bounded so the raw taps fit in CHUNK_BYTES."""
        per_sample = 4 * (self.classes + sum(math.prod(p.shape) for p in self.points))
        return max(1, CHUNK_BYTES // per_sample // self.batch) * self.batch

    def session(self, threads: int = 0):
        return onnx_runtime.session(self.onnx_bytes, threads)

    def empty(self, samples: int) -> Features:
        return Features.empty(self.points, samples, self.classes)

    def features(self, session, x: np.ndarray) -> Features:
        """Pooled taps and outputs of samples `x`, `batch` at a time."""
        outs = onnx_runtime.run_each(session, x, self.batch)
        final = np.concatenate([o[0] for o in outs]).reshape(len(x), -1)
        pooled = {}
        for j, p in enumerate(self.points, start=self.model_outputs):
            taps = np.concatenate([o[j] for o in outs])
            pooled[p.name] = {kind: pooled_view(taps, kind) for kind in poolings_for(p.shape)}
        return Features(pooled, final)


def tapped_backbone(model: ImportedModel, points: list[ExitPoint], x: np.ndarray, batch: int) -> TappedBackbone:
    """The model tapped at `points`, with a symbolic batch when that gives the same outputs as batch 1 on the first
    samples of `x` (a reshape to a fixed batch of 1 does not), else batch 1."""
    proto = onnx.ModelProto()
    proto.CopyFrom(model.onnx)
    infos = {v.name: v for v in proto.graph.value_info}
    for p in points:
        proto.graph.output.append(infos[p.name])
    output = model.onnx.graph.output[0].type.tensor_type.shape.dim
    classes = math.prod(d.dim_value for d in output[1:])
    tapped = TappedBackbone(proto.SerializeToString(), points, len(model.output_names), classes, 1)
    if batch > 1 and len(x) > 1:
        batched = TappedBackbone(_symbolic_batch(proto), points, tapped.model_outputs, classes, batch)
        if _same_outputs(tapped, batched, x[:2]):
            return batched
    return tapped


def _symbolic_batch(proto: onnx.ModelProto) -> bytes:
    """The model with its first input and output dimensions named, not 1; onnxruntime infers the inner shapes."""
    batched = onnx.ModelProto()
    batched.CopyFrom(proto)
    del batched.graph.value_info[:]
    for value in [*batched.graph.input, *batched.graph.output]:
        first = value.type.tensor_type.shape.dim[0]
        first.Clear()
        first.dim_param = "batch"
    return batched.SerializeToString()


def _same_outputs(single: TappedBackbone, batched: TappedBackbone, x: np.ndarray) -> bool:
    try:
        one, many = single.features(single.session(), x), batched.features(batched.session(), x)
    except Exception:  # onnxruntime raises its own types when a shape does not fit the batch
        return False
    pairs = [(one.final, many.final)] + [
        (one.pooled[name][kind], many.pooled[name][kind]) for name in one.pooled for kind in one.pooled[name]
    ]
    return all(a.shape == b.shape and np.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in pairs)


def extract(
    model: ImportedModel,
    points: list[ExitPoint],
    x: np.ndarray,
    cache_dir: Path | None = CACHE,
    log: Callable[[str], None] = lambda _: None,
    batch: int = BATCH,
    cluster: str | None = None,
) -> Features:
    """Features at `points` for all samples `x`, from the cache when this model and data were seen before (a
    damaged cache entry is computed again); computed here, or on the Ray cluster at `cluster` (eenn_tvm.cluster)."""
    key = _cache_key(model, points, x, batch)
    where = cache_dir / "features" / key if cache_dir else None
    if where and (where / "done").exists():
        cached = _load(where, points, len(x), model)
        if cached is not None:
            return cached
        log(f"the cached features in {where} are damaged: computing them again")
    backbone = tapped_backbone(model, points, x, batch)
    if batch > 1 and backbone.batch == 1:
        log(f"{model.name}: its batch is fixed at 1 (a symbolic batch changes its outputs): one sample per call")
    if cluster:
        from eenn_tvm.cluster import run_on_cluster  # needs Ray, an optional extra

        features = run_on_cluster(backbone, x, cluster, log)
    else:
        features = _run_here(backbone, x)
    if where:
        _save(where, features)
    return features


def _run_here(backbone: TappedBackbone, x: np.ndarray) -> Features:
    session = backbone.session()
    features = backbone.empty(len(x))
    shard = backbone.shard
    for start in progress(range(0, len(x), shard), "features", unit_scale=shard, total=len(x)):
        features.fill(start, backbone.features(session, x[start : start + shard]))
    return features


def _cache_key(model: ImportedModel, points: list[ExitPoint], x: np.ndarray, batch: int) -> str:
    """Batches of other sizes may round differently: the batch is part of the key."""
    h = hashlib.sha256()
    h.update(model.onnx.SerializeToString(deterministic=True))
    h.update(json.dumps([p.name for p in points]).encode())
    h.update(json.dumps([POOL_BINS, GRID_BINS, [poolings_for(p.shape) for p in points]]).encode())
    h.update(f"{x.shape} batch {batch}".encode())
    h.update(np.ascontiguousarray(x).data)
    return h.hexdigest()[:32]


def _save(where: Path, features: Features) -> None:
    """Write to a temporary folder and rename it into place, so a cache entry is whole or absent."""
    where.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=where.parent, prefix=".tmp-"))
    try:
        np.save(tmp / "final.npy", features.final)
        for i, kinds in enumerate(features.pooled.values()):
            for kind, array in kinds.items():
                np.save(tmp / f"{i}_{kind}.npy", array)
        (tmp / "done").write_text("\n".join(features.pooled))
        shutil.rmtree(where, ignore_errors=True)
        tmp.rename(where)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # a cache that cannot be written only costs time


def _load(where: Path, points: list[ExitPoint], samples: int, model: ImportedModel) -> Features | None:
    """The cached features, or None when a file is missing, unreadable or not what this model and data give:
    each array's header is checked before its data is read; nothing is unpickled."""
    output = model.onnx.graph.output[0].type.tensor_type.shape.dim
    try:
        pooled = {
            p.name: {
                k: _array(where / f"{i}_{k}.npy", (samples, *pooled_shape(p.shape, k))) for k in poolings_for(p.shape)
            }
            for i, p in enumerate(points)
        }
        final = _array(where / "final.npy", (samples, math.prod(d.dim_value for d in output[1:])))
    except (OSError, ValueError, EOFError):
        return None
    return Features(pooled, final)


def _array(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    mapped = np.load(path, mmap_mode="r", allow_pickle=False)
    if mapped.shape != shape or not np.issubdtype(mapped.dtype, np.floating):
        raise ValueError(f"{path.name} is {mapped.dtype} {mapped.shape}, not floats {shape}")
    array = np.array(mapped)
    if not np.isfinite(array).all():
        raise ValueError(f"{path.name} holds NaN or infinite values")
    return array
