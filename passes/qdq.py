"""QDQToInteger: dequantize -> float op -> quantize becomes one integer op.

A QDQ model (onnxruntime's `quantize_static`) computes in float between int8 tensors: each op reads
`dequantize(q)` and its result is `quantize`d again. Where the op has an integer form (eenn_tvm.quantized.ops),
the pass replaces the quantize by a call of that op on the int8 tensors, with the weights, bias and
requantisation parameters taken from the dequantize constants:

    quantize(relu?(conv(dq(x), dq(W)) + dq(b)))   -> eenn.int8.conv1d / conv2d   (grouped and depthwise too)
    quantize(relu?(matmul(dq(x), dq(W)) + dq(b))) -> eenn.int8.dense              (Gemm and MatMul, W constant)
    quantize(relu?(dq(a) + dq(b)))                -> eenn.int8.add                (same shapes)
    quantize(mean(dq(x), spatial axes))           -> eenn.int8.global_avg_pool
    quantize(avg_pool(dq(x))), max_pool           -> eenn.int8.avg_pool*d, max_pool*d
    quantize(concat(dq(x0), dq(x1), ...))         -> eenn.int8.concat
    quantize(reshape / transpose / ... (dq(x)))   -> the same op on the int8 tensor (same scale and zero point)

A Relu between the op and its quantize narrows act_min. Anything else (a pattern with per-channel activations,
asymmetric weights, a multiplier out of range, an op without an integer form such as softmax) keeps its
dequantize -> float op -> quantize, which is still correct; float values no longer used are removed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax

from eenn_tvm.passes.cuts import TENSOR_NAMES_ATTR, body_bindings
from eenn_tvm.passes.rebuild import replace_function
from eenn_tvm.quantized import ops
from eenn_tvm.quantized.reference import ADD_LEFT_SHIFT, INT8_MAX, INT8_MIN, quantize_multiplier

_LAYOUTS = {1: ("NCW", "OIW"), 2: ("NCHW", "OIHW")}
_MOVES = ("relax.reshape", "relax.permute_dims", "relax.squeeze", "relax.expand_dims", "relax.flatten")


@tvm.transform.module_pass(opt_level=0, name="eenn.QDQToInteger")
class QDQToInteger:
    """Replace dequantize -> op -> quantize in `func_name` by integer ops (global functions with
    {"Composite": "eenn.int8.<op>"}); see the module docstring for the patterns."""

    def __init__(self, func_name: str = "main"):
        self.func_name = func_name

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        func = mod[self.func_name]
        bindings, out = body_bindings(func)
        graph = _Graph(bindings)
        bb = relax.BlockBuilder(mod)  # the integer op functions are added to the module as they are made
        with bb.function(_REWRITTEN, list(func.params), attrs=dict(func.attrs or {}), pure=True):
            with bb.dataflow():
                for binding in bindings:
                    rewrite = _integer_form(graph, binding.value)
                    if rewrite is None:
                        bb.emit_normalized(binding)
                    else:
                        bb.emit_normalized(relax.VarBinding(binding.var, bb.normalize(rewrite.expr(bb, binding))))
                gv = bb.emit_output(out)
            bb.emit_func_output(gv)
        built = bb.get()
        rewritten = relax.analysis.remove_all_unused(built[_REWRITTEN])
        kept = tvm.IRModule({g: f for g, f in built.functions.items() if g.name_hint != _REWRITTEN}, attrs=mod.attrs)
        return replace_function(kept, self.func_name, _prune_tensor_names(rewritten))


_REWRITTEN = "eenn_qdq_rewritten"  # the new function's name while the old one is still in the module


@dataclass
class _Quantized:
    """An int8 (or int32 bias) value and what it means: real = (data - zero_point) * scale, per tensor or channel."""

    data: relax.Expr
    scale: np.ndarray  # float32
    zero_point: np.ndarray  # int

    @property
    def per_tensor(self) -> bool:
        return self.scale.size == 1 and self.zero_point.size == 1

    @property
    def s(self) -> float:
        return float(self.scale.reshape(-1)[0])

    @property
    def z(self) -> int:
        return int(self.zero_point.reshape(-1)[0])


@dataclass
class _Output:
    """What the matched op must produce: the quantize's scale and zero point, and the clamp a Relu folds in."""

    quantized: _Quantized
    act_min: int = INT8_MIN
    act_max: int = INT8_MAX

    def clamp(self) -> dict:
        return {"output_zero_point": self.quantized.z, "act_min": self.act_min, "act_max": self.act_max}

    @property
    def narrowed(self) -> bool:
        """A Relu narrowed the int8 range (ops without a clamp of their own cannot take it)."""
        return (self.act_min, self.act_max) != (INT8_MIN, INT8_MAX)


@dataclass
class _Rewrite:
    """A call of a new integer op function (`function` set), or a plain expression on int8 tensors."""

    args: list[relax.Expr]
    function: relax.Function | None = None
    plain: relax.Expr | None = None

    def expr(self, bb: relax.BlockBuilder, binding: relax.VarBinding) -> relax.Expr:
        if self.function is None:
            return self.plain
        source = binding.value.args[0]  # the float value quantized: named after the ONNX tensor
        named = source.name.removesuffix("_QuantizeLinear_Input") if isinstance(source, relax.Var) else ""
        name = f"int8_{named or ops.composite_name(self.function)}"
        return relax.Call(bb.add_func(self.function, name), self.args)


class _Graph:
    """Looks through variables to the calls and constants that define them."""

    def __init__(self, bindings: list[relax.Binding]):
        self.values = {b.var: b.value for b in bindings}

    def value(self, expr: relax.Expr) -> relax.Expr:
        while isinstance(expr, relax.Var) and expr in self.values:
            expr = self.values[expr]
        return expr

    def call(self, expr: relax.Expr, *ops_: str) -> relax.Call | None:
        value = self.value(expr)
        if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op) and value.op.name in ops_:
            return value
        return None

    def constant(self, expr: relax.Expr) -> np.ndarray | None:
        value = self.value(expr)
        return value.value.numpy() if isinstance(value, tvm.ir.expr.Constant) else None

    def quantization(self, call: relax.Call) -> _Quantized | None:
        """The data of a quantize or dequantize call with its constant scale and zero point."""
        scale, zero_point = self.constant(call.args[1]), self.constant(call.args[2])
        if scale is None or zero_point is None:
            return None
        data = self.value(call.args[0]) if self.constant(call.args[0]) is not None else call.args[0]
        return _Quantized(data, scale.astype(np.float32), zero_point.astype(np.int64))

    def dequantized(self, expr: relax.Expr, dtype: str = "int8") -> _Quantized | None:
        call = self.call(expr, "relax.dequantize")
        if call is None or call.args[0].ty.dtype != dtype:
            return None
        return self.quantization(call)

    def activation(self, expr: relax.Expr) -> _Quantized | None:
        """A per-tensor int8 value (the only kind of activation the integer ops take)."""
        q = self.dequantized(expr)
        return q if q is not None and q.per_tensor else None

    def weight(self, expr: relax.Expr, channels: int) -> tuple[np.ndarray, np.ndarray] | None:
        """A constant symmetric int8 weight: its values and a scale per output channel."""
        q = self.dequantized(expr)
        if q is None or not isinstance(q.data, tvm.ir.expr.Constant) or np.any(q.zero_point != 0):
            return None
        if q.scale.size not in (1, channels):
            return None
        return q.data.value.numpy(), np.broadcast_to(q.scale.reshape(-1), (channels,)).astype(np.float32)

    def bias(self, expr: relax.Expr, scale: np.ndarray) -> np.ndarray | None:
        """A constant int32 bias quantised with scale s_in * s_w[c] and zero point 0 (maybe reshaped to broadcast)."""
        reshaped = self.call(expr, "relax.reshape")
        q = self.dequantized(reshaped.args[0] if reshaped is not None else expr, dtype="int32")
        if q is None or not isinstance(q.data, tvm.ir.expr.Constant) or np.any(q.zero_point != 0):
            return None
        values = q.data.value.numpy().reshape(-1)
        bias_scale = np.broadcast_to(q.scale.reshape(-1), scale.shape)
        if values.shape != scale.shape or not np.allclose(bias_scale, scale, rtol=1e-6, atol=0):
            return None
        return values.astype(np.int32)


def _integer_form(graph: _Graph, value: relax.Expr) -> _Rewrite | None:
    call = graph.call(value, "relax.quantize")
    if call is None or call.attrs.out_dtype != "int8":
        return None
    out = graph.quantization(call)
    if out is None or not out.per_tensor:
        return None
    target = _Output(out)
    inner = graph.value(call.args[0])
    while (relu := graph.call(inner, "relax.nn.relu")) is not None:
        target.act_min = max(target.act_min, target.quantized.z)
        inner = graph.value(relu.args[0])
    if not isinstance(inner, relax.Call) or not isinstance(inner.op, tvm.ir.Op):
        return None
    match = _MATCHERS.get(inner.op.name)
    return match(graph, inner, target) if match else None


def _multipliers(real: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-channel (M, r) for real multipliers; None when one is out of the representable range."""
    try:
        pairs = [quantize_multiplier(float(m)) for m in np.atleast_1d(real)]
    except ValueError:
        return None
    return np.array([m for m, _ in pairs], np.int32), np.array([r for _, r in pairs], np.int32)


def _const(array: np.ndarray) -> relax.Expr:
    return relax.const(np.ascontiguousarray(array))


def _conv(graph: _Graph, call: relax.Call, out: _Output, bias: relax.Expr | None = None) -> _Rewrite | None:
    x = graph.activation(call.args[0])
    nd = len(call.args[0].ty.shape) - 2
    attrs = call.attrs
    if x is None or nd not in _LAYOUTS or attrs.out_dtype not in (None, "", "float32"):
        return None
    if (attrs.data_layout, attrs.kernel_layout) != _LAYOUTS[nd] or attrs.out_layout != attrs.data_layout:
        return None
    weight = graph.weight(call.args[1], int(call.args[1].ty.shape[0]))
    weighted = None if weight is None else _weighted(graph, x, *weight, bias, out)
    if weighted is None:
        return None
    args, clamp = weighted
    shape = {
        "strides": [int(s) for s in attrs.strides],
        "padding": [int(p) for p in attrs.padding],
        "dilation": [int(d) for d in attrs.dilation],
        "groups": int(attrs.groups),
    }
    return _Rewrite(args, ops.conv(x.data.ty, args[1].ty, {**shape, **clamp}))


def _dense(graph: _Graph, call: relax.Call, out: _Output, bias: relax.Expr | None = None) -> _Rewrite | None:
    x = graph.activation(call.args[0])
    w_ty = call.args[1].ty
    if x is None or len(call.args[0].ty.shape) < 2 or len(w_ty.shape) != 2:
        return None
    if call.attrs.out_dtype not in (None, "", "float32"):
        return None
    transposed = graph.call(call.args[1], "relax.permute_dims")
    if transposed is not None:  # Gemm with transB: W is stored (units, K)
        weight = graph.weight(transposed.args[0], int(w_ty.shape[1]))
    else:  # MatMul: W is stored (K, units)
        weight = graph.weight(call.args[1], int(w_ty.shape[1]))
        weight = None if weight is None else (weight[0].T, weight[1])
    weighted = None if weight is None else _weighted(graph, x, *weight, bias, out)
    if weighted is None:
        return None
    args, clamp = weighted
    return _Rewrite(args, ops.dense(x.data.ty, args[1].ty, clamp))


def _weighted(graph: _Graph, x: _Quantized, w: np.ndarray, w_scale: np.ndarray, bias, out: _Output):
    """The arguments (x, w, bias, multiplier, shift) of a conv or dense, and its zero points and clamp;
    the bias is zeros without one, the multiplier s_in s_w[c] / s_out per output channel."""
    acc_scale = np.float64(x.s) * w_scale.astype(np.float64)
    b = np.zeros(len(w_scale), np.int32) if bias is None else graph.bias(bias, acc_scale.astype(np.float32))
    multipliers = _multipliers(acc_scale / out.quantized.s)
    if b is None or multipliers is None:
        return None
    args = [x.data, *(_const(a) for a in (w.astype(np.int8), b, *multipliers))]
    return args, {"input_zero_point": x.z, **out.clamp()}


def _add(graph: _Graph, call: relax.Call, out: _Output) -> _Rewrite | None:
    """conv + bias, matmul + bias, or the sum of two int8 tensors."""
    for main, other in ((call.args[0], call.args[1]), (call.args[1], call.args[0])):
        if graph.call(main, "relax.nn.conv1d", "relax.nn.conv2d") is not None:
            return _conv(graph, graph.value(main), out, bias=other)
        if graph.call(main, "relax.matmul") is not None:
            return _dense(graph, graph.value(main), out, bias=other)
    a, b = graph.dequantized(call.args[0]), graph.dequantized(call.args[1])
    if a is None or b is None or not (a.per_tensor and b.per_tensor):
        return None
    if list(call.args[0].ty.shape) != list(call.args[1].ty.shape):
        return None
    twice_max = 2 * max(np.float64(a.s), np.float64(b.s))
    scales = np.array([a.s / twice_max, b.s / twice_max, twice_max / (2**ADD_LEFT_SHIFT * out.quantized.s)])
    multipliers = _multipliers(scales)
    if multipliers is None:
        return None
    (ma, mb, mo), (ra, rb, ro) = multipliers[0].tolist(), multipliers[1].tolist()
    attrs = {
        "lhs_zero_point": a.z, "lhs_multiplier": ma, "lhs_shift": ra,
        "rhs_zero_point": b.z, "rhs_multiplier": mb, "rhs_shift": rb,
        "output_multiplier": mo, "output_shift": ro, "left_shift": ADD_LEFT_SHIFT, **out.clamp(),
    }  # fmt: skip
    return _Rewrite([a.data, b.data], ops.add(a.data.ty, b.data.ty, attrs))


def _rescaled(x: _Quantized, out: _Output, count: int = 1) -> dict | None:
    """Attributes of an op that sums `count` values of x and rescales them to the output (pools)."""
    multiplier = _multipliers(np.array([np.float64(x.s) / (count * np.float64(out.quantized.s))]))
    if multiplier is None:
        return None
    return {"input_zero_point": x.z, "multiplier": int(multiplier[0][0]), "shift": int(multiplier[1][0]), **out.clamp()}


def _global_avg_pool(graph: _Graph, call: relax.Call, out: _Output) -> _Rewrite | None:
    x = graph.activation(call.args[0])
    ndim = len(call.args[0].ty.shape)
    axes = sorted(int(a) % ndim for a in call.attrs.axis) if call.attrs.axis is not None else []
    if x is None or ndim < 3 or axes != list(range(2, ndim)) or not call.attrs.keepdims:
        return None
    count = int(np.prod([int(d) for d in list(call.args[0].ty.shape)[2:]]))
    attrs = _rescaled(x, out, count)
    return None if attrs is None else _Rewrite([x.data], ops.global_avg_pool(x.data.ty, attrs))


def _pool_attrs(call: relax.Call) -> dict | None:
    attrs = call.attrs
    nd = len(call.args[0].ty.shape) - 2
    if nd not in _LAYOUTS or attrs.layout != _LAYOUTS[nd][0] or attrs.out_layout != attrs.layout or attrs.ceil_mode:
        return None
    return {
        "pool_size": [int(k) for k in attrs.pool_size],
        "strides": [int(s) for s in attrs.strides],
        "padding": [int(p) for p in attrs.padding],
        "dilation": [int(d) for d in attrs.dilation],
    }


def _avg_pool(graph: _Graph, call: relax.Call, out: _Output) -> _Rewrite | None:
    x, pool = graph.activation(call.args[0]), _pool_attrs(call)
    if x is None or pool is None or any(d != 1 for d in pool.pop("dilation")):
        return None
    if any(pool["padding"]) and not call.attrs.count_include_pad:
        return None  # the divisor would change at the borders
    attrs = _rescaled(x, out, int(np.prod(pool["pool_size"])))
    return None if attrs is None else _Rewrite([x.data], ops.avg_pool(x.data.ty, {**pool, **attrs}))


def _max_pool(graph: _Graph, call: relax.Call, out: _Output) -> _Rewrite | None:
    x, pool = graph.activation(call.args[0]), _pool_attrs(call)
    attrs = None if x is None or pool is None else _rescaled(x, out)
    return None if attrs is None else _Rewrite([x.data], ops.max_pool(x.data.ty, {**pool, **attrs}))


def _concat(graph: _Graph, call: relax.Call, out: _Output) -> _Rewrite | None:
    fields = graph.value(call.args[0])
    if out.narrowed or not isinstance(fields, relax.Tuple):
        return None
    inputs = [graph.activation(f) for f in fields.fields]
    if any(q is None for q in inputs):
        return None
    multipliers = _multipliers(np.array([np.float64(q.s) / np.float64(out.quantized.s) for q in inputs]))
    if multipliers is None:
        return None
    attrs = {
        "axis": int(call.attrs.axis),
        "input_zero_points": [q.z for q in inputs],
        "multipliers": multipliers[0].tolist(),
        "shifts": multipliers[1].tolist(),
        "output_zero_point": out.quantized.z,
    }
    return _Rewrite([q.data for q in inputs], ops.concat([q.data.ty for q in inputs], attrs))


def _moved(graph: _Graph, call: relax.Call, out: _Output) -> _Rewrite | None:
    """A data-movement op (reshape, transpose, ...) between equal quantisations: the same op on the int8 data."""
    x = graph.activation(call.args[0])
    if x is None or out.narrowed or (x.s, x.z) != (out.quantized.s, out.quantized.z):
        return None
    return _Rewrite([], plain=relax.Call(call.op, [x.data, *call.args[1:]], call.attrs))


def _requantized(graph: _Graph, call: relax.Call, out: _Output) -> _Rewrite | None:
    """quantize(dequantize(x)) with the same scale and zero point: x itself."""
    x = graph.activation(call)
    if x is None or out.narrowed or (x.s, x.z) != (out.quantized.s, out.quantized.z):
        return None
    return _Rewrite([], plain=x.data)


_MATCHERS: dict[str, Callable[[_Graph, relax.Call, _Output], _Rewrite | None]] = {
    "relax.nn.conv1d": _conv,
    "relax.nn.conv2d": _conv,
    "relax.matmul": _dense,
    "relax.add": _add,
    "relax.mean": _global_avg_pool,
    "relax.nn.avg_pool1d": _avg_pool,
    "relax.nn.avg_pool2d": _avg_pool,
    "relax.nn.max_pool1d": _max_pool,
    "relax.nn.max_pool2d": _max_pool,
    "relax.concat": _concat,
    "relax.dequantize": _requantized,
    **dict.fromkeys(_MOVES, _moved),
}


def _prune_tensor_names(func: relax.Function) -> relax.Function:
    """Keep only the ONNX names whose binding is still there (the float values the pass replaced are gone)."""
    if func.attrs is None or TENSOR_NAMES_ATTR not in func.attrs:
        return func
    bound = {b.var.name for block in func.body.blocks for b in block.bindings}
    names = {str(k): str(v) for k, v in func.attrs[TENSOR_NAMES_ATTR].items() if str(v) in bound}
    return func.with_attr(TENSOR_NAMES_ATTR, names)
