"""The kernel library (targets/mcu/runtime/eenn_nn.h), compiled for this host (with AddressSanitizer and
UndefinedBehaviorSanitizer) and for every Cortex-M core (arm-none-eabi-gcc, run in QEMU): the int8 kernels equal the
integer reference (eenn_tvm.quantized.reference, the spec of docs/int8.md) bit for bit on random shapes and values,
including odd channel counts, strides and dilations of 2, asymmetric padding and zero points at the extremes; the
float32 kernels equal numpy to 1e-5. Shapes and values are drawn from a fixed seed, so a failure repeats."""

from __future__ import annotations

import math

import numpy as np
import pytest

from eenn_tvm.quantized import reference as ref
from eenn_tvm.targets.mcu import nn_library as nn
from eenn_tvm.targets.mcu.cores import CORES
from eenn_tvm.targets.mcu.float_reference import conv2d_f32
from eenn_tvm.targets.mcu.library import pooling_matrix
from eenn_tvm.targets.mcu.nn_runner import HOST, Call, run_calls

TARGETS = [HOST, *CORES]
KERNELS = [(1, 1), (3, 3), (1, 3), (3, 1), (2, 2), (5, 3), (10, 4)]


def nchw(x_hwc: np.ndarray) -> np.ndarray:
    return x_hwc.transpose(2, 0, 1)[None]


def hwc(x_nchw: np.ndarray) -> np.ndarray:
    return x_nchw[0].transpose(1, 2, 0)


def zero_point(rng) -> int:
    """The extremes of int8 as often as values in between."""
    return int(rng.choice([-128, 127, rng.integers(-128, 128)]))


def activation(rng) -> nn.Output:
    """No activation, a ReLU, or a ReLU6-like band, around an output zero point away from the extremes (which
    would clamp every value to one)."""
    z_out = int(rng.integers(-100, 100))
    lo, hi = int(rng.integers(-128, z_out + 1)), int(rng.integers(z_out + 20, 128))
    return nn.Output(z_out, *[(-128, 127), (z_out, 127), (lo, hi)][rng.integers(3)])


def scales(rng, typical: float, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Multipliers around `typical` (an output of a few dozen steps), some far off: shifts from 1 to 62."""
    reals = typical * 2.0 ** rng.uniform(-2, 2, count)
    extreme = rng.random(count) < 0.15
    reals[extreme] = 2.0 ** rng.uniform(-30, 29, extreme.sum())
    pairs = [ref.quantize_multiplier(r) for r in reals]
    return np.array([m for m, _ in pairs], np.int32), np.array([s for _, s in pairs], np.int32)


def random_window(rng, kind: str = "conv") -> tuple[nn.Window, dict]:
    """A random window and its geometry in the reference's terms (strides, pads, dilations); kind: conv (any
    output channels), depthwise, or pool (no dilation, kernels up to 3x3)."""
    while True:
        kernel = KERNELS[rng.integers(len(KERNELS))]
        if kind == "pool" and max(kernel) > 3:
            continue
        strides = tuple(int(s) for s in rng.integers(1, 3, 2))
        dilations = (1, 1) if kind == "pool" else tuple(int(d) for d in rng.integers(1, 3, 2))
        pads = tuple(int(p) for p in rng.integers(0, 3, 4))
        if any(p >= k * d for p, k, d in zip(pads, kernel * 2, dilations * 2)):
            continue  # a window wholly in the padding: no model has one
        hw = tuple(int(n) for n in rng.integers(1, 9, 2))
        channels = int(rng.choice([1, 2, 3, 4, 5, 7, 8, 12, 16]))
        channels_out = int(rng.integers(1, 10)) if kind == "conv" else None
        window = nn.Window.sliding((*hw, channels), kernel, channels_out, strides, pads, dilations)
        if window.output_height > 0 and window.output_width > 0:
            return window, {"strides": strides, "pads": pads, "dilations": dilations}


def _requantized(output: nn.Output) -> dict:
    return {"output_zero_point": output.zero_point, "act_min": output.min, "act_max": output.max}


def library_weights(w: np.ndarray, depthwise: bool) -> np.ndarray:
    """OIHW (the reference's) to OHWI, or [kh, kw, channels] for a depthwise convolution."""
    return w[:, 0].transpose(1, 2, 0) if depthwise else w.transpose(0, 2, 3, 1)


def one_dimensional_window() -> tuple[nn.Window, dict]:
    """A 1-D convolution (a signal of 20 samples) as the library takes it: height 1, padding 2 left and 1 right."""
    geometry = {"strides": (1, 2), "pads": (0, 2, 0, 1), "dilations": (1, 1)}
    return nn.Window.sliding((1, 20, 6), (1, 5), 7, **geometry), geometry


def conv_case(rng, depthwise=False, window_and_geometry=None) -> tuple[Call, np.ndarray]:
    window, geometry = window_and_geometry or random_window(rng, "depthwise" if depthwise else "conv")
    c_in, c_out = window.input_channels, window.output_channels
    kh, kw = window.kernel_height, window.kernel_width
    z_in = zero_point(rng)
    x = rng.integers(-128, 128, (window.input_height, window.input_width, c_in), dtype=np.int8)
    w = rng.integers(-128, 128, (c_out, 1 if depthwise else c_in, kh, kw), dtype=np.int8)
    bias = rng.integers(-(1 << 16), 1 << 16, c_out, dtype=np.int32) if rng.random() < 0.8 else None
    terms = kh * kw * (1 if depthwise else c_in)
    multipliers, shifts = scales(rng, 40 / (math.sqrt(terms) * 1.2e4), c_out)
    output = activation(rng)
    expected = ref.conv(
        nchw(x),
        w,
        np.zeros(c_out, np.int32) if bias is None else bias,  # QDQToInteger always gives one; the kernel takes NULL
        multipliers,
        shifts,
        strides=geometry["strides"],
        padding=geometry["pads"],  # (top, left, bottom, right): TVM's order too
        dilation=geometry["dilations"],
        groups=c_in if depthwise else 1,
        input_zero_point=z_in,
        **_requantized(output),
    )
    kernel = nn.ConvS8(window, z_in, library_weights(w, depthwise), bias, multipliers, shifts, output, depthwise)
    return Call(kernel, [x]), hwc(expected)


def dense_case(rng) -> tuple[Call, np.ndarray]:
    features_in, features_out = (int(n) for n in rng.integers(1, 70, 2))
    z_in = zero_point(rng)
    x = rng.integers(-128, 128, features_in, dtype=np.int8)
    w = rng.integers(-128, 128, (features_out, features_in), dtype=np.int8)
    bias = rng.integers(-(1 << 16), 1 << 16, features_out, dtype=np.int32)
    multipliers, shifts = scales(rng, 40 / (math.sqrt(features_in) * 1.2e4), features_out)
    output = activation(rng)
    expected = ref.dense(x[None], w, bias, multipliers, shifts, input_zero_point=z_in, **_requantized(output))[0]
    return Call(nn.DenseS8(w, bias, z_in, multipliers, shifts, output), [x]), expected


def rows_dense_case(rng, channels_last: bool) -> tuple[Call, np.ndarray]:
    """A dense layer over several rows: rows one after the other, or the channels of an NHWC map (a head pooling
    each channel over the map's positions: row stride 1, feature stride = the channels)."""
    rows, features_in, features_out = (int(n) for n in rng.integers([2, 1, 1], [10, 70, 12]))
    z_in = zero_point(rng)
    x = rng.integers(-128, 128, (rows, features_in), dtype=np.int8)
    w = rng.integers(-128, 128, (features_out, features_in), dtype=np.int8)
    bias = rng.integers(-(1 << 16), 1 << 16, features_out, dtype=np.int32)
    multipliers, shifts = scales(rng, 40 / (math.sqrt(features_in) * 1.2e4), features_out)
    output = activation(rng)
    expected = ref.dense(x, w, bias, multipliers, shifts, input_zero_point=z_in, **_requantized(output))
    layout = {"row_stride": 1, "feature_stride": rows} if channels_last else {}
    kernel = nn.DenseS8(w, bias, z_in, multipliers, shifts, output, rows, **layout)
    return Call(kernel, [np.ascontiguousarray(x.T) if channels_last else x]), expected


def pooling_matrix_case(rng) -> tuple[Call, np.ndarray]:
    """A head's pooling as a dense layer over a map's channels (one weight on windows tiling the map, as QDQ exports
    an adaptive pool) becomes a weighted average pool, equal to the dense layer bit for bit."""
    (height, width, channels), (out_h, out_w) = (int(n) for n in rng.integers(1, 9, 3)), (2, 1)
    height, width = 2 * height, width
    z_in, weight = zero_point(rng), int(rng.integers(1, 128))
    x = rng.integers(-128, 128, (height, width, channels), dtype=np.int8)
    units, positions = out_h * out_w, height * width
    mask = np.zeros((units, positions), np.int8)
    mask[0, : positions // 2], mask[1, positions // 2 :] = weight, weight  # top and bottom halves
    multiplier, shift = ref.quantize_multiplier(float(rng.uniform(0.1, 0.5)) / (positions // 2 * weight))
    output = activation(rng)
    per_unit = {"multipliers": np.full(units, multiplier, np.int32), "shifts": np.full(units, shift, np.int32)}
    dense = nn.DenseS8(mask, np.zeros(units, np.int32), z_in, *per_unit.values(), output, channels, 1, channels)
    pool = pooling_matrix(dense, [1, channels, height, width])
    assert pool is not None and pool.weight == weight
    rows = x.reshape(positions, channels).T  # row c: channel c over the positions
    expected = ref.dense(rows, mask, np.zeros(units, np.int32), *per_unit.values(), input_zero_point=z_in,
                         **_requantized(output))  # fmt: skip
    return Call(pool, [x]), expected.T  # NHWC: positions (the units), then channels


def pool_case(rng, average: bool) -> tuple[Call, np.ndarray]:
    window, geometry = random_window(rng, "pool")
    x = rng.integers(-128, 128, (window.input_height, window.input_width, window.input_channels), dtype=np.int8)
    kernel_hw = (window.kernel_height, window.kernel_width)
    geometry = {"pool_size": kernel_hw, "strides": geometry["strides"], "padding": geometry["pads"]}
    output = activation(rng)
    if not average:  # the library's max pool keeps the scale: the identity (2^30, 30) of the spec
        z = output.zero_point
        identity = {"multiplier": 1 << 30, "shift": 30, "input_zero_point": z, "dilation": (1, 1)}
        expected = ref.max_pool(nchw(x), **geometry, **identity, **_requantized(output))
        return Call(nn.MaxPoolS8(window, output.min, output.max), [x]), hwc(expected)
    z_in = zero_point(rng)
    scale = ref.quantize_multiplier(float(rng.uniform(0.1, 0.5)) / math.prod(kernel_hw))
    multiplier = {"multiplier": scale[0], "shift": scale[1]}
    expected = ref.avg_pool(nchw(x), **geometry, input_zero_point=z_in, **multiplier, **_requantized(output))
    return Call(nn.AvgPoolS8(window, z_in, scale, output), [x]), hwc(expected)


def add_case(rng) -> tuple[Call, np.ndarray]:
    size = int(rng.integers(1, 200) if rng.random() < 0.5 else rng.integers(512, 1500))  # below and above the tables
    a, b = rng.integers(-128, 128, (2, size), dtype=np.int8)
    z_a, z_b = zero_point(rng), zero_point(rng)
    s_a, s_b = 2.0 ** rng.uniform(-8, 0, 2)
    s_out = (s_a + s_b) * 2.0 ** rng.uniform(-1, 1)
    twice_max = 2 * max(s_a, s_b)
    a_scale, b_scale = ref.quantize_multiplier(s_a / twice_max), ref.quantize_multiplier(s_b / twice_max)
    out_scale = ref.quantize_multiplier(twice_max / ((1 << ref.ADD_LEFT_SHIFT) * s_out))
    output = activation(rng)
    expected = ref.add(
        a, b, lhs_zero_point=z_a, lhs_multiplier=a_scale[0], lhs_shift=a_scale[1], rhs_zero_point=z_b,
        rhs_multiplier=b_scale[0], rhs_shift=b_scale[1], output_multiplier=out_scale[0], output_shift=out_scale[1],
        left_shift=ref.ADD_LEFT_SHIFT, **_requantized(output),
    )  # fmt: skip
    return Call(nn.AddS8(size, z_a, z_b, a_scale, b_scale, out_scale, output), [a, b]), expected


def rescale_case(rng) -> tuple[Call, np.ndarray]:
    size = int(rng.integers(1, 100))
    x = rng.integers(-128, 128, size, dtype=np.int8)
    z_in = zero_point(rng)
    scale = ref.quantize_multiplier(float(2.0 ** rng.uniform(-3, -0.5)))
    output = nn.Output(int(rng.integers(-100, 100)))  # a concat's input moved to the output's scale: no activation
    expected = ref.concat(
        x,
        axis=0,
        input_zero_points=[z_in],
        multipliers=[scale[0]],
        shifts=[scale[1]],
        output_zero_point=output.zero_point,
    )
    return Call(nn.RescaleS8(size, z_in, scale, output), [x]), expected


def quantize_cases(rng) -> list[tuple[Call, np.ndarray]]:
    scale, z = 0.25, zero_point(rng)  # a power of two: x / scale is exact, so ties reach the rounding
    ties = (np.arange(-40, 40) + 0.5) * scale
    x = np.concatenate([ties, rng.normal(0, 20, 100), [1e9, -1e9]]).astype(np.float32)
    q = rng.integers(-128, 128, 50, dtype=np.int8)
    odd_scale = float(rng.uniform(0.01, 0.1))
    return [
        (Call(nn.QuantizeS8(x.size, scale, z), [x]), ref.quantize(x, scale, z)),
        (Call(nn.QuantizeS8(x.size, odd_scale, z), [x]), ref.quantize(x, odd_scale, z)),
        (Call(nn.QuantizeS8(q.size, odd_scale, z, dequantize=True), [q]), ref.dequantize(q, odd_scale, z)),
    ]


def int8_cases() -> list[tuple[Call, np.ndarray]]:
    rng = np.random.default_rng(15)
    cases = [conv_case(rng) for _ in range(24)] + [conv_case(rng, depthwise=True) for _ in range(12)]
    cases.append(conv_case(rng, window_and_geometry=one_dimensional_window()))
    cases += [dense_case(rng) for _ in range(6)] + [pool_case(rng, average=a) for a in (True, False) * 5]
    cases += [add_case(rng) for _ in range(6)] + [rescale_case(rng) for _ in range(4)] + quantize_cases(rng)
    cases += [rows_dense_case(rng, channels_last=c) for c in (False, True) * 3]
    cases += [pooling_matrix_case(rng) for _ in range(4)]
    return cases


def float_cases() -> list[tuple[Call, np.ndarray]]:
    rng = np.random.default_rng(16)
    cases = []
    for depthwise in [False] * 12 + [True] * 6:
        window, geometry = random_window(rng, "depthwise" if depthwise else "conv")
        c_in, c_out = window.input_channels, window.output_channels
        x = rng.standard_normal((window.input_height, window.input_width, c_in)).astype(np.float32)
        w = rng.standard_normal((c_out, 1 if depthwise else c_in, window.kernel_height, window.kernel_width))
        w = w.astype(np.float32)
        bias = rng.standard_normal(c_out).astype(np.float32) if rng.random() < 0.8 else None
        lo, hi = [(-math.inf, math.inf), (0.0, math.inf), (0.0, 6.0)][rng.integers(3)]
        expected = conv2d_f32(nchw(x), w, bias, lo, hi, **geometry, groups=c_in if depthwise else 1)
        kernel = nn.ConvF32(window, library_weights(w, depthwise), bias, lo, hi, depthwise)
        cases.append((Call(kernel, [x]), hwc(expected)))
    for _ in range(3):
        features_in, features_out = (int(n) for n in rng.integers(1, 70, 2))
        x = rng.standard_normal(features_in).astype(np.float32)
        w = rng.standard_normal((features_out, features_in)).astype(np.float32)
        bias = rng.standard_normal(features_out).astype(np.float32)
        cases.append((Call(nn.DenseF32(w, bias, 0.0), [x]), np.maximum(w.astype(np.float64) @ x + bias, 0)))
    return cases


@pytest.mark.parametrize("target", TARGETS)
def test_int8_kernels_equal_the_integer_reference_bit_for_bit(target):
    cases = int8_cases()
    results = run_calls([call for call, _ in cases], target)
    for (call, expected), result in zip(cases, results):
        assert np.array_equal(result.output, expected.ravel()), f"{call.kernel.function}: {call.kernel}"


@pytest.mark.parametrize("target", TARGETS)
def test_float_kernels_equal_numpy_to_1e_5(target):
    cases = float_cases()
    results = run_calls([call for call, _ in cases], target)
    for (call, expected), result in zip(cases, results):
        expected = expected.ravel()
        tolerance = 1e-5 * max(np.abs(expected).max(), 1.0)
        np.testing.assert_allclose(result.output, expected, rtol=1e-5, atol=tolerance, err_msg=call.kernel.function)


def test_python_and_c_agree_on_scratch_bytes():
    cases = int8_cases() + float_cases()
    results = run_calls([call for call, _ in cases], HOST)
    checked = 0
    for (call, _), result in zip(cases, results):
        if call.kernel.takes_scratch:
            assert result.c_scratch_bytes == call.kernel.scratch_bytes(), call.kernel.function
            checked += 1
    assert checked > 20
