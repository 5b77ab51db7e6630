"""The analysis finds the block boundaries of every kind of CNN and counts MACs exactly."""

import math

import pytest
import zoo
from zoo import ALL_ZOO

from eenn_tvm.analysis import analyze
from eenn_tvm.frontend import import_onnx


def _normalised(shape):
    """(N, C, rest...) with the spatial dims multiplied: exporters differ in keeping unit dims."""
    return tuple(shape[:2]) + ((math.prod(shape[2:]),) if len(shape) > 2 else ())


@pytest.mark.parametrize("name,exporter", ALL_ZOO)
def test_candidate_points_are_the_block_boundaries(zoo_model, name, exporter):
    z = zoo_model(name, exporter)
    result = analyze(import_onnx(z.path))
    assert [_normalised(p.shape) for p in result.exit_points] == [_normalised(s) for s in z.boundaries]
    macs = [p.macs_before for p in result.exit_points]
    assert macs == sorted(macs) and macs[0] > 0 and macs[-1] < result.total_macs
    assert all(p.fraction == pytest.approx(p.macs_before / result.total_macs) for p in result.exit_points)


@pytest.mark.parametrize("name,exporter", ALL_ZOO)
def test_macs_match_an_independent_count(zoo_model, name, exporter):
    z = zoo_model(name, exporter)
    by_op = analyze(import_onnx(z.path)).macs_by_op
    expected = zoo.independent_macs(z.model, z.input_shape)
    assert by_op.get("Conv", 0) == expected["conv"]
    assert by_op.get("Gemm", 0) + by_op.get("MatMul", 0) == expected["dense"]
    pools = ("MaxPool", "AveragePool", "GlobalAveragePool", "ReduceMean")
    assert sum(by_op.get(op, 0) for op in pools) == expected["pool"]


def test_activation_and_parameter_bytes(zoo_model):
    z = zoo_model("plain", "legacy")
    points = analyze(import_onnx(z.path)).exit_points
    assert [p.activation_bytes for p in points] == [8 * 16 * 16 * 4, 16 * 8 * 8 * 4, 32 * 4]
    # Batch-norm folded into the convolutions: weights and biases of conv1, then of conv2, then fc1.
    conv1 = (8 * 3 * 9 + 8) * 4
    conv2 = conv1 + (16 * 8 * 9 + 16) * 4
    assert [p.param_bytes_before for p in points] == [conv1, conv2, conv2 + (32 * 1024 + 32) * 4]


def test_mlperf_resnet8_analyzes_to_its_published_size(mlperf_model):
    result = analyze(import_onnx(mlperf_model("resnet8_cifar10")))
    assert result.macs_by_op["Conv"] == 12_500_992  # the MLPerf Tiny reference: 12.5 M MACs
    assert [p.shape for p in result.exit_points] == [[1, 16, 32, 32], [1, 16, 32, 32], [1, 32, 16, 16], [1, 64, 1, 1]]


def test_mlperf_kws_dscnn_needs_and_gets_constant_folding(mlperf_model):
    result = analyze(import_onnx(mlperf_model("kws_dscnn")))
    # Stem, then the outputs of its four depthwise-separable blocks, then the pooled features.
    assert [p.shape for p in result.exit_points] == [[1, 64, 25, 5]] * 5 + [[1, 64]]
    assert result.macs_by_op["Conv"] == 2_656_000
