"""The kernel library (runtime/eenn_nn.h) in the lowering: the library kernel of a composite function, and the pass
that turns calls of composite functions into destination-passing calls of the library on NHWC tensors.

Composite functions come from `patterns.float32_patterns()` (FuseOpsByPattern) or from QDQToInteger
(`eenn.int8.<op>`). After `LibraryCalls`, each is `R.call_dps_packed(ExternFunc(symbol), tensors)`; CallTIRRewrite
then gives it its output like any kernel, and the lowering reads `symbol` back into the kernel (`LibraryCalls.kernels`).
The library works on NHWC; the rest of the network keeps the model's layout. So a windowed kernel (convolution,
pool) reads its input through a transpose to NHWC and its result is transposed back for whatever is not a library
kernel; transposes nobody reads are dropped (DeadCodeElimination), so between library kernels none remain.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
import tvm
from tvm import relax

from eenn_tvm.passes.cuts import body_bindings, output_fields
from eenn_tvm.passes.rebuild import Substitute
from eenn_tvm.targets.mcu import nn_library as nn
from eenn_tvm.targets.mcu import patterns
from eenn_tvm.targets.mcu.patterns import shape_of

COMPOSITE = "Composite"
TO_NHWC, TO_NCHW = [0, 2, 3, 1], [0, 3, 1, 2]
_GENERIC_NAME = re.compile(r"^(lv|gv|alloc)\d*$")


def is_generic_name(name: str) -> bool:
    """A binding name TVM made up (lv3, gv, alloc2), not one that came from the model."""
    return _GENERIC_NAME.match(name) is not None


def kernel_of(func: relax.Function) -> nn.Kernel | None:
    """The library kernel computing the composite function `func`, or None if the library has none."""
    read = _READERS.get(str((func.attrs or {}).get(COMPOSITE, "")))
    return read(_calls(func)) if read else None


@tvm.transform.module_pass(opt_level=0, name="eenn.LibraryCalls")
class LibraryCalls:
    """Calls of composite functions the library runs become `call_dps_packed` of a symbol of their own, kept with
    its kernel in `kernels`; windowed kernels take and give NHWC tensors.

    `chain` names functions that run one after the other, each on the first output of the one before (a device's
    segments): what one hands to the next stays in NHWC where it is, so no transposes are spent between them; the
    last one returns the model's layout.
    """

    def __init__(self, chain: Sequence[str] = ()):
        self.chain = list(chain)
        self.kernels: dict[str, nn.Kernel] = {}

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        others = [gv.name_hint for gv, f in mod.functions.items() if isinstance(f, relax.Function)]
        others = [name for name in others if name not in self.chain and COMPOSITE not in (mod[name].attrs or {})]
        handed_in_nhwc = False
        for name in self.chain + others:
            may_hand_nhwc = name in self.chain[:-1]
            rewriter = _Rewriter(mod, self.kernels)
            func, handed_in_nhwc = rewriter.rewrite(name, mod[name], handed_in_nhwc, may_hand_nhwc)
            mod[name] = func
        return mod


class _Rewriter:
    def __init__(self, mod: tvm.IRModule, kernels: dict[str, nn.Kernel]):
        self.mod = mod
        self.kernels = kernels
        self.nhwc: dict[relax.Var, relax.Var] = {}  # a tensor -> the same values in NHWC, where emitted

    def rewrite(self, name: str, func: relax.Function, nhwc_in: bool, nhwc_out: bool) -> tuple[relax.Function, bool]:
        """The function with library calls; with `nhwc_in` its first parameter comes in NHWC. Returns whether its
        first output leaves in NHWC (only with `nhwc_out`, and where the library made it so)."""
        bindings, out = body_bindings(func)
        params, subst = list(func.params), Substitute()
        if nhwc_in:
            n, c, h, w = shape_of(params[0])
            params[0] = relax.Var(params[0].name, relax.TensorType((n, h, w, c), params[0].ty.dtype))
        bb = relax.BlockBuilder()
        with bb.function(name, params, attrs=dict(func.attrs or {}), pure=True):
            with bb.dataflow():
                if nhwc_in:
                    model_layout = bb.emit(relax.op.permute_dims(params[0], TO_NCHW), name_hint=params[0].name)
                    subst.map(func.params[0], model_layout)
                    self.nhwc[model_layout] = params[0]
                for binding in bindings:
                    self._emit(bb, relax.VarBinding(binding.var, subst.visit_expr(binding.value)))
                fields = output_fields(subst.visit_expr(out))
                handed_nhwc = nhwc_out and fields[0] in self.nhwc
                if handed_nhwc:
                    fields[0] = self.nhwc[fields[0]]
                gv = bb.emit_output(relax.Tuple(fields) if isinstance(out, relax.Tuple) else fields[0])
            bb.emit_func_output(gv)
        return bb.get()[name], handed_nhwc

    def _emit(self, bb: relax.BlockBuilder, binding: relax.Binding) -> None:
        value = binding.value
        callee = self._composite(value)
        kernel = kernel_of(callee) if callee is not None else None
        if kernel is None:
            bb.emit_normalized(binding)
            return
        symbol = f"eenn_nn_{len(self.kernels)}"
        self.kernels[symbol] = kernel
        name = _output_name(callee, binding.var)
        tensors = [a for a in value.args if not isinstance(a, tvm.ir.expr.Constant)]
        out_shape = shape_of(binding.var)
        nhwc = isinstance(kernel, nn.WindowKernel) or (
            isinstance(kernel, nn.ElementwiseKernel) and all(t in self.nhwc for t in tensors)
        )
        if not nhwc:
            result = bb.emit(_library_call(symbol, tensors, binding.var.ty), name_hint=name)
            bb.emit_normalized(relax.VarBinding(binding.var, result))
            return
        inputs = [self._in_nhwc(bb, t) for t in tensors]
        if len(out_shape) != 4:  # a global pool to (1, C): the same bytes in either layout
            result = bb.emit(_library_call(symbol, inputs, binding.var.ty), name_hint=name)
            bb.emit_normalized(relax.VarBinding(binding.var, result))
            return
        n, c, h, w = out_shape
        result = bb.emit(_library_call(symbol, inputs, relax.TensorType((n, h, w, c), binding.var.ty.dtype)), name)
        self.nhwc[binding.var] = result
        bb.emit_normalized(relax.VarBinding(binding.var, bb.normalize(relax.op.permute_dims(result, TO_NCHW))))

    def _composite(self, value: relax.Expr) -> relax.Function | None:
        if isinstance(value, relax.Call) and isinstance(value.op, relax.GlobalVar):
            func = self.mod[value.op]
            if isinstance(func, relax.Function) and COMPOSITE in (func.attrs or {}):
                return func
        return None

    def _in_nhwc(self, bb: relax.BlockBuilder, tensor: relax.Expr) -> relax.Var:
        if tensor not in self.nhwc:
            self.nhwc[tensor] = bb.emit(relax.op.permute_dims(tensor, TO_NHWC), name_hint=f"{tensor.name}_nhwc")
        return self.nhwc[tensor]


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


def _window(x: list[int], out: list[int], kernel, strides=(1, 1), dilation=(1, 1), padding=(0, 0, 0, 0)) -> nn.Window:
    """The library's window for NCHW shapes `x` -> `out`; padding (top, left, bottom, right) as Relax has it."""
    (_, c, h, w), (_, oc, oh, ow) = x, out
    top, left = int(padding[0]), int(padding[1])
    return nn.Window(h, w, c, oh, ow, oc, *map(int, kernel), *map(int, strides), *map(int, dilation), top, left)


def _conv_f32(calls: list[relax.Call]) -> nn.ConvF32:
    conv = calls[0]
    x, w = conv.args
    a = conv.attrs
    weights = w.value.numpy()
    depthwise = int(a.groups) > 1
    window = _window(shape_of(x), shape_of(conv), weights.shape[2:], a.strides, a.dilation, a.padding)
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
    if op == "relax.mean":
        window = _window(x, [1, x[1], 1, 1], x[2:])  # over the whole map: ONNX's ReduceMean, GlobalAveragePool
    elif op == "relax.nn.adaptive_avg_pool2d":
        kernel = [x[2] // out[2], x[3] // out[3]]
        window = _window(x, out, kernel, kernel)
    else:
        window = _window(x, out, a.pool_size, a.strides, a.dilation, a.padding)
    count_padding = op == "relax.nn.avg_pool2d" and bool(a.count_include_pad)
    return nn.PoolF32(window, op != "relax.nn.max_pool2d", count_padding, *_clamp(calls))


def _add_f32(calls: list[relax.Call]) -> nn.AddF32:
    return nn.AddF32(math.prod(shape_of(calls[0])), *_clamp(calls))


_READERS = {
    patterns.CONV2D: _conv_f32,
    patterns.DENSE: _dense_f32,
    patterns.POOL: _pool_f32,
    patterns.ADD: _add_f32,
}
