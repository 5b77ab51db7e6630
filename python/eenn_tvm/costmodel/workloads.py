"""Workloads the cost model learns from: generated layers of many shapes, and the segments of real models.

A workload is a Relax module whose `segment_0` maps one float32 input to one output: exactly what the
backends build for a segment of an early-exit network, so a measurement of a workload is a measurement of
the thing the search and the mapping will place.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tvm
from tvm import relax

from eenn_tvm.analysis import analyze
from eenn_tvm.costmodel.features import function_key
from eenn_tvm.frontend import import_onnx
from eenn_tvm.network import Network
from eenn_tvm.passes import SplitAtExits, segment_names, segments_only

LAYER_KINDS = ("conv", "depthwise", "pool", "dense", "block")


@dataclass
class Workload:
    name: str
    mod: tvm.IRModule  # holds `segment_0`
    kind: str  # a LAYER_KIND, or "segment" (of a real model)

    @property
    def function(self) -> relax.Function:
        return self.mod["segment_0"]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.function.params[0].ty.shape)

    @property
    def key(self) -> str:
        return f"{self.name}:{function_key(self.function)}"


def layer_workloads(count: int, seed: int = 0) -> list[Workload]:
    """`count` single layers (and small conv blocks) with shapes drawn the way small CNNs have them."""
    rng = np.random.default_rng(seed)
    return [_layer(LAYER_KINDS[i % len(LAYER_KINDS)], rng, i) for i in range(count)]


def segment_workloads(model_path: str | Path) -> list[Workload]:
    """An ONNX model: the whole model and its segments between consecutive candidate exit points. An `augment`
    output folder: the segments of its early-exit network (exit heads and decisions included)."""
    if Path(model_path).is_dir():
        network = Network.from_augment(model_path)
        return [_single(f"{network.name}-eenn/{name}", network.mod, name) for name in network.segments]
    model = import_onnx(model_path)
    points = [p.name for p in analyze(model).exit_points]
    mod = SplitAtExits(points)(model.mod)
    whole = SplitAtExits([])(model.mod)
    return [_single(f"{model.name}/{name}", mod, name) for name in segment_names(len(points) + 1)] + [
        _single(f"{model.name}/whole", whole, "segment_0")
    ]


def _single(name: str, mod: tvm.IRModule, segment: str) -> Workload:
    """One segment of `mod` as the module's `segment_0` (the name every workload is run by)."""
    single = segments_only(mod, [segment])
    func = single[segment]
    del single[segment]
    single["segment_0"] = func.with_attr("global_symbol", "segment_0")
    return Workload(name, single, "segment")


def _layer(kind: str, rng: np.random.Generator, index: int) -> Workload:
    size = int(rng.choice([4, 6, 8, 12, 16, 24, 32]))
    cin = int(rng.choice([1, 3, 4, 8, 16, 24, 32, 48, 64]))
    cout = int(rng.choice([4, 8, 16, 24, 32, 48, 64]))
    k = int(rng.choice([1, 3, 5]))
    stride = int(rng.choice([1, 1, 2]))
    if kind == "block" or (kind == "depthwise" and k == 1):
        k = 3
    if kind in ("conv", "depthwise", "block", "pool"):
        shape = (1, cin, size, size)
    else:
        shape = (1, int(rng.choice([16, 32, 64, 128, 256, 512])))
    x = relax.Var("x", relax.TensorType(shape, "float32"))
    bb = relax.BlockBuilder()
    with bb.function("segment_0", [x]):
        with bb.dataflow():
            if kind == "conv":
                y = _conv(bb, rng, x, cin, cout, k, stride, 1)
            elif kind == "depthwise":
                y = _conv(bb, rng, x, cin, cin, k, stride, cin)
            elif kind == "block":
                y = _conv(bb, rng, _conv(bb, rng, x, cin, cout, k, stride, 1), cout, cout, k, 1, 1)
            elif kind == "pool":
                pool = relax.op.nn.max_pool2d if rng.random() < 0.5 else relax.op.nn.avg_pool2d
                y = bb.emit(pool(x, pool_size=[2, 2], strides=[2, 2]))
            else:
                units = int(rng.choice([10, 32, 64, 128]))
                w = relax.const(rng.standard_normal((shape[1], units)).astype(np.float32))
                y = bb.emit(relax.op.add(relax.op.matmul(x, w), relax.const(np.zeros(units, np.float32))))
            out = bb.emit_output(relax.Tuple([y]))
        bb.emit_func_output(out)
    name = f"{kind}{index}_in{'x'.join(map(str, shape[1:]))}"
    if kind in ("conv", "depthwise", "block"):
        name += f"_k{k}s{stride}o{cout if kind != 'depthwise' else cin}"
    return Workload(name, bb.get(), kind)


def _conv(bb, rng, x, cin, cout, k, stride, groups):
    w = relax.const((0.1 * rng.standard_normal((cout, cin // groups, k, k))).astype(np.float32))
    b = relax.const(np.zeros((1, cout, 1, 1), np.float32))
    y = relax.op.nn.conv2d(x, w, strides=[stride] * 2, padding=[k // 2] * 4, groups=groups)
    return bb.emit(relax.op.nn.relu(relax.op.add(y, b)))
