"""eenn.onnx: the model with the chosen exit heads as extra outputs `exit_0`, `exit_1`, ... (logits).

So anyone can check our numbers with onnxruntime: run it, apply the plan's confidence rule and
thresholds, and compare. Pooling is a matrix product with the adaptive-pooling weights, which is
exact for any map size and needs only standard ops.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from eenn_tvm.heads import Head, bins_of


def pooling_matrix(size: int, bins: int) -> np.ndarray:
    """(size, bins): column j averages the positions torch's adaptive pooling puts in bin j."""
    m = np.zeros((size, bins), np.float32)
    for j in range(bins):
        lo, hi = math.floor(j * size / bins), math.ceil((j + 1) * size / bins)
        m[lo:hi, j] = 1.0 / (hi - lo)
    return m


def with_exit_heads(model: onnx.ModelProto, exits: list[tuple[str, list[int], Head]]) -> onnx.ModelProto:
    """A copy of `model` whose outputs are its own, then `exit_i` for each (point, shape, head)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    for i, (point, shape, head) in enumerate(exits):
        nodes, inits, logits = _head_nodes(f"exit_{i}", point, shape, head)
        graph.node.extend(nodes)
        graph.initializer.extend(inits)
        graph.output.append(helper.make_tensor_value_info(logits, TensorProto.FLOAT, [shape[0], head.classes]))
    onnx.checker.check_model(out)
    return out


def _head_nodes(name: str, point: str, shape: list[int], head: Head):
    nodes, inits = [], []

    def const(suffix, array):
        inits.append(numpy_helper.from_array(np.asarray(array), f"{name}/{suffix}"))
        return f"{name}/{suffix}"

    def node(op, inputs, suffix, output=None, **attrs):
        output = output or f"{name}/{suffix}"
        nodes.append(helper.make_node(op, inputs, [output], name=f"{name}/{suffix}", **attrs))
        return output

    a, layers = point, head.layers
    if len(shape) > 2:
        bins = bins_of(head.pooling, shape)
        matrix = np.ones((1, 1), np.float32)
        for size in shape[2:]:
            matrix = np.kron(matrix, pooling_matrix(size, bins))
        spatial = math.prod(shape[2:])
        a = node("Reshape", [a, const("spatial_shape", np.array([shape[0], shape[1], spatial], np.int64))], "flat")
        a = node("MatMul", [a, const("pool_matrix", matrix)], "pool")
        if head.pointwise:  # the grid's cells in one row: a 1x1 convolution of any map is a 1-D one on its cells
            (w, b), layers = layers[0], layers[1:]
            a = node("Conv", [a, const("conv_w", np.ascontiguousarray(w.T)[:, :, None]), const("conv_b", b)], "conv")
            a = node("GlobalAveragePool", [node("Relu", [a], "conv_relu")], "cell_mean")
        a = node("Reshape", [a, const("feature_shape", np.array([shape[0], -1], np.int64))], "features")
    for k, (w, b) in enumerate(layers):
        last = k == len(layers) - 1
        a = node("Gemm", [a, const(f"w{k}", w), const(f"b{k}", b)], f"dense{k}", output=name if last else None)
        if not last:
            a = node("Relu", [a], f"relu{k}")
    return nodes, inits, a
