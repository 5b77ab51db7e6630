"""The integer arithmetic of eenn-tvm's int8 ops, in numpy: the one definition every implementation is checked
against (the Relax bodies `QDQToInteger` writes, the C kernels of the microcontroller runtime).

Tensors are int8 (NCHW / NCW, weights OIHW / OIW, dense weights (units, K)); accumulators int32; the
requantisation multiplies in int64. Each op takes its tensors positionally and its scalar parameters as keywords
named exactly like the attributes of its Relax function (`"Composite": "eenn.int8.<op>"`), so
`OPS[op](*tensors, **attrs)` reproduces a call. docs/int8.md gives the same arithmetic in prose.
"""

from __future__ import annotations

import math

import numpy as np

INT8_MIN, INT8_MAX = -128, 127
ADD_LEFT_SHIFT = 20  # add: operands scaled up by 2^20 before their rescaling, so that it keeps 20 fractional bits


def quantize_multiplier(real: float) -> tuple[int, int]:
    """(M, r) with M * 2^-r the nearest to `real`, M an int32 in [2^30, 2^31) and 1 <= r <= 62.

    Raises ValueError when `real` is not in (2^-32, 2^30): no (M, r) in range represents it."""
    if not real > 0 or not math.isfinite(real):
        raise ValueError(f"multiplier {real} is not a positive number")
    mantissa, exponent = math.frexp(real)  # real = mantissa * 2^exponent, mantissa in [0.5, 1)
    multiplier, shift = round(mantissa * (1 << 31)), 31 - exponent
    if multiplier == 1 << 31:  # the mantissa rounded up to 1
        multiplier, shift = 1 << 30, shift - 1
    if not 1 <= shift <= 62:
        raise ValueError(f"multiplier {real} is out of the range a 31-bit multiplier and a shift of 1..62 cover")
    return multiplier, shift


def rounding_multiply(value: np.ndarray, multiplier, shift) -> np.ndarray:
    """(int64(value) * M + 2^(r-1)) >> r: one rounding, half up (towards +infinity); arithmetic shift."""
    v = np.asarray(value).astype(np.int64)
    m = np.asarray(multiplier, np.int64)
    r = np.asarray(shift, np.int64)
    return (v * m + (np.int64(1) << (r - 1))) >> r


def requantize(acc, multiplier, shift, output_zero_point: int, act_min: int, act_max: int) -> np.ndarray:
    """int32 accumulator -> int8: clamp(rounding_multiply(acc, M, r) + z_out, act_min, act_max)."""
    y = rounding_multiply(acc, multiplier, shift) + output_zero_point
    return np.clip(y, act_min, act_max).astype(np.int8)


def quantize(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """float32 -> int8 (the network input): clamp(round_half_even(x / scale) + z), as ONNX QuantizeLinear."""
    q = np.rint(np.asarray(x, np.float32) / np.float32(scale)) + zero_point
    return np.clip(q, INT8_MIN, INT8_MAX).astype(np.int8)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """int8 -> float32: (q - z) * scale, as ONNX DequantizeLinear."""
    return ((q.astype(np.int32) - zero_point).astype(np.float32) * np.float32(scale)).astype(np.float32)


def _per_channel(values, ndim: int, axis: int) -> np.ndarray:
    """Shape a per-channel vector to broadcast along `axis` of an ndim tensor."""
    shape = [1] * ndim
    shape[axis] = -1
    return np.asarray(values).reshape(shape)


def _windows(x: np.ndarray, size, strides, dilation, padding, pad_value) -> np.ndarray:
    """(N, C, *spatial) -> (N, C, *out, *size): the (dilated) window under each output position.

    `padding` is TVM's: all begins, then all ends ([top, left, bottom, right] in 2-D)."""
    nd = len(size)
    pads = [(0, 0), (0, 0)] + [(padding[i], padding[i + nd]) for i in range(nd)]
    padded = np.pad(x, pads, constant_values=pad_value)
    span = [d * (k - 1) + 1 for k, d in zip(size, dilation)]
    windows = np.lib.stride_tricks.sliding_window_view(padded, span, axis=tuple(range(2, 2 + nd)))
    return windows[
        (slice(None),) * 2
        + tuple(slice(None, None, s) for s in strides)
        + tuple(slice(None, None, d) for d in dilation)
    ]


def conv(
    x, w, bias, multiplier, shift, *, strides, padding, dilation, groups,
    input_zero_point, output_zero_point, act_min, act_max,
) -> np.ndarray:  # fmt: skip
    """1-D or 2-D convolution, grouped (depthwise when groups == channels): acc[o] = bias[o] + sum (x - z_in) * w[o],
    with padding contributing x = z_in (zero in the real domain); then requantize per output channel."""
    nd = x.ndim - 2
    centred = _windows(x.astype(np.int64) - input_zero_point, w.shape[2:], strides, dilation, padding, 0)
    out_channels, per_group = w.shape[0], w.shape[1]
    spatial = centred.shape[2 : 2 + nd]
    acc = []
    for g in range(groups):
        # (N, per_group, *out, *k) -> (N, *out, per_group * k): one row per output position
        part = np.moveaxis(centred[:, g * per_group : (g + 1) * per_group], 1, 1 + nd)
        rows = part.reshape(x.shape[0], *spatial, -1)
        filters = w[g * (out_channels // groups) : (g + 1) * (out_channels // groups)].astype(np.int64)
        acc.append(rows @ filters.reshape(len(filters), -1).T)
    acc = np.moveaxis(np.concatenate(acc, axis=-1), -1, 1)
    acc = (acc + _per_channel(bias, acc.ndim, 1)).astype(np.int32)
    m, r = _per_channel(multiplier, acc.ndim, 1), _per_channel(shift, acc.ndim, 1)
    return requantize(acc, m, r, output_zero_point, act_min, act_max)


def dense(x, w, bias, multiplier, shift, *, input_zero_point, output_zero_point, act_min, act_max) -> np.ndarray:
    """x (..., K), weights (units, K): acc[..., u] = bias[u] + sum_k (x[..., k] - z_in) w[u, k], requantized."""
    acc = ((x.astype(np.int64) - input_zero_point) @ w.astype(np.int64).T + bias).astype(np.int32)
    return requantize(acc, multiplier, shift, output_zero_point, act_min, act_max)


def add(
    a, b, *, lhs_zero_point, lhs_multiplier, lhs_shift, rhs_zero_point, rhs_multiplier, rhs_shift,
    output_multiplier, output_shift, output_zero_point, left_shift, act_min, act_max,
) -> np.ndarray:  # fmt: skip
    """TFLite-style add: each operand centred, scaled up by 2^left_shift and brought to a common scale
    (2 max(s_a, s_b) / 2^left_shift), summed, then rescaled to the output."""
    lhs = rounding_multiply((a.astype(np.int64) - lhs_zero_point) << left_shift, lhs_multiplier, lhs_shift)
    rhs = rounding_multiply((b.astype(np.int64) - rhs_zero_point) << left_shift, rhs_multiplier, rhs_shift)
    return requantize(lhs + rhs, output_multiplier, output_shift, output_zero_point, act_min, act_max)


def avg_pool(
    x, *, pool_size, strides, padding, input_zero_point, output_zero_point, multiplier, shift, act_min, act_max
) -> np.ndarray:
    """Sum of (x - z_in) over each window (padding adds zero), requantized with m = s_in / (window size * s_out)."""
    windows = _windows(x.astype(np.int64) - input_zero_point, pool_size, strides, [1] * len(pool_size), padding, 0)
    acc = windows.sum(axis=tuple(range(-len(pool_size), 0))).astype(np.int32)
    return requantize(acc, multiplier, shift, output_zero_point, act_min, act_max)


def global_avg_pool(x, *, input_zero_point, output_zero_point, multiplier, shift, act_min, act_max) -> np.ndarray:
    """Sum of (x - z_in) over all spatial positions (kept as size-1 dims); requantized, m = s_in / (count * s_out)."""
    acc = (x.astype(np.int64) - input_zero_point).sum(axis=tuple(range(2, x.ndim)), keepdims=True).astype(np.int32)
    return requantize(acc, multiplier, shift, output_zero_point, act_min, act_max)


def max_pool(
    x, *, pool_size, strides, padding, dilation, input_zero_point, output_zero_point, multiplier, shift,
    act_min, act_max,
) -> np.ndarray:  # fmt: skip
    """Max over each window in the int8 domain (padding is -128), then requantized with m = s_in / s_out
    (the identity when the scales and zero points are equal: M = 2^30, r = 30)."""
    windows = _windows(x, pool_size, strides, dilation, padding, INT8_MIN)
    peak = windows.max(axis=tuple(range(-len(pool_size), 0))).astype(np.int32)
    return requantize(peak - input_zero_point, multiplier, shift, output_zero_point, act_min, act_max)


def concat(*xs, axis, input_zero_points, multipliers, shifts, output_zero_point) -> np.ndarray:
    """Each input requantized to the output's scale (m_i = s_i / s_out) and zero point, then joined along `axis`."""
    parts = [
        requantize(x.astype(np.int32) - z, m, r, output_zero_point, INT8_MIN, INT8_MAX)
        for x, z, m, r in zip(xs, input_zero_points, multipliers, shifts)
    ]
    return np.concatenate(parts, axis=axis)


OPS = {
    "conv1d": conv,
    "conv2d": conv,
    "dense": dense,
    "add": add,
    "avg_pool1d": avg_pool,
    "avg_pool2d": avg_pool,
    "global_avg_pool": global_avg_pool,
    "max_pool1d": max_pool,
    "max_pool2d": max_pool,
    "concat": concat,
}
