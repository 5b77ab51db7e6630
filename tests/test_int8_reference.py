"""The integer reference (targets/mcu/reference.py) means what the real-valued network means: its multipliers are
the real ones to 31 bits, its quantisation is ONNX's (onnxruntime's QuantizeLinear, ties to even), and its
convolution, add and pools land within one output step of the same arithmetic done in floats on the dequantised
values. The kernels are tested against it bit for bit (test_nn_kernels.py); this checks the reference itself."""

from __future__ import annotations

import math

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from eenn_tvm.targets.mcu import reference as ref


@pytest.mark.parametrize("real", [1e-9, 3.1e-5, 0.25, 0.5, 0.999999999, 1.0, 1.5, 1234.5])
def test_a_multiplier_is_m_times_two_to_the_minus_r_with_m_of_31_bits(real):
    multiplier, shift = ref.quantize_multiplier(real)
    assert 1 << 30 <= multiplier < 1 << 31 and 1 <= shift <= 62
    assert abs(multiplier * 2.0**-shift - real) <= real * 2.0**-30


@pytest.mark.parametrize("real", [0.0, -1.0, math.inf, 2.0**40, 2.0**-40])
def test_a_multiplier_outside_what_the_shift_can_express_is_refused(real):
    with pytest.raises(ValueError):
        ref.quantize_multiplier(real)


def test_requantize_rounds_half_up_once():
    # 2^30 * 2^-31 = 1/2: 2.5 -> 3, -2.5 -> -2 (half up, not away from zero), 4.5 -> 5
    assert ref.requantize([5, -5, 9], 1 << 30, 31).tolist() == [3, -2, 5]
    assert ref.requantize(9, 1 << 30, 32).item() == 2  # 9/4 = 2.25


def test_quantize_is_onnx_quantizelinear():
    rng = np.random.default_rng(3)
    scale, zero_point = np.float32(0.25), -7
    x = np.concatenate([(np.arange(-60, 60) + 0.5) * scale, rng.normal(0, 30, 500)]).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "scale", "zero_point"], ["q"])],
        "quantize",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [x.size])],
        [helper.make_tensor_value_info("q", TensorProto.INT8, [x.size])],
        [
            helper.make_tensor("scale", TensorProto.FLOAT, [], [scale]),
            helper.make_tensor("zero_point", TensorProto.INT8, [], [zero_point]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (expected,) = session.run(None, {"x": x})
    assert np.array_equal(ref.quantize(x, scale, zero_point), expected)


def test_conv2d_lands_within_one_step_of_the_float_convolution():
    rng = np.random.default_rng(4)
    x = rng.uniform(0, 3, (1, 5, 9, 7)).astype(np.float32)  # post-ReLU-like activations
    w = rng.normal(0, 0.2, (6, 5, 3, 3)).astype(np.float32)
    bias = rng.normal(0, 0.5, 6).astype(np.float32)
    s_in, z_in = 3 / 255, -128
    s_w = np.abs(w).reshape(6, -1).max(axis=1) / 127
    w_q = np.round(w / s_w[:, None, None, None]).astype(np.int8)
    x_q = ref.quantize(x, s_in, z_in)
    reference = ref.conv2d_f32(
        ref.dequantize(x_q, s_in, z_in), w_q * s_w[:, None, None, None], bias, strides=(2, 1), pads=(1, 0, 1, 2)
    )
    s_out, z_out = (
        (reference.max() - reference.min()) / 255,
        -128 - round(float(reference.min()) / ((reference.max() - reference.min()) / 255)),
    )
    multipliers, shifts = ref.conv_multipliers(s_in, s_w, s_out)
    bias_q = np.round(bias / (s_in * s_w)).astype(np.int32)
    y = ref.conv2d(x_q, z_in, w_q, bias_q, multipliers, shifts, z_out, strides=(2, 1), pads=(1, 0, 1, 2))
    error = np.abs(ref.dequantize(y, s_out, z_out) - reference)
    assert error.max() <= 1.01 * s_out  # bias rounding and one output rounding


def test_add_lands_within_one_step_of_the_float_sum():
    rng = np.random.default_rng(5)
    a, b = rng.uniform(-1, 1, 400).astype(np.float32), rng.uniform(-3, 2, 400).astype(np.float32)
    (s_a, z_a), (s_b, z_b), (s_o, z_o) = (2 / 255, 0), (5 / 255, 25), (7 / 255, 12)
    a_q, b_q = ref.quantize(a, s_a, z_a), ref.quantize(b, s_b, z_b)
    scales = ref.add_multipliers(s_a, s_b, s_o)
    y = ref.add(a_q, z_a, scales[0], b_q, z_b, scales[1], scales[2], z_o)
    exact = ref.dequantize(a_q, s_a, z_a) + ref.dequantize(b_q, s_b, z_b)
    inside = (y > -128) & (y < 127)  # sums beyond the output's range saturate
    assert inside.mean() > 0.9
    assert np.abs(ref.dequantize(y, s_o, z_o) - exact)[inside].max() <= 0.51 * s_o + 1e-6


def test_pools_land_within_one_step_of_the_float_pools():
    rng = np.random.default_rng(6)
    x_q = rng.integers(-128, 128, (1, 3, 8, 8), dtype=np.int8)
    s, z = 0.05, -3
    x = ref.dequantize(x_q, s, z)
    multiplier, shift = ref.quantize_multiplier(1 / 4)  # s_in / (count * s_out) with the same scale in and out
    mean = ref.avg_pool(x_q, z, (2, 2), multiplier, shift, z)
    float_mean = x.reshape(1, 3, 4, 2, 4, 2).mean(axis=(3, 5))
    assert np.abs(ref.dequantize(mean, s, z) - float_mean).max() <= 0.51 * s
    biggest = ref.max_pool(x_q, (2, 2))
    assert np.array_equal(biggest, x_q.reshape(1, 3, 4, 2, 4, 2).max(axis=(3, 5)))
