"""The integer ops as Relax functions: what `QDQToInteger` puts in place of dequantize -> float op -> quantize.

Each op is a private global function with attributes {"Composite": "eenn.int8.<op>", <its scalar parameters>};
its arguments are its tensors (x[, w, bias, multiplier, shift]); its body is the arithmetic of
`eenn_tvm.quantized.reference` written with Relax ops, so every TVM target builds it and gets the same integers.
A backend with int8 kernels of its own (the microcontroller's) matches on "Composite" and calls its kernel with
the same tensors and attributes instead.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from tvm import relax

from eenn_tvm.quantized.reference import INT8_MAX, INT8_MIN

COMPOSITE = "Composite"
PREFIX = "eenn.int8."
op = relax.op


def composite_name(func: relax.Function) -> str | None:
    """The op name ("conv2d", "add", ...) of an integer op function, None for any other function."""
    name = str(func.attrs[COMPOSITE]) if func.attrs is not None and COMPOSITE in func.attrs else ""
    return name[len(PREFIX) :] if name.startswith(PREFIX) else None


def conv(x_ty: relax.TensorType, w_ty: relax.TensorType, attrs: dict) -> relax.Function:
    """`eenn.int8.conv1d` / `conv2d`: attrs strides, padding, dilation, groups, input_zero_point,
    output_zero_point, act_min, act_max. Arguments x, w (O, C/groups, *k) int8, bias, multiplier, shift (O,) int32."""
    channels = int(w_ty.shape[0])
    name = f"conv{len(x_ty.shape) - 2}d"

    def body(x, w, bias, multiplier, shift):
        convolve = {1: op.nn.conv1d, 2: op.nn.conv2d}[len(x_ty.shape) - 2]
        acc = convolve(
            _centred(x, attrs["input_zero_point"]),
            op.astype(w, "int32"),
            strides=attrs["strides"],
            padding=attrs["padding"],
            dilation=attrs["dilation"],
            groups=attrs["groups"],
            out_dtype="int32",
        )
        ndim = len(x_ty.shape)
        acc = op.add(acc, _along(bias, 1, ndim))
        return _requantize(_wide(acc), _wide(_along(multiplier, 1, ndim)), _wide(_along(shift, 1, ndim)), attrs)

    return _function(name, [("x", x_ty), ("w", w_ty), *_channel_params(channels)], attrs, body)


def dense(x_ty: relax.TensorType, w_ty: relax.TensorType, attrs: dict) -> relax.Function:
    """`eenn.int8.dense`: attrs input_zero_point, output_zero_point, act_min, act_max. Arguments x (..., K),
    w (units, K) int8, bias, multiplier, shift (units,) int32."""

    def body(x, w, bias, multiplier, shift):
        acc = op.matmul(
            _centred(x, attrs["input_zero_point"]), op.permute_dims(op.astype(w, "int32")), out_dtype="int32"
        )
        return _requantize(_wide(op.add(acc, bias)), _wide(multiplier), _wide(shift), attrs)

    return _function("dense", [("x", x_ty), ("w", w_ty), *_channel_params(int(w_ty.shape[0]))], attrs, body)


def add(a_ty: relax.TensorType, b_ty: relax.TensorType, attrs: dict) -> relax.Function:
    """`eenn.int8.add`: attrs lhs_/rhs_zero_point, lhs_/rhs_multiplier, lhs_/rhs_shift, output_multiplier,
    output_shift, output_zero_point, left_shift, act_min, act_max. Arguments a, b int8 of one shape."""

    def operand(x, side):
        scaled = op.left_shift(_wide(_centred(x, attrs[f"{side}_zero_point"])), _int64(attrs["left_shift"]))
        return _rounding_multiply(scaled, _int64(attrs[f"{side}_multiplier"]), _int64(attrs[f"{side}_shift"]))

    def body(a, b):
        total = op.add(operand(a, "lhs"), operand(b, "rhs"))
        return _requantize(total, _int64(attrs["output_multiplier"]), _int64(attrs["output_shift"]), attrs)

    return _function("add", [("a", a_ty), ("b", b_ty)], attrs, body)


def avg_pool(x_ty: relax.TensorType, attrs: dict) -> relax.Function:
    """`eenn.int8.avg_pool1d` / `avg_pool2d`: attrs pool_size, strides, padding, input_zero_point,
    output_zero_point, multiplier, shift (m = s_in / (window size * s_out)), act_min, act_max. Argument x int8.
    The window sum is a depthwise convolution with ones, so that it stays in int32."""
    nd = len(x_ty.shape) - 2
    channels = int(x_ty.shape[1])

    def body(x):
        ones = relax.const(np.ones((channels, 1, *attrs["pool_size"]), np.int32))
        convolve = {1: op.nn.conv1d, 2: op.nn.conv2d}[nd]
        acc = convolve(
            _centred(x, attrs["input_zero_point"]),
            ones,
            strides=attrs["strides"],
            padding=attrs["padding"],
            groups=channels,
            out_dtype="int32",
        )
        return _requantize(_wide(acc), _int64(attrs["multiplier"]), _int64(attrs["shift"]), attrs)

    return _function(f"avg_pool{nd}d", [("x", x_ty)], attrs, body)


def global_avg_pool(x_ty: relax.TensorType, attrs: dict) -> relax.Function:
    """`eenn.int8.global_avg_pool`: attrs input_zero_point, output_zero_point, multiplier, shift
    (m = s_in / (positions * s_out)), act_min, act_max. Argument x int8 (N, C, *spatial); result (N, C, 1, ...)."""

    def body(x):
        axes = list(range(2, len(x_ty.shape)))
        acc = op.sum(_centred(x, attrs["input_zero_point"]), axis=axes, keepdims=True)
        return _requantize(_wide(acc), _int64(attrs["multiplier"]), _int64(attrs["shift"]), attrs)

    return _function("global_avg_pool", [("x", x_ty)], attrs, body)


def max_pool(x_ty: relax.TensorType, attrs: dict) -> relax.Function:
    """`eenn.int8.max_pool1d` / `max_pool2d`: attrs pool_size, strides, padding, dilation, input_zero_point,
    output_zero_point, multiplier, shift (m = s_in / s_out), act_min, act_max. Argument x int8."""
    nd = len(x_ty.shape) - 2

    def body(x):
        pool = {1: op.nn.max_pool1d, 2: op.nn.max_pool2d}[nd]
        peak = pool(x, attrs["pool_size"], attrs["strides"], attrs["padding"], attrs["dilation"])
        centred = _centred(peak, attrs["input_zero_point"])
        return _requantize(_wide(centred), _int64(attrs["multiplier"]), _int64(attrs["shift"]), attrs)

    return _function(f"max_pool{nd}d", [("x", x_ty)], attrs, body)


def concat(x_tys: list[relax.TensorType], attrs: dict) -> relax.Function:
    """`eenn.int8.concat`: attrs axis, input_zero_points, multipliers, shifts (m_i = s_i / s_out; the identity
    is M = 2^30, r = 30), output_zero_point. Arguments x0, x1, ... int8."""

    def body(*xs):
        parts = []
        for x, z, m, r in zip(xs, attrs["input_zero_points"], attrs["multipliers"], attrs["shifts"]):
            y = _rounding_multiply(_wide(_centred(x, z)), _int64(m), _int64(r))
            parts.append(_clamp(y, attrs["output_zero_point"], INT8_MIN, INT8_MAX))
        return op.concat(parts, axis=attrs["axis"])

    return _function("concat", [(f"x{i}", t) for i, t in enumerate(x_tys)], attrs, body)


# --- the shared arithmetic ------------------------------------------------------------------------------


def _function(name: str, params: list[tuple[str, relax.TensorType]], attrs: dict, body: Callable) -> relax.Function:
    args = [relax.Var(n, t) for n, t in params]
    bb = relax.BlockBuilder()
    with bb.function(name, args, attrs={COMPOSITE: PREFIX + name, **attrs}, private=True):
        with bb.dataflow():
            out = bb.emit_output(body(*args))
        bb.emit_func_output(out)
    return bb.get()[name]


def _channel_params(channels: int) -> list[tuple[str, relax.TensorType]]:
    return [(name, relax.TensorType((channels,), "int32")) for name in ("bias", "multiplier", "shift")]


def _centred(x: relax.Expr, zero_point: int) -> relax.Expr:
    """int32(x) - z."""
    return op.subtract(op.astype(x, "int32"), relax.const(zero_point, "int32"))


def _wide(x: relax.Expr) -> relax.Expr:
    return op.astype(x, "int64")


def _int64(value: int) -> relax.Expr:
    return relax.const(value, "int64")


def _along(vector: relax.Expr, axis: int, ndim: int) -> relax.Expr:
    """A per-channel vector shaped to broadcast along `axis`."""
    shape = [1] * ndim
    shape[axis] = -1
    return op.reshape(vector, shape)


def _rounding_multiply(value: relax.Expr, multiplier: relax.Expr, shift: relax.Expr) -> relax.Expr:
    """(value * M + 2^(r-1)) >> r, all int64."""
    half = op.left_shift(_int64(1), op.subtract(shift, _int64(1)))
    return op.right_shift(op.add(op.multiply(value, multiplier), half), shift)


def _clamp(y: relax.Expr, zero_point: int, act_min: int, act_max: int) -> relax.Expr:
    return op.astype(op.clip(op.add(y, _int64(zero_point)), act_min, act_max), "int8")


def _requantize(acc: relax.Expr, multiplier: relax.Expr, shift: relax.Expr, attrs: dict) -> relax.Expr:
    """Accumulator -> int8: clamp(rounding_multiply(acc, M, r) + z_out, act_min, act_max), all int64 until the cast."""
    y = _rounding_multiply(acc, multiplier, shift)
    return _clamp(y, attrs["output_zero_point"], attrs["act_min"], attrs["act_max"])
