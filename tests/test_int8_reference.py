"""The integer reference (eenn_tvm.quantized.reference) means what the real-valued network means: its quantisation is
ONNX's (onnxruntime's QuantizeLinear, ties to even), and its convolution, add and pools land within one output step
of the same arithmetic done in floats on the dequantised values. The kernels are tested against it bit for bit
(test_nn_kernels.py), its multipliers and rounding in test_quantize.py; this checks its meaning."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

from eenn_tvm.quantized import reference as ref
from eenn_tvm.targets.mcu.float_reference import conv2d_f32


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
    reference = conv2d_f32(
        ref.dequantize(x_q, s_in, z_in), w_q * s_w[:, None, None, None], bias, strides=(2, 1), pads=(1, 0, 1, 2)
    )
    s_out, z_out = (
        (reference.max() - reference.min()) / 255,
        -128 - round(float(reference.min()) / ((reference.max() - reference.min()) / 255)),
    )
    multipliers, shifts = np.array([ref.quantize_multiplier(s_in * s / s_out) for s in s_w], np.int32).T
    bias_q = np.round(bias / (s_in * s_w)).astype(np.int32)
    y = ref.conv(
        x_q, w_q, bias_q, multipliers, shifts, strides=(2, 1), padding=(1, 0, 1, 2), dilation=(1, 1), groups=1,
        input_zero_point=z_in, output_zero_point=z_out, act_min=-128, act_max=127,
    )  # fmt: skip
    error = np.abs(ref.dequantize(y, s_out, z_out) - reference)
    assert error.max() <= 1.01 * s_out  # bias rounding and one output rounding


def test_add_lands_within_one_step_of_the_float_sum():
    rng = np.random.default_rng(5)
    a, b = rng.uniform(-1, 1, 400).astype(np.float32), rng.uniform(-3, 2, 400).astype(np.float32)
    (s_a, z_a), (s_b, z_b), (s_o, z_o) = (2 / 255, 0), (5 / 255, 25), (7 / 255, 12)
    a_q, b_q = ref.quantize(a, s_a, z_a), ref.quantize(b, s_b, z_b)
    twice_max = 2 * max(s_a, s_b)
    (m_a, r_a), (m_b, r_b), (m_o, r_o) = (
        ref.quantize_multiplier(m) for m in (s_a / twice_max, s_b / twice_max, twice_max / ((1 << 20) * s_o))
    )
    y = ref.add(
        a_q, b_q, lhs_zero_point=z_a, lhs_multiplier=m_a, lhs_shift=r_a, rhs_zero_point=z_b, rhs_multiplier=m_b,
        rhs_shift=r_b, output_multiplier=m_o, output_shift=r_o, output_zero_point=z_o, left_shift=20, act_min=-128,
        act_max=127,
    )  # fmt: skip
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
    window = {"pool_size": (2, 2), "strides": (2, 2), "padding": (0, 0, 0, 0), "act_min": -128, "act_max": 127}
    same = {"input_zero_point": z, "output_zero_point": z}
    mean = ref.avg_pool(x_q, **window, **same, multiplier=multiplier, shift=shift)
    float_mean = x.reshape(1, 3, 4, 2, 4, 2).mean(axis=(3, 5))
    assert np.abs(ref.dequantize(mean, s, z) - float_mean).max() <= 0.51 * s
    biggest = ref.max_pool(x_q, **window, **same, dilation=(1, 1), multiplier=1 << 30, shift=30)
    assert np.array_equal(biggest, x_q.reshape(1, 3, 4, 2, 4, 2).max(axis=(3, 5)))
