"""The batched feature pass: the same features as one sample at a time, and batch 1 where a model fixes its batch."""

import numpy as np
from conftest import MODEL
from onnx import TensorProto, helper
from test_cli import save_graph

from eenn_tvm.analysis import analyze
from eenn_tvm.features import extract
from eenn_tvm.frontend import import_onnx


def test_batched_features_equal_one_sample_at_a_time(fashion):
    model = import_onnx(MODEL)
    points, x = analyze(model).exit_points, np.load(fashion / "train.npz")["x"][:200]
    one = extract(model, points, x, cache_dir=None, batch=1)
    many = extract(model, points, x, cache_dir=None, batch=32)
    assert np.array_equal(one.final, many.final)
    for name, kinds in one.pooled.items():
        for kind, array in kinds.items():
            assert np.array_equal(array, many.pooled[name][kind]), (name, kind)


def test_a_model_that_fixes_its_batch_at_1_runs_one_sample_per_call(tmp_path):
    rng = np.random.default_rng(0)
    conv = helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 3, 3], rng.standard_normal(108).tolist())
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [1, -1])  # the batch of 1 written into the graph
    dense = helper.make_tensor("d", TensorProto.FLOAT, [256, 10], rng.standard_normal(2560).tolist())
    path = save_graph(
        tmp_path / "fixed.onnx",
        [
            helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1], name="conv0"),
            helper.make_node("Reshape", ["y", "shape"], ["flat"], name="flatten"),
            helper.make_node("MatMul", ["flat", "d"], ["logits"], name="dense"),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        [conv, shape, dense],
    )
    model = import_onnx(path)
    x = rng.standard_normal((5, 3, 8, 8)).astype(np.float32)
    lines = []
    batched = extract(model, [], x, cache_dir=None, batch=4, log=lines.append)
    assert any("one sample per call" in line for line in lines)
    assert np.array_equal(batched.final, extract(model, [], x, cache_dir=None, batch=1).final)
