"""Features, once: one run of the backbone over the data with every candidate point tapped.

The taps are pooled as the heads need them and cached on disk, keyed by the model and the data, so
training heads and searching never run the backbone again. The bulk run uses onnxruntime on the
simplified model: for this many small batch-1 inferences it is several times faster than TVM's
untuned host build (see bench/features.py), and its outputs match TVM's to 1e-5.
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
from eenn_tvm.heads import POOL_BINS, pooled_width, poolings_for
from eenn_tvm.textui import progress

CHUNK_BYTES = 256 << 20  # raw taps held at once before pooling (a ResNet-152 taps ~17 MB per sample)


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


@dataclass
class Features:
    """Pooled activations at every candidate point, and the model's own output, for every sample."""

    pooled: dict[str, dict[str, np.ndarray]]  # point name -> pooling -> (N, F)
    final: np.ndarray  # (N, classes) the model's output


def extract(
    model: ImportedModel,
    points: list[ExitPoint],
    x: np.ndarray,
    cache_dir: Path | None = CACHE,
    log: Callable[[str], None] = lambda _: None,
) -> Features:
    """Features at `points` for all samples `x`, from the cache when this model and data were seen before (a
    damaged cache entry is computed again)."""
    key = _cache_key(model, points, x)
    where = cache_dir / "features" / key if cache_dir else None
    if where and (where / "done").exists():
        cached = _load(where, points, len(x), model)
        if cached is not None:
            return cached
        log(f"the cached features in {where} are damaged: computing them again")
    features = _run_backbone(model, points, x)
    if where:
        _save(where, features)
    return features


def _run_backbone(model: ImportedModel, points: list[ExitPoint], x: np.ndarray) -> Features:
    proto = onnx.ModelProto()
    proto.CopyFrom(model.onnx)
    infos = {v.name: v for v in proto.graph.value_info}
    for p in points:
        proto.graph.output.append(infos[p.name])
    session = onnx_runtime.session(proto)

    # Preallocated and filled chunk by chunk: gathering pieces and concatenating them would hold everything twice.
    pooled = {
        p.name: {k: np.empty((len(x), pooled_width(p.shape, k)), np.float32) for k in poolings_for(p.shape)}
        for p in points
    }
    finals = []
    chunk = max(1, CHUNK_BYTES // (4 * sum(math.prod(p.shape) for p in points)))
    for start in progress(range(0, len(x), chunk), "features", unit_scale=chunk, total=len(x)):
        stop = min(start + chunk, len(x))
        outs = onnx_runtime.run_each(session, x[start:stop])
        finals.append(np.concatenate([o[0] for o in outs]))
        for j, p in enumerate(points, start=len(model.output_names)):
            taps = np.concatenate([o[j] for o in outs])
            for kind, array in pooled[p.name].items():
                array[start:stop] = adaptive_avg_pool(taps, POOL_BINS[kind])
    return Features(pooled, np.concatenate(finals).reshape(len(x), -1))


def _cache_key(model: ImportedModel, points: list[ExitPoint], x: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(model.onnx.SerializeToString(deterministic=True))
    h.update(json.dumps([p.name for p in points]).encode())
    h.update(json.dumps([POOL_BINS, [poolings_for(p.shape) for p in points]]).encode())
    h.update(str(x.shape).encode())
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
                k: _array(where / f"{i}_{k}.npy", (samples, pooled_width(p.shape, k))) for k in poolings_for(p.shape)
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
