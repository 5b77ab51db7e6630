"""The rewritten, split and tapped modules compute what onnxruntime computes on the original model."""

import numpy as np
import pytest
import tvm
from conftest import ort_run
from tvm import relax
from zoo import ALL_ZOO

from eenn_tvm.analysis import analyze
from eenn_tvm.frontend import import_onnx
from eenn_tvm.passes import InsertExits, SplitAtExits, TapPoints
from eenn_tvm.targets.host import HostModule, SegmentRunner, build

TOLERANCE = 1e-4


def pooled_linear_head(ty, classes: int, seed: int):
    """A global-average-pool + linear head as a Relax function, with the numpy function it computes."""
    rng = np.random.default_rng(seed)
    shape = [int(d) for d in ty.shape]
    weight = rng.standard_normal((shape[1], classes)).astype("float32")
    bias = rng.standard_normal(classes).astype("float32")
    axes = list(range(2, len(shape)))
    x = relax.Var("x", ty)
    bb = relax.BlockBuilder()
    with bb.function("head", [x]):
        with bb.dataflow():
            pooled = bb.emit(relax.op.mean(x, axis=axes)) if axes else x
            logits = bb.emit(relax.op.add(relax.op.matmul(pooled, relax.const(weight)), relax.const(bias)))
            out = bb.emit_output(logits)
        bb.emit_func_output(out)
    return bb.get()["head"], lambda a: (a.mean(axis=tuple(axes)) if axes else a) @ weight + bias


def binding_type(mod, name):
    return next(b.var.ty for b in mod["main"].body.blocks[0].bindings if b.var.name == name)


def check_model(path, x):
    model = import_onnx(path)
    points = analyze(model).exit_points
    heads, numpy_heads = {}, []
    for i, p in enumerate(points):
        heads[p.name], fn = pooled_linear_head(binding_type(model.mod, p.binding), 7, seed=i)
        numpy_heads.append(fn)
    rewritten = tvm.transform.Sequential([InsertExits(heads), SplitAtExits()])(model.mod)
    tapped = TapPoints([p.name for p in points])(model.mod)
    exe = HostModule(build(rewritten))
    taps = HostModule(build(tapped))("main", x)

    final = ort_run(path, x)
    inner = ort_run(model.onnx, x, [p.name for p in points])
    expected_final = [final[name] for name in model.output_names]
    expected_taps = [inner[p.name] for p in points]
    expected_exits = [h(a) for h, a in zip(numpy_heads, expected_taps)]

    main = exe("main", x)
    _close(main, expected_final + expected_exits)
    _close(taps, expected_final + expected_taps)
    segments = SegmentRunner(exe).run(x)
    assert len(segments) == len(points) + 1
    for seg, tap, exit_out in zip(segments, expected_taps, expected_exits):
        _close(seg, [tap, exit_out])
    _close(segments[-1], expected_final)


def _close(actual, expected):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert a.shape == e.shape
        np.testing.assert_allclose(a, e, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("name,exporter", ALL_ZOO)
def test_rewritten_split_and_tapped_modules_match_onnxruntime(zoo_model, name, exporter):
    z = zoo_model(name, exporter)
    x = np.random.default_rng(1).standard_normal(z.input_shape).astype("float32")
    check_model(z.path, x)


def test_mlperf_resnet8_matches_onnxruntime_on_real_images(mlperf_model):
    images = np.load(mlperf_model("resnet8_cifar10").parent / "cifar10_20_images.npz")["x"]
    check_model(mlperf_model("resnet8_cifar10"), images[:1])


def test_mlperf_kws_dscnn_matches_onnxruntime(mlperf_model):
    x = np.random.default_rng(2).standard_normal((1, 1, 49, 10)).astype("float32")
    check_model(mlperf_model("kws_dscnn"), x)


def test_cut_inside_a_residual_block_is_rejected_naming_the_crossing_value(zoo_model):
    model = import_onnx(zoo_model("resnet", "legacy").path)
    # The first convolution after the stem is inside the first residual block: the skip crosses it.
    first_block_conv = [n for n in model.onnx.graph.node if n.op_type == "Conv"][1]
    stem = analyze(model).exit_points[0].binding
    with pytest.raises(Exception, match=rf"cut at \S+ is crossed by {stem}"):
        SplitAtExits([first_block_conv.output[0]])(model.mod)


def test_unknown_point_is_rejected_by_name(zoo_model):
    model = import_onnx(zoo_model("plain", "legacy").path)
    with pytest.raises(Exception, match="no tensor named 'nope'"):
        TapPoints(["nope"])(model.mod)


def test_split_without_exits_chains_to_the_model_output(zoo_model):
    z = zoo_model("inception", "dynamo")
    model = import_onnx(z.path)
    points = [p.name for p in analyze(model).exit_points]
    x = np.random.default_rng(3).standard_normal(z.input_shape).astype("float32")
    runner = SegmentRunner(HostModule(build(SplitAtExits(points)(model.mod))))
    _close(runner.run(x)[-1], [ort_run(z.path, x)["y"]])


def test_built_module_exports_and_loads_as_shared_library(zoo_model, tmp_path):
    z = zoo_model("mobilenet", "legacy")
    model = import_onnx(z.path)
    mod = SplitAtExits([p.name for p in analyze(model).exit_points])(model.mod)
    exe = HostModule(build(mod))
    exe.export(tmp_path / "model.so")
    loaded = SegmentRunner(HostModule.load(tmp_path / "model.so"))
    x = np.random.default_rng(4).standard_normal(z.input_shape).astype("float32")
    assert len(loaded.segments) == 5
    _close(loaded.run(x)[-1], SegmentRunner(exe).run(x)[-1])
