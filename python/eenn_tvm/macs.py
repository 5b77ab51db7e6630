"""Exact multiply-accumulate counts of ONNX nodes.

Conventions (the usual ones of MAC counters): a convolution or matrix product counts one MAC per
multiply (bias additions are not counted); pooling counts one per kernel element per output;
global pooling and reductions one per input element; element-wise ops, normalisations and softmax
one per output element; pure data movement (reshape, transpose, concat, pad, ...) nothing.
"""

from __future__ import annotations

import math

import onnx

DATA_MOVEMENT = frozenset(
    "Reshape Flatten Squeeze Unsqueeze Transpose Concat Split Slice Gather Identity Dropout Cast Pad Shape Constant "
    "ConstantOfShape Expand Tile DepthToSpace SpaceToDepth".split()
)
ELEMENTWISE = frozenset(
    "Add Sub Mul Div Relu LeakyRelu PRelu Clip Sigmoid HardSigmoid HardSwish Tanh Elu Selu Celu Gelu Softplus "
    "Softsign Exp Log Sqrt Reciprocal Pow Max Min Sum Mean Neg Abs Erf Where Mish Sign Floor Ceil Round "
    "BatchNormalization InstanceNormalization LayerNormalization Softmax LogSoftmax Resize Upsample".split()
)
REDUCTIONS = frozenset(
    "GlobalAveragePool GlobalMaxPool GlobalLpPool ReduceMean ReduceSum ReduceMax ReduceMin ReduceL2 ReduceProd".split()
)
WINDOWED_POOLS = frozenset(["MaxPool", "AveragePool", "LpPool"])


def node_macs(node: onnx.NodeProto, shapes: dict[str, tuple[int, ...]]) -> int | None:
    """MACs of one node given the static shape of every tensor; None for an op type with no rule."""
    out = shapes[node.output[0]]
    op = node.op_type
    if op == "Conv":
        weight = shapes[node.input[1]]  # (Cout, Cin / groups, k...)
        return math.prod(out) * math.prod(weight[1:])
    if op == "ConvTranspose":
        weight = shapes[node.input[1]]  # (Cin, Cout / groups, k...)
        return math.prod(shapes[node.input[0]]) * math.prod(weight[1:])
    if op == "Gemm":
        a = shapes[node.input[0]]
        k = a[0] if _attr(node, "transA", 0) else a[1]
        return math.prod(out) * k
    if op == "MatMul":
        return math.prod(out) * shapes[node.input[0]][-1]
    if op in WINDOWED_POOLS:
        return math.prod(out) * math.prod(_attr(node, "kernel_shape", ()))
    if op in REDUCTIONS:
        return math.prod(shapes[node.input[0]])
    if op in ELEMENTWISE:
        return math.prod(out)
    if op in DATA_MOVEMENT:
        return 0
    return None


def is_depthwise(node: onnx.NodeProto, shapes: dict[str, tuple[int, ...]]) -> bool:
    """A convolution that filters each channel on its own (groups == input channels > 1)."""
    if node.op_type != "Conv":
        return False
    channels = shapes[node.input[0]][1]
    return channels > 1 and _attr(node, "group", 1) == channels


def _attr(node: onnx.NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default
