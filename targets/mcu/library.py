"""The kernel library (runtime/eenn_nn.h) in the lowering: the library kernel of a composite function, and the pass
that turns calls of composite functions into destination-passing calls of the library on NHWC tensors.

Composite functions come from `patterns.float32_patterns()` (FuseOpsByPattern) or from QDQToInteger
(`eenn.int8.<op>`). After `LibraryCalls`, each is `R.call_dps_packed(ExternFunc(symbol), tensors)`; CallTIRRewrite
then gives it its output like any kernel, and the lowering reads `symbol` back into the kernel (`LibraryCalls.kernels`).
The library works on NHWC; the rest of the network keeps the model's layout. So a windowed kernel (convolution,
pool) reads its input through a transpose to NHWC (NWC in 1-D: a 1-D layer is a 2-D one of height 1) and its result
is transposed back for whatever is not a library kernel; transposes nobody reads are dropped (DeadCodeElimination),
so between library kernels none remain.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence

import numpy as np
import tvm
from tvm import relax

from eenn_tvm.passes.cuts import body_bindings, output_fields
from eenn_tvm.passes.rebuild import Substitute
from eenn_tvm.quantized.reference import ADD_LEFT_SHIFT
from eenn_tvm.targets.mcu import nn_library as nn
from eenn_tvm.targets.mcu import patterns
from eenn_tvm.targets.mcu.patterns import shape_of

COMPOSITE = "Composite"
INT8_PREFIX = "eenn.int8."  # QDQToInteger's integer ops (docs/int8.md)
IDENTITY_SCALE = (1 << 30, 30)  # (M, r) of a rescaling by 1
_GENERIC_NAME = re.compile(r"^(lv|gv|alloc)\d*$")


def is_generic_name(name: str) -> bool:
    """A binding name TVM made up (lv3, gv, alloc2), not one that came from the model."""
    return _GENERIC_NAME.match(name) is not None


def kernel_of(func: relax.Function, args: list[relax.Expr]) -> nn.Kernel | None:
    """The library kernel computing the composite function `func` on `args`, or None if the library has none.
    float32 composites (patterns.py) hold their constants; int8 ones (QDQToInteger) take them as arguments."""
    name = str((func.attrs or {}).get(COMPOSITE, ""))
    if name in _FLOAT32_READERS:
        return _FLOAT32_READERS[name](_calls(func))
    if name.startswith(INT8_PREFIX) and name[len(INT8_PREFIX) :] in _INT8_READERS:
        return _INT8_READERS[name[len(INT8_PREFIX) :]](_Int8Call(func, args))
    return None


@tvm.transform.module_pass(opt_level=0, name="eenn.LibraryCalls")
class LibraryCalls:
    """Calls of composite functions the library runs become `call_dps_packed` of a symbol of their own, kept with
    its kernel in `kernels`; windowed kernels take and give channels-last tensors (NHWC, NWC).

    `chain` names functions that run one after the other, each on the first output of the one before (a device's
    segments): what one hands to the next stays channels-last where it is, so no transposes are spent between them;
    the last one returns the model's layout.
    """

    def __init__(self, chain: Sequence[str] = ()):
        self.chain = list(chain)
        self.kernels: dict[str, nn.Kernel] = {}

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        others = [gv.name_hint for gv, f in mod.functions.items() if isinstance(f, relax.Function)]
        others = [name for name in others if name not in self.chain and COMPOSITE not in (mod[name].attrs or {})]
        handed_channels_last = False
        for name in self.chain + others:
            may_hand_channels_last = name in self.chain[:-1]
            rewriter = _Rewriter(mod, self.kernels)
            mod[name], handed_channels_last = rewriter.rewrite(
                name, mod[name], handed_channels_last, may_hand_channels_last
            )
        return mod


class _Rewriter:
    def __init__(self, mod: tvm.IRModule, kernels: dict[str, nn.Kernel]):
        self.mod = mod
        self.kernels = kernels
        self.channels_last: dict[relax.Var, relax.Var] = {}  # a tensor -> its values channels-last, where emitted
        self.bound: dict[relax.Var, relax.Expr] = {}  # a tensor -> the value bound to it

    def rewrite(self, name: str, func: relax.Function, last_in: bool, last_out: bool) -> tuple[relax.Function, bool]:
        """The function with library calls; with `last_in` its first parameter comes channels-last. Returns whether
        its first output leaves channels-last (only with `last_out`, and where the library made it so)."""
        bindings, out = body_bindings(func)
        params, subst = list(func.params), Substitute()
        if last_in:
            params[0] = relax.Var(params[0].name, _channels_last_type(params[0].ty))
        bb = relax.BlockBuilder()
        with bb.function(name, params, attrs=dict(func.attrs or {}), pure=True):
            with bb.dataflow():
                if last_in:
                    model_layout = bb.emit(_to_channels_first(params[0]), name_hint=params[0].name)
                    subst.map(func.params[0], model_layout)
                    self.channels_last[model_layout] = params[0]
                for binding in bindings:
                    self._emit(bb, relax.VarBinding(binding.var, subst.visit_expr(binding.value)))
                fields = output_fields(subst.visit_expr(out))
                handed_last = last_out and fields[0] in self.channels_last
                if handed_last:
                    fields[0] = self.channels_last[fields[0]]
                gv = bb.emit_output(relax.Tuple(fields) if isinstance(out, relax.Tuple) else fields[0])
            bb.emit_func_output(gv)
        return bb.get()[name], handed_last

    def _emit(self, bb: relax.BlockBuilder, binding: relax.Binding) -> None:
        value = binding.value
        self.bound[binding.var] = value
        callee = self._composite(value)
        kernel = kernel_of(callee, list(value.args)) if callee is not None else None
        if kernel is None:
            bb.emit_normalized(binding)
            return
        symbol = f"eenn_nn_{len(self.kernels)}"
        self.kernels[symbol] = kernel
        name = _output_name(callee, binding.var)
        tensors = [a for a in value.args if not isinstance(a, tvm.ir.expr.Constant)]
        channels_last = isinstance(kernel, nn.WindowKernel) or (
            isinstance(kernel, nn.ElementwiseKernel) and all(t in self.channels_last for t in tensors)
        )
        if channels_last:
            tensors = [self._channels_last(bb, t) for t in tensors]
        elif isinstance(kernel, nn.DenseS8) and kernel.rows > 1 and (map_ := self._map_of_rows(tensors[0])) is not None:
            pool = pooling_matrix(kernel, shape_of(map_))
            if pool is not None:
                self.kernels[symbol] = pool
                self._emit_pooled_rows(bb, binding, symbol, name, map_, pool)
                return
            tensors = [self.channels_last[map_]]  # row c at c, its values C apart
            self.kernels[symbol] = dataclasses.replace(kernel, row_stride=1, feature_stride=shape_of(map_)[1])
        if not channels_last or len(shape_of(binding.var)) == 2:  # (1, C) after a global pool: either layout
            result = bb.emit(_library_call(symbol, tensors, binding.var.ty), name_hint=name)
            bb.emit_normalized(relax.VarBinding(binding.var, result))
            return
        result = bb.emit(_library_call(symbol, tensors, _channels_last_type(binding.var.ty)), name_hint=name)
        self.channels_last[binding.var] = result
        bb.emit_normalized(relax.VarBinding(binding.var, bb.normalize(_to_channels_first(result))))

    def _map_of_rows(self, x: relax.Expr) -> relax.Expr | None:
        """The map whose channels are the rows of x (x = reshape(map, (1, C, positions)): a head pooling each
        channel), where the library holds it channels-last; None otherwise."""
        source = self.bound.get(x)
        if not (isinstance(source, relax.Call) and source.op.name == "relax.reshape"):
            return None
        map_ = source.args[0]
        shape = shape_of(map_)
        if map_ not in self.channels_last or shape_of(x) != [1, shape[1], math.prod(shape[2:])]:
            return None
        return map_

    def _emit_pooled_rows(
        self, bb: relax.BlockBuilder, binding: relax.Binding, symbol: str, name: str, map_: relax.Expr, pool
    ) -> None:
        """The pool writes NHWC (positions, then channels); the dense layer's rows are the channels."""
        w = pool.window
        spatial = [w.output_height, w.output_width] if len(shape_of(map_)) == 4 else [w.output_width]
        out_ty = relax.TensorType([1, *spatial, w.output_channels], "int8")
        result = bb.emit(_library_call(symbol, [self.channels_last[map_]], out_ty), name_hint=name)
        rows = relax.op.reshape(_to_channels_first(result), shape_of(binding.var))
        bb.emit_normalized(relax.VarBinding(binding.var, bb.normalize(rows)))

    def _composite(self, value: relax.Expr) -> relax.Function | None:
        if isinstance(value, relax.Call) and isinstance(value.op, relax.GlobalVar):
            func = self.mod[value.op]
            if isinstance(func, relax.Function) and COMPOSITE in (func.attrs or {}):
                return func
        return None

    def _channels_last(self, bb: relax.BlockBuilder, tensor: relax.Expr) -> relax.Var:
        if tensor not in self.channels_last:
            rank = len(shape_of(tensor))
            moved = relax.op.permute_dims(tensor, [0, *range(2, rank), 1])
            self.channels_last[tensor] = bb.emit(moved, name_hint=f"{tensor.name}_{_LAST[rank]}")
        return self.channels_last[tensor]


_LAST = {3: "nwc", 4: "nhwc"}


def _channels_last_type(ty: relax.TensorType) -> relax.TensorType:
    shape = [int(d) for d in ty.shape.values]
    return relax.TensorType([shape[0], *shape[2:], shape[1]], ty.dtype)


def _to_channels_first(tensor: relax.Expr) -> relax.Expr:
    rank = len(tensor.ty.shape.values)
    return relax.op.permute_dims(tensor, [0, rank - 1, *range(1, rank - 1)])


def _library_call(symbol: str, tensors: list[relax.Expr], out_ty: relax.TensorType) -> relax.Call:
    return relax.call_dps_packed(relax.ExternFunc(symbol), tensors, out_ty=out_ty)


def _output_name(func: relax.Function, var: relax.Var) -> str:
    """The name of the tensor the composite computes (its binding's name before fusion, an ONNX tensor's)."""
    return str((func.attrs or {}).get(patterns.TENSOR_ATTR, var.name))


def _calls(func: relax.Function) -> list[relax.Call]:
    return [b.value for block in func.body.blocks for b in block.bindings if isinstance(b.value, relax.Call)]


def _clamp(calls: list[relax.Call]) -> tuple[float, float]:
    """The output range a fused ReLU or clip leaves (unbounded without one)."""
    for call in calls:
        if call.op.name == "relax.nn.relu":
            return 0.0, math.inf
        if call.op.name == "relax.clip":
            return float(call.args[1].value), float(call.args[2].value)
    return -math.inf, math.inf


def _bias(calls: list[relax.Call]) -> np.ndarray | None:
    for call in calls[1:]:
        if call.op.name == "relax.add":
            const = next(a for a in call.args if isinstance(a, tvm.ir.GenericConst))
            return np.ascontiguousarray(const.value.numpy().reshape(-1), dtype=np.float32)
    return None


def _window(x: list[int], out: list[int], kernel, strides=None, dilation=None, padding=None) -> nn.Window:
    """The library's window for channels-first shapes `x` -> `out` (2-D, or 1-D as 2-D of height 1); padding as
    Relax has it: all begins, then all ends."""
    nd = len(x) - 2
    as_2d = lambda values, fill: [fill] * (2 - nd) + [int(v) for v in values]  # noqa: E731
    (c, *size), (oc, *out_size) = x[1:], out[1:]
    ones = [1] * nd
    top, left = as_2d(list(padding or [0] * 2 * nd)[:nd], 0)
    return nn.Window(
        *as_2d(size, 1), c, *as_2d(out_size, 1), oc, *as_2d(kernel, 1), *as_2d(strides or ones, 1),
        *as_2d(dilation or ones, 1), top, left,
    )  # fmt: skip


def _conv_f32(calls: list[relax.Call]) -> nn.ConvF32:
    conv = calls[0]
    x, w = conv.args
    a = conv.attrs
    weights = w.value.numpy()
    depthwise = int(a.groups) > 1
    window = _window(shape_of(x), shape_of(conv), weights.shape[2:], a.strides, a.dilation, a.padding)
    weights = weights.reshape(*weights.shape[:2], window.kernel_height, window.kernel_width)  # 1-D: height 1
    # the library's layouts: OHWI, and HWC (one filter per channel) for depthwise
    weights = weights[:, 0].transpose(1, 2, 0) if depthwise else weights.transpose(0, 2, 3, 1)
    return nn.ConvF32(window, np.ascontiguousarray(weights), _bias(calls), *_clamp(calls), depthwise=depthwise)


def _dense_f32(calls: list[relax.Call]) -> nn.DenseF32:
    weights = calls[0].args[1].value.numpy()  # x @ W: W is (in, out); the library's is (out, in)
    return nn.DenseF32(np.ascontiguousarray(weights.T), _bias(calls), *_clamp(calls))


def _pool_f32(calls: list[relax.Call]) -> nn.PoolF32:
    pool = calls[0]
    x, out = shape_of(pool.args[0]), shape_of(pool)
    op, a = pool.op.name, pool.attrs
    if op == "relax.mean":  # over the whole map: ONNX's ReduceMean, GlobalAveragePool
        window = _window(x, [1, x[1]] + [1] * (len(x) - 2), x[2:])
    elif op.startswith("relax.nn.adaptive"):  # windows that tile the map (patterns.py checks they do)
        kernel = [s // o for s, o in zip(x[2:], out[2:])]
        window = _window(x, out, kernel, kernel)
    else:
        window = _window(x, out, a.pool_size, a.strides, a.dilation, a.padding)
    average = not op.startswith("relax.nn.max_pool")
    count_padding = op.startswith("relax.nn.avg_pool") and bool(a.count_include_pad)
    return nn.PoolF32(window, average, count_padding, *_clamp(calls))


def _add_f32(calls: list[relax.Call]) -> nn.AddF32:
    return nn.AddF32(math.prod(shape_of(calls[0])), *_clamp(calls))


def _quantize(calls: list[relax.Call]) -> nn.QuantizeS8:
    x, scale, zero_point = calls[0].args
    size = math.prod(shape_of(x))
    dequantize = calls[0].op.name == "relax.dequantize"
    return nn.QuantizeS8(size, float(scale.value.numpy()), int(zero_point.value.numpy()), dequantize)


class _Int8Call:
    """A call of an integer op: its tensors' shapes, its constant arguments as arrays, its attributes as numbers."""

    def __init__(self, func: relax.Function, args: list[relax.Expr]):
        self.x_shape = shape_of(args[0])
        self.out_shape = [int(d) for d in func.ret_ty.shape.values]
        self.constants = [a.value.numpy() for a in args if isinstance(a, tvm.ir.GenericConst)]
        self.attrs = func.attrs

    def __getitem__(self, name: str):
        value = self.attrs[name]
        return [int(v) for v in value] if not isinstance(value, (int, tvm.tirx.IntImm)) else int(value)

    def output(self) -> nn.Output:
        return nn.Output(self["output_zero_point"], self["act_min"], self["act_max"])

    def window(self, kernel) -> nn.Window:
        """The window of `kernel` over x; the geometry an op has no attribute for is the default (no dilation)."""
        strides, dilation, padding = (self[k] if k in self.attrs else None for k in ("strides", "dilation", "padding"))
        return _window(self.x_shape, self.out_shape, kernel, strides, dilation, padding)


def pooling_matrix(dense: nn.DenseS8, map_shape: list[int]) -> nn.AvgPoolS8 | None:
    """The average pool a dense layer over a map's channels computes when its weights are one value on windows
    that tile the map and zero elsewhere (a head's pooling as a MatMul), with no bias and one requantisation:
    weight * the window's sum of (x - z_in), the same int32 the dense layer accumulates. None if they are not."""
    weights = dense.weights
    same_scale = len(set(dense.multipliers.tolist())) == 1 and len(set(dense.shifts.tolist())) == 1
    if (dense.bias is not None and dense.bias.any()) or not same_scale:
        return None
    channels, *size = map_shape[1:]
    height, width = ([1] + size)[-2:]
    for out_height in (h for h in range(1, height + 1) if height % h == 0 and weights.shape[0] % h == 0):
        out_width = weights.shape[0] // out_height
        if width % out_width:
            continue
        kernel = (height // out_height, width // out_width)
        mask = _window_masks(height, width, out_height, out_width)
        weight = int(weights.max())
        if weight != 0 and np.array_equal(weights, weight * mask):
            window = nn.Window(height, width, channels, out_height, out_width, channels, *kernel, *kernel)
            scale = (int(dense.multipliers[0]), int(dense.shifts[0]))
            return nn.AvgPoolS8(window, dense.input_zero_point, scale, dense.output, weight)
    return None


def _window_masks(height: int, width: int, out_height: int, out_width: int) -> np.ndarray:
    """(out_height * out_width, height * width): row u is 1 on the u-th window of a tiling, 0 elsewhere."""
    kh, kw = height // out_height, width // out_width
    masks = np.zeros((out_height, out_width, height, width), np.int64)
    for i in range(out_height):
        for j in range(out_width):
            masks[i, j, i * kh : (i + 1) * kh, j * kw : (j + 1) * kw] = 1
    return masks.reshape(out_height * out_width, height * width)


def _conv_s8(call: _Int8Call) -> nn.ConvS8 | None:
    weights, bias, multipliers, shifts = call.constants
    groups, channels = call["groups"], call.x_shape[1]
    depthwise = groups > 1
    if depthwise and not groups == channels == weights.shape[0]:
        return None  # grouped, or a depth multiplier: TVM's kernel
    window = call.window(weights.shape[2:])
    weights = weights.reshape(*weights.shape[:2], window.kernel_height, window.kernel_width)
    weights = weights[:, 0].transpose(1, 2, 0) if depthwise else weights.transpose(0, 2, 3, 1)
    return nn.ConvS8(
        window, call["input_zero_point"], np.ascontiguousarray(weights), bias, multipliers, shifts, call.output(),
        depthwise,
    )  # fmt: skip


def _dense_s8(call: _Int8Call) -> nn.DenseS8:
    weights, bias, multipliers, shifts = call.constants  # weights (units, K), as the library has them
    rows = math.prod(call.x_shape[:-1])
    return nn.DenseS8(weights, bias, call["input_zero_point"], multipliers, shifts, call.output(), rows)


def _add_s8(call: _Int8Call) -> nn.AddS8 | None:
    if call["left_shift"] != ADD_LEFT_SHIFT:
        return None
    scales = [(call[f"{side}_multiplier"], call[f"{side}_shift"]) for side in ("lhs", "rhs", "output")]
    zero_points = call["lhs_zero_point"], call["rhs_zero_point"]
    return nn.AddS8(math.prod(call.out_shape), *zero_points, *scales, call.output())


def _avg_pool_s8(call: _Int8Call) -> nn.AvgPoolS8:
    window = call.window(call["pool_size"])
    return nn.AvgPoolS8(window, call["input_zero_point"], (call["multiplier"], call["shift"]), call.output())


def _global_avg_pool_s8(call: _Int8Call) -> nn.AvgPoolS8:
    window = _window(call.x_shape, call.out_shape, call.x_shape[2:])  # the whole map
    return nn.AvgPoolS8(window, call["input_zero_point"], (call["multiplier"], call["shift"]), call.output())


def _max_pool_s8(call: _Int8Call) -> nn.MaxPoolS8 | None:
    """The library's max pool keeps the scale: an int8 max, clamped."""
    if (call["multiplier"], call["shift"]) != IDENTITY_SCALE or call["input_zero_point"] != call["output_zero_point"]:
        return None
    window = call.window(call["pool_size"])
    return nn.MaxPoolS8(window, call["act_min"], call["act_max"])


_INT8_READERS = {
    "conv1d": _conv_s8,
    "conv2d": _conv_s8,
    "dense": _dense_s8,
    "add": _add_s8,
    "avg_pool1d": _avg_pool_s8,
    "avg_pool2d": _avg_pool_s8,
    "global_avg_pool": _global_avg_pool_s8,
    "max_pool1d": _max_pool_s8,
    "max_pool2d": _max_pool_s8,
}

_FLOAT32_READERS = {
    patterns.CONV2D: _conv_f32,
    patterns.DENSE: _dense_f32,
    patterns.POOL: _pool_f32,
    patterns.ADD: _add_f32,
    patterns.QUANTIZE: _quantize,
    patterns.DEQUANTIZE: _quantize,
}
