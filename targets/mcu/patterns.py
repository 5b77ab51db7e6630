"""The float32 subgraphs the kernel library runs, as patterns for TVM's FuseOpsByPattern.

Each match becomes a composite function named `eenn.f32.<op>` (a convolution with its bias and activation, a dense
layer, a pool, an add) or `eenn.quantize` / `eenn.dequantize` (where an int8 network's input becomes int8 and its
exits' logits float), which `library.LibraryCalls` turns into one library call. A pattern matches only what the
library computes exactly as written; anything else stays a TVM kernel. Patterns are listed longest first: the
fusion takes the first that matches.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import tvm
from tvm import relax
from tvm.relax.dpl import DFPattern, is_const, is_op, wildcard
from tvm.relax.transform import FusionPattern, PatternCheckContext

CONV2D, DENSE, POOL, ADD = "eenn.f32.conv2d", "eenn.f32.dense", "eenn.f32.pool", "eenn.f32.add"
QUANTIZE, DEQUANTIZE = "eenn.quantize", "eenn.dequantize"
TENSOR_ATTR = "eenn.tensor"  # the binding (ONNX tensor) a composite function's result replaces
CONVS = {"relax.nn.conv2d": ("NCHW", "OIHW"), "relax.nn.conv1d": ("NCW", "OIW")}  # op -> data and kernel layouts
POOLS = (
    "relax.nn.max_pool2d",
    "relax.nn.avg_pool2d",
    "relax.nn.adaptive_avg_pool2d",
    "relax.nn.max_pool1d",
    "relax.nn.avg_pool1d",
    "relax.nn.adaptive_avg_pool1d",
    "relax.mean",
)


def float32_patterns() -> list[FusionPattern]:
    conv = _any_of([is_op(op)(wildcard(), is_const()) for op in CONVS])
    dense = is_op("relax.matmul")(wildcard(), is_const())
    add = is_op("relax.add")(wildcard(), wildcard())
    pool = _any_of([is_op(op)(wildcard()) for op in POOLS])
    patterns = []
    for name, root, check in ((CONV2D, conv, _conv_check), (DENSE, dense, _dense_check)):
        biased = is_op("relax.add")(root, is_const())
        patterns += [(name, p, check) for p in (_activated(biased), biased, _activated(root), root)]
    patterns += [(ADD, _activated(add), _add_check), (ADD, add, _add_check), (POOL, pool, _pool_check)]
    for name, op, dtypes in (
        (QUANTIZE, "relax.quantize", ("float32", "int8")),
        (DEQUANTIZE, "relax.dequantize", ("int8", "float32")),
    ):
        patterns.append((name, is_op(op)(wildcard(), is_const(), is_const()), _per_tensor_check(op, *dtypes)))
    names = _ResultNames()
    return [
        FusionPattern(name, pattern, {"result": pattern}, names.checked(check), names.attrs)
        for name, pattern, check in patterns
    ]


class _ResultNames:
    """Fusion names the binding of a composite call `lv`; the check, which sees the binding it replaces, keeps its
    name for the composite function's attributes (TENSOR_ATTR)."""

    def __init__(self):
        self.names: dict[relax.Expr, str] = {}

    def checked(self, check: Callable[[PatternCheckContext], bool]) -> Callable[[PatternCheckContext], bool]:
        def check_and_keep_name(ctx: PatternCheckContext) -> bool:
            accepted = check(ctx)
            if accepted:
                self.names[ctx.matched_expr] = ctx.value_to_bound_var[ctx.matched_expr].name
            return accepted

        return check_and_keep_name

    def attrs(self, annotated: dict[str, relax.Expr]) -> dict[str, str]:
        return {TENSOR_ATTR: self.names[annotated["result"]]}


def _activated(pattern: DFPattern) -> DFPattern:
    """A ReLU or a clip between constants (ReLU6) after `pattern`: the kernels' output clamp."""
    return is_op("relax.nn.relu")(pattern) | is_op("relax.clip")(pattern, wildcard(), wildcard())


def _any_of(patterns: list[DFPattern]) -> DFPattern:
    alternatives = patterns[0]
    for p in patterns[1:]:
        alternatives = alternatives | p
    return alternatives


def shape_of(expr: relax.Expr) -> list[int] | None:
    """The static shape of a tensor, or None (not a tensor, or a dimension only known at run time)."""
    ty = expr.ty
    if not isinstance(ty, relax.TensorType) or ty.shape is None:
        return None
    dims = list(ty.shape.values) if isinstance(ty.shape, relax.ShapeExpr) else None
    if dims is None or not all(isinstance(d, tvm.tirx.IntImm) for d in dims):
        return None
    return [int(d) for d in dims]


def _float32_batch_1(expr: relax.Expr, ranks: tuple[int, ...]) -> bool:
    shape = shape_of(expr)
    return shape is not None and len(shape) in ranks and shape[0] == 1 and expr.ty.dtype == "float32"


def _calls(ctx: PatternCheckContext) -> list[relax.Call]:
    return [v for v in ctx.matched_bindings.values() if isinstance(v, relax.Call)]


def _first(ctx: PatternCheckContext, *ops: str) -> relax.Call:
    return next(c for c in _calls(ctx) if c.op.name in ops)


def _clamps_are_constant(ctx: PatternCheckContext) -> bool:
    clips = [c for c in _calls(ctx) if c.op.name == "relax.clip"]
    return all(isinstance(a, (tvm.tirx.IntImm, tvm.tirx.FloatImm)) for c in clips for a in c.args[1:])


def _conv_check(ctx: PatternCheckContext) -> bool:
    conv = _first(ctx, *CONVS)
    a = conv.attrs
    x, w = conv.args
    if not (_float32_batch_1(x, (3, 4)) and _clamps_are_constant(ctx)):
        return False
    data, kernel = CONVS[conv.op.name]
    if (a.data_layout, a.kernel_layout, a.out_layout) != (data, kernel, data):
        return False
    channels, units = shape_of(x)[1], shape_of(w)[0]
    depthwise = a.groups == channels == units and a.groups > 1
    return (a.groups == 1 or depthwise) and _bias_per_channel(ctx, units, rank=len(data))


def _dense_check(ctx: PatternCheckContext) -> bool:
    matmul = _first(ctx, "relax.matmul")
    x, w = matmul.args
    shape = shape_of(w)
    if not (_float32_batch_1(x, (2,)) and shape is not None and len(shape) == 2 and _clamps_are_constant(ctx)):
        return False
    return _bias_per_channel(ctx, shape[1], rank=2)


def _bias_per_channel(ctx: PatternCheckContext, channels: int, rank: int) -> bool:
    """The constant added after the product has one value per output channel (no broadcast over pixels)."""
    for call in _calls(ctx):
        if call.op.name == "relax.add":
            bias = next(a for a in call.args if isinstance(a, tvm.ir.GenericConst))
            per_channel = [1, channels] + [1] * (rank - 2)
            if shape_of(bias) not in ([channels], per_channel):
                return False
    return True


def _add_check(ctx: PatternCheckContext) -> bool:
    add = _first(ctx, "relax.add")
    a, b = add.args
    if any(isinstance(x, tvm.ir.GenericConst) for x in (a, b)) or shape_of(a) is None or shape_of(a) != shape_of(b):
        return False
    return a.ty.dtype == b.ty.dtype == "float32" and _clamps_are_constant(ctx)


def _per_tensor_check(op: str, source: str, result: str) -> Callable[[PatternCheckContext], bool]:
    """(De)quantisation with one scale and zero point for the whole tensor, as ONNX (De)QuantizeLinear per tensor."""

    def check(ctx: PatternCheckContext) -> bool:
        call = _first(ctx, op)
        x, scale, zero_point = call.args
        per_tensor = all(shape_of(p) is not None and math.prod(shape_of(p)) == 1 for p in (scale, zero_point))
        return per_tensor and x.ty.dtype == source and call.ty.dtype == result and shape_of(x) is not None

    return check


def _pool_check(ctx: PatternCheckContext) -> bool:
    pool = _first(ctx, *POOLS)
    x = pool.args[0]
    if not _float32_batch_1(x, (3, 4)):
        return False
    rank, a = len(shape_of(x)), pool.attrs
    if pool.op.name == "relax.mean":  # over the whole map: global average pooling
        return sorted(int(i) % rank for i in a.axis) == list(range(2, rank))
    if a.layout != {3: "NCW", 4: "NCHW"}[rank] or a.out_layout != a.layout:
        return False
    if pool.op.name.startswith("relax.nn.adaptive"):
        return all(s % o == 0 for s, o in zip(shape_of(x)[2:], shape_of(pool)[2:]))
    # ceil_mode windows are cut at the border: ONNX's divisor there is not the library's
    return pool.op.name.startswith("relax.nn.max_pool") or not a.ceil_mode
