"""The integer arithmetic of eenn-tvm's int8 networks, in numpy: the one definition the quantisation pass, the host
module and the Cortex-M kernels are all tested against (the spec is in COORDINATION.md / docs/int8.md).

Tensors are in the layout of the Relax graph: activations NCHW (batch first), convolution weights OIHW, dense
weights [out, in]. Integer inputs are int8; results are int8 arrays. Every sum is exact (int64 here; the spec's
int32 accumulator never overflows for int8 operands and fewer than 2^16 terms, which `_accumulate` checks).
"""

from __future__ import annotations

import math

import numpy as np

ADD_LEFT_SHIFT = 20  # the headroom TFLite gives both inputs of an add before they are rescaled to a common scale
INT8_MIN, INT8_MAX = -128, 127


def quantize_multiplier(real: float) -> tuple[int, int]:
    """(M, r) with real = M * 2^-r, M in [2^30, 2^31), 1 <= r <= 62; M rounded to nearest (ties away from zero)."""
    if not (real > 0 and math.isfinite(real)):
        raise ValueError(f"a requantisation multiplier must be positive and finite, not {real}")
    fraction, exponent = math.frexp(real)  # real = fraction * 2^exponent, fraction in [0.5, 1)
    multiplier = math.floor(fraction * (1 << 31) + 0.5)
    if multiplier == 1 << 31:
        multiplier, exponent = 1 << 30, exponent + 1
    shift = 31 - exponent
    if not 1 <= shift <= 62:
        raise ValueError(f"the multiplier {real:g} is outside what M * 2^-r with 1 <= r <= 62 can express")
    return multiplier, shift


def requantize(acc, multiplier, shift) -> np.ndarray:
    """y = (acc * M + 2^(r-1)) >> r in int64: one rounding, half up. M and r broadcast against acc."""
    acc, multiplier, shift = (np.asarray(v, dtype=np.int64) for v in (acc, multiplier, shift))
    return (acc * multiplier + (np.int64(1) << (shift - 1))) >> shift


def saturate(y, zero_point: int, act_min: int = INT8_MIN, act_max: int = INT8_MAX) -> np.ndarray:
    """out = clamp(y + zero_point, act_min, act_max) as int8; act_min/act_max carry a fused ReLU or ReLU6."""
    return np.clip(np.asarray(y, dtype=np.int64) + zero_point, act_min, act_max).astype(np.int8)


def quantize(x, scale: float, zero_point: int) -> np.ndarray:
    """ONNX QuantizeLinear: round(x / scale) half to even, plus the zero point, saturated to int8 (float32 maths)."""
    q = np.rint(np.asarray(x, dtype=np.float32) / np.float32(scale)).astype(np.int64) + zero_point
    return np.clip(q, INT8_MIN, INT8_MAX).astype(np.int8)


def dequantize(q, scale: float, zero_point: int) -> np.ndarray:
    return ((np.asarray(q, dtype=np.int32) - zero_point).astype(np.float32) * np.float32(scale)).astype(np.float32)


def conv_multipliers(input_scale: float, weight_scales, output_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(M[c], r[c]) for m[c] = s_in * s_w[c] / s_out: a convolution's or dense layer's per-channel requantisation."""
    pairs = [quantize_multiplier(input_scale * float(s) / output_scale) for s in np.ravel(weight_scales)]
    return np.array([m for m, _ in pairs], np.int32), np.array([r for _, r in pairs], np.int32)


def add_multipliers(scale_a: float, scale_b: float, output_scale: float) -> tuple[tuple[int, int], ...]:
    """((M_a, r_a), (M_b, r_b), (M_o, r_o)) of a TFLite-style add."""
    twice_max = 2 * max(scale_a, scale_b)
    return (
        quantize_multiplier(scale_a / twice_max),
        quantize_multiplier(scale_b / twice_max),
        quantize_multiplier(twice_max / ((1 << ADD_LEFT_SHIFT) * output_scale)),
    )


def conv2d(
    x,
    input_zero_point: int,
    weights,
    bias,
    multiplier,
    shift,
    output_zero_point: int,
    act_min: int = INT8_MIN,
    act_max: int = INT8_MAX,
    strides=(1, 1),
    pads=(0, 0, 0, 0),
    dilations=(1, 1),
    groups: int = 1,
) -> np.ndarray:
    """int8 convolution, NCHW x OIHW; pads (top, left, bottom, right) hold the input zero point (real 0.0);
    per-output-channel multiplier/shift; `groups` as ONNX Conv (groups == channels: depthwise)."""
    acc = _conv_accumulate(np.asarray(x, np.int64) - input_zero_point, weights, strides, pads, dilations, groups)
    if bias is not None:
        acc = acc + np.asarray(bias, np.int64)[None, :, None, None]
    per_channel = (slice(None), None, None)
    y = requantize(acc, np.asarray(multiplier)[per_channel], np.asarray(shift)[per_channel])
    return saturate(y, output_zero_point, act_min, act_max)


def dense(
    x,
    input_zero_point: int,
    weights,
    bias,
    multiplier,
    shift,
    output_zero_point: int,
    act_min=INT8_MIN,
    act_max=INT8_MAX,
) -> np.ndarray:
    """int8 fully connected layer: x [N, in], weights [out, in], per-output multiplier/shift: a 1x1 convolution."""
    image = np.asarray(x)[:, :, None, None]
    kernel = np.asarray(weights)[:, :, None, None]
    out = conv2d(image, input_zero_point, kernel, bias, multiplier, shift, output_zero_point, act_min, act_max)
    return out[:, :, 0, 0]


def avg_pool(
    x,
    input_zero_point: int,
    kernel,
    multiplier: int,
    shift: int,
    output_zero_point: int,
    act_min=INT8_MIN,
    act_max=INT8_MAX,
    strides=None,
    pads=(0, 0, 0, 0),
) -> np.ndarray:
    """Sum of (x - z_in) over each window (padding adds nothing), requantised with m = s_in / (count * s_out),
    count = kernel area. Global average pooling is the window of the whole map."""
    shifted = np.asarray(x, np.int64) - input_zero_point
    windows = _windows(_padded(shifted, pads, 0), kernel, strides or kernel, (1, 1))
    acc = windows.sum(axis=(-2, -1))
    return saturate(requantize(acc, multiplier, shift), output_zero_point, act_min, act_max)


def max_pool(x, kernel, act_min=INT8_MIN, act_max=INT8_MAX, strides=None, pads=(0, 0, 0, 0)) -> np.ndarray:
    """Max over each window in the int8 domain (input and output share scale and zero point); padding never wins."""
    padded = _padded(np.asarray(x, np.int64), pads, np.iinfo(np.int64).min)
    windows = _windows(padded, kernel, strides or kernel, (1, 1))
    return np.clip(windows.max(axis=(-2, -1)), act_min, act_max).astype(np.int8)


def add(
    a,
    a_zero_point: int,
    a_scale: tuple[int, int],
    b,
    b_zero_point: int,
    b_scale: tuple[int, int],
    output_scale: tuple[int, int],
    output_zero_point: int,
    act_min=INT8_MIN,
    act_max=INT8_MAX,
) -> np.ndarray:
    """TFLite-style add: both inputs to a common scale with 20 bits of headroom, summed, then to the output scale.
    Each *_scale is (M, r) from `add_multipliers`."""
    a_common = requantize((np.asarray(a, np.int64) - a_zero_point) << ADD_LEFT_SHIFT, *a_scale)
    b_common = requantize((np.asarray(b, np.int64) - b_zero_point) << ADD_LEFT_SHIFT, *b_scale)
    return saturate(requantize(a_common + b_common, *output_scale), output_zero_point, act_min, act_max)


def rescale(
    x, input_zero_point: int, scale: tuple[int, int], output_zero_point: int, act_min=INT8_MIN, act_max=INT8_MAX
):
    """An int8 tensor moved to another scale and zero point (e.g. after a max pool whose scales differ)."""
    y = requantize(np.asarray(x, np.int64) - input_zero_point, *scale)
    return saturate(y, output_zero_point, act_min, act_max)


def conv2d_f32(
    x, weights, bias, act_min=-np.inf, act_max=np.inf, strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), groups=1
):
    """The float32 kernels' arithmetic, in float64 (tests compare to a relative tolerance)."""
    acc = _conv_accumulate(np.asarray(x, np.float64), weights, strides, pads, dilations, groups)
    if bias is not None:
        acc = acc + np.asarray(bias, np.float64)[None, :, None, None]
    return np.clip(acc, act_min, act_max)


def _conv_accumulate(x, weights, strides, pads, dilations, groups) -> np.ndarray:
    """sum over (c, kh, kw) of x * w per group; zeros pad (the input is already shifted by its zero point)."""
    weights = np.asarray(weights)
    out_channels, group_channels, kh, kw = weights.shape
    windows = _windows(_padded(x, pads, 0), (kh, kw), strides, dilations)  # N, C, OH, OW, KH, KW
    n, _, oh, ow = windows.shape[:4]
    per_group = out_channels // groups
    acc = np.empty((n, out_channels, oh, ow), dtype=np.float64 if x.dtype.kind == "f" else np.int64)
    for g in range(groups):
        patch = windows[:, g * group_channels : (g + 1) * group_channels].transpose(0, 2, 3, 1, 4, 5)
        patch = patch.reshape(n * oh * ow, group_channels * kh * kw)
        w = weights[g * per_group : (g + 1) * per_group].reshape(per_group, -1).astype(acc.dtype)
        block = _accumulate(patch, w.T) if acc.dtype == np.int64 else patch @ w.T
        acc[:, g * per_group : (g + 1) * per_group] = block.reshape(n, oh, ow, per_group).transpose(0, 3, 1, 2)
    return acc


def _accumulate(patch: np.ndarray, weights: np.ndarray) -> np.ndarray:
    acc = patch.astype(np.int64) @ weights.astype(np.int64)
    if acc.size and (acc.max() > np.iinfo(np.int32).max or acc.min() < np.iinfo(np.int32).min):
        raise ValueError("the int32 accumulator of the spec would overflow")
    return acc


def _padded(x: np.ndarray, pads, value) -> np.ndarray:
    top, left, bottom, right = pads
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=value)


def _windows(x: np.ndarray, kernel, strides, dilations) -> np.ndarray:
    """[N, C, OH, OW, KH, KW] view of the windows a strided, dilated kernel sees."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, strides, dilations
    oh = (x.shape[2] - dh * (kh - 1) - 1) // sh + 1
    ow = (x.shape[3] - dw * (kw - 1) - 1) // sw + 1
    n, c, _, _ = x.strides
    return np.lib.stride_tricks.as_strided(
        x,
        shape=(x.shape[0], x.shape[1], oh, ow, kh, kw),
        strides=(n, c, x.strides[2] * sh, x.strides[3] * sw, x.strides[2] * dh, x.strides[3] * dw),
        writeable=False,
    )
