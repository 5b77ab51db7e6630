"""int8: onnxruntime's QDQ quantisation, QDQToInteger, the integer ops against the numpy reference, and the int8
early-exit network against onnxruntime."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from conftest import EXAMPLE, MODEL, ort_int8_is_exact, ort_run
from int8_interpreter import op_attrs, run_reference
from test_cli import assert_one_line_error, run_cli
from tvm import relax
from zoo import EXPORTERS

from eenn_tvm.frontend import import_onnx
from eenn_tvm.passes import QDQToInteger
from eenn_tvm.quantize import imported, quantize_model, quantize_onnx
from eenn_tvm.quantized import ops, reference
from eenn_tvm.quantized.network import op_counts
from eenn_tvm.quantized.ops import composite_name
from eenn_tvm.targets.host import HostModule, build

RNG = np.random.default_rng(0)


def _int8(*shape):
    return RNG.integers(-128, 128, shape).astype(np.int8)


def _multipliers(n, low=1e-4, high=2e-2):
    pairs = [reference.quantize_multiplier(m) for m in RNG.uniform(low, high, n)]
    return np.array([m for m, _ in pairs], np.int32), np.array([r for _, r in pairs], np.int32)


def _call_alone(func: relax.Function, *args: np.ndarray) -> np.ndarray:
    """Build a module whose main calls the integer op function once, and run it."""
    bb = relax.BlockBuilder()
    gv = bb.add_func(func, "op")
    params = [relax.Var(f"a{i}", relax.TensorType(a.shape, str(a.dtype))) for i, a in enumerate(args)]
    with bb.function("main", params):
        with bb.dataflow():
            out = bb.emit_output(relax.Call(gv, params))
        bb.emit_func_output(out)
    return HostModule(build(bb.get()))("main", *args)[0]


def _ty(a: np.ndarray) -> relax.TensorType:
    return relax.TensorType(a.shape, str(a.dtype))


def _conv_case(nd, groups, cin, cout):
    x, w = _int8(1, cin, *[9] * nd), _int8(cout, cin // groups, *[3] * nd)
    bias = RNG.integers(-5000, 5000, cout).astype(np.int32)
    attrs = {
        "strides": [2] * nd, "padding": [1, 0] * nd if nd == 1 else [1, 1, 0, 1], "dilation": [1] * nd,
        "groups": groups, "input_zero_point": -7, "output_zero_point": 5, "act_min": -20, "act_max": 100,
    }  # fmt: skip
    return ops.conv(_ty(x), _ty(w), attrs), [x, w, bias, *_multipliers(cout)]


def _add_case():
    a, b = _int8(1, 4, 5, 5), _int8(1, 4, 5, 5)
    sa, sb, so = 0.02, 0.05, 0.06
    twice = 2 * max(sa, sb)
    (ma, ra), (mb, rb), (mo, ro) = (
        reference.quantize_multiplier(m) for m in (sa / twice, sb / twice, twice / 2**20 / so)
    )
    attrs = {
        "lhs_zero_point": 3, "lhs_multiplier": ma, "lhs_shift": ra, "rhs_zero_point": -9, "rhs_multiplier": mb,
        "rhs_shift": rb, "output_multiplier": mo, "output_shift": ro, "output_zero_point": -128, "left_shift": 20,
        "act_min": -128, "act_max": 127,
    }  # fmt: skip
    return ops.add(_ty(a), _ty(b), attrs), [a, b]


def _pool_case(kind):
    x = _int8(1, 4, 7, 7)
    m, r = reference.quantize_multiplier(0.02 / (9 * 0.015))
    rescale = {
        "input_zero_point": -3,
        "output_zero_point": 2,
        "multiplier": m,
        "shift": r,
        "act_min": -128,
        "act_max": 127,
    }
    window = {"pool_size": [3, 3], "strides": [2, 2], "padding": [1, 1, 1, 1]}
    if kind == "avg":
        return ops.avg_pool(_ty(x), {**window, **rescale}), [x]
    if kind == "max":
        return ops.max_pool(_ty(x), {**window, "dilation": [1, 1], **rescale}), [x]
    return ops.global_avg_pool(_ty(x), rescale), [x]


def _concat_case():
    a, b = _int8(1, 3, 4, 4), _int8(1, 2, 4, 4)
    m, r = reference.quantize_multiplier(0.7)
    attrs = {
        "axis": 1,
        "input_zero_points": [-3, 7],
        "multipliers": [1 << 30, m],
        "shifts": [30, r],
        "output_zero_point": -3,
    }
    return ops.concat([_ty(a), _ty(b)], attrs), [a, b]


def _dense_case():
    x, w = _int8(1, 16, 20), _int8(7, 20)
    attrs = {"input_zero_point": 3, "output_zero_point": -128, "act_min": -128, "act_max": 127}
    return ops.dense(_ty(x), _ty(w), attrs), [x, w, RNG.integers(-5000, 5000, 7).astype(np.int32), *_multipliers(7)]


CASES = {
    "conv2d": lambda: _conv_case(2, 1, 3, 8),
    "depthwise conv2d": lambda: _conv_case(2, 8, 8, 8),
    "grouped conv1d": lambda: _conv_case(1, 2, 4, 6),
    "dense": _dense_case,
    "add": _add_case,
    "avg_pool2d": lambda: _pool_case("avg"),
    "max_pool2d": lambda: _pool_case("max"),
    "global_avg_pool": lambda: _pool_case("global"),
    "concat": _concat_case,
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_integer_op_built_by_tvm_equals_the_numpy_reference_bit_for_bit(case):
    func, args = CASES[case]()
    got = _call_alone(func, *args)
    want = reference.OPS[composite_name(func)](*args, **op_attrs(func))
    assert got.dtype == np.int8 and got.shape == want.shape
    assert np.array_equal(got, want)
    assert len(np.unique(got)) > 3  # the case exercises the arithmetic, not only the clamp


def test_multiplier_is_a_31_bit_mantissa_and_a_shift_and_the_rounding_is_half_up():
    for real in (1e-9, 3.3e-5, 0.25, 0.999999999, 1.0, 7.5):
        m, r = reference.quantize_multiplier(real)
        assert 1 << 30 <= m < 1 << 31 and 1 <= r <= 62
        assert abs(m * 2.0**-r - real) <= real * 2.0**-30
    assert reference.quantize_multiplier(1.0) == (1 << 30, 30)
    with pytest.raises(ValueError):
        reference.quantize_multiplier(2.0**-40)
    half = (1 << 30, 31)  # m = 0.5
    assert reference.rounding_multiply(np.array([1, 3, -1, -3]), *half).tolist() == [1, 2, 0, -1]


ZOO_OPS = {  # the integer ops each zoo model must turn into, beside conv / dense
    "plain": {"conv2d", "max_pool2d", "dense"},
    "resnet": {"conv2d", "add", "global_avg_pool", "dense"},
    "mobilenet": {"conv2d", "global_avg_pool", "dense"},
    "inception": {"conv2d", "max_pool2d", "concat", "global_avg_pool", "dense"},
    "ecg": {"conv1d", "max_pool1d", "global_avg_pool", "dense"},
    "mlp": {"dense"},
}


def _quantized_zoo_model(zoo_model, tmp_path, name, exporter):
    model = zoo_model(name, exporter)
    x = RNG.normal(size=(64, *model.input_shape[1:])).astype(np.float32)
    classes = 5 if name == "ecg" else 10
    np.savez(tmp_path / "calibration.npz", x=x, y=np.arange(64) % classes)
    quantize_model(model.path, tmp_path / "calibration.npz", tmp_path / "int8.onnx")
    return model, tmp_path / "int8.onnx"


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("name", list(ZOO_OPS))
def test_qdq_zoo_models_become_all_integer_and_match_the_reference_bit_for_bit(zoo_model, tmp_path, name, exporter):
    model, path = _quantized_zoo_model(zoo_model, tmp_path, name, exporter)
    imported = import_onnx(path)
    counts = op_counts(imported)
    assert ZOO_OPS[name] <= set(counts["integer"])
    assert set(counts["float"]) <= {"reshape"}  # the MLP flattens its float input before quantising it
    mod = QDQToInteger()(imported.mod)
    groups = [op_attrs(mod[gv]).get("groups", 1) for gv in mod.functions if composite_name(mod[gv]) == "conv2d"]
    assert name != "mobilenet" or max(groups) > 1  # its depthwise convolutions stay depthwise
    host = HostModule(build(mod))
    for x in RNG.normal(size=(4, *model.input_shape)).astype(np.float32):
        got, want = host("main", x), run_reference(mod, x)
        assert all(np.array_equal(g, w) for g, w in zip(got, want))
        if ort_int8_is_exact():
            # onnxruntime computes the same network with its own rounding: at most a step of the output scale apart
            scale = np.abs(np.diff(np.unique(want[0]))).min(initial=1.0)
            assert np.abs(ort_run(path, x)["y"] - got[0]).max() <= 2.01 * scale


def test_patterns_without_an_integer_form_stay_float_and_still_compute_the_model(tmp_path):
    """Sigmoid has no integer op: its dequantize -> sigmoid -> quantize stays, the convolutions around it do not."""
    from onnx import TensorProto, helper, numpy_helper

    weights = [
        numpy_helper.from_array(RNG.normal(size=(4, c, 3, 3)).astype(np.float32), f"w{i}") for i, c in ((0, 3), (1, 4))
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["a"], pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["a"], ["b"]),
        helper.make_node("Conv", ["b", "w1"], ["y"], pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], weights,
    )  # fmt: skip
    float_path = tmp_path / "sigmoid.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(float_path))
    int8 = quantize_onnx(onnx.load(str(float_path)), RNG.normal(size=(32, 3, 8, 8)).astype(np.float32))
    path = tmp_path / "sigmoid_int8.onnx"
    onnx.save(int8, str(path))
    imported = import_onnx(path)
    counts = op_counts(imported)
    assert counts == {"integer": {"conv2d": 2}, "float": {"sigmoid": 1}}
    x = RNG.normal(size=(1, 3, 8, 8)).astype(np.float32)
    got = HostModule(build(QDQToInteger()(imported.mod)))("main", x)[0]
    # without exact int8 in onnxruntime, the float model is what the int8 one is to approximate
    want = ort_run(path if ort_int8_is_exact() else float_path, x)["y"]
    assert np.abs(got - want).max() < 0.1 * np.abs(got).max()


@pytest.mark.slow
def test_mlperf_resnet8_in_int8_gives_onnxruntimes_class_on_its_20_real_images(mlperf_model, tmp_path):
    model = mlperf_model("resnet8_cifar10")
    images = model.parent / "cifar10_20_images.npz"
    path = tmp_path / "resnet8_int8.onnx"
    code, stdout, stderr = run_cli("quantize", model, "--data", images, "-o", path, "--json")
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["calibration_samples"] == 20 and summary["ops"]["float"] == {"nn.softmax": 1}
    imported = import_onnx(path)
    mod = QDQToInteger()(imported.mod)
    host = HostModule(build(mod))
    for x in np.load(images)["x"]:
        ours = host("main", x[None])[0]
        assert ours.argmax() == ort_run(path, x[None])[imported.output_names[0]].argmax()
        # softmax runs in float (last bits differ between implementations); one step of the int8 logits before it
        # would move the probabilities by ~10 %, so 1e-5 means the same integers
        assert np.allclose(ours, run_reference(mod, x[None])[0], rtol=1e-5, atol=0)


@pytest.mark.slow
def test_quantize_searches_thresholds_on_the_int8_network_within_the_tolerance(quantized):
    target, section = quantized
    plan = json.loads((target / "plan.json").read_text())
    assert (
        plan["int8"] == section and (target / "eenn_int8.onnx").is_file() and (target / "eenn_int8_host.so").is_file()
    )
    assert len(section["thresholds"]) == len(plan["exits"]) and section["calibration_samples"] == 500
    floor = plan["validation"]["baseline_accuracy"] - plan["search"]["max_accuracy_drop"]
    assert section["meets_tolerance"] and section["validation"]["accuracy"] >= floor + section["accuracy_margin"] - 1e-9
    assert section["ops"]["float"] == {} and section["ops"]["integer"]["conv2d"] == 9
    # every operator of the QDQ model is int8 except the network's input and outputs
    model = onnx.load(str(target / "eenn_int8.onnx"))
    assert {n.op_type for n in model.graph.node} >= {"QuantizeLinear", "DequantizeLinear", "Conv", "Gemm", "Add"}


@pytest.mark.slow
def test_run_int8_agrees_with_onnxruntime_on_class_and_exit(quantized, fashion):
    target, _section = quantized
    code, stdout, stderr = run_cli(
        "run", target, "--data", fashion / "test.npz", "--dtype", "int8", "--n", "200", "--json"
    )
    assert code == 0, stderr
    int8 = json.loads(stdout)["int8"]
    assert int8["agreement"] >= 0.995
    assert abs(int8["tvm"]["accuracy"] - int8["onnxruntime"]["accuracy"]) <= 0.005
    assert int8["tvm"]["mac_reduction"] > 0.2  # thresholds tested on 400 images: 23.3 % with the example ResNet-8


@pytest.mark.slow
def test_int8_host_module_is_the_reference_arithmetic_bit_for_bit(quantized, fashion):
    """The integer early-exit network built for llvm against the numpy reference on the same QDQ model."""
    target, _section = quantized
    model = imported(onnx.load(str(target / "eenn_int8.onnx")), "resnet8")
    mod = QDQToInteger()(model.mod)
    host = HostModule(build(mod))
    for x in np.load(fashion / "test.npz")["x"][:10]:
        got, want = host("main", x[None]), run_reference(mod, x[None])
        assert all(np.array_equal(g, w) for g, w in zip(got, want))


@pytest.mark.slow
def test_quantize_names_what_is_wrong_with_its_input(quantized, fashion, tmp_path):
    target, _ = quantized
    np.savez(tmp_path / "other.npz", x=np.load(fashion / "test.npz")["x"][:300], y=np.arange(300) % 10)
    code, _, stderr = run_cli("quantize", target, "--data", tmp_path / "other.npz", "-o", tmp_path / "x")
    assert code == 2 and "give the data augment was given" in stderr and not (tmp_path / "x").exists()
    code, _, stderr = run_cli("quantize", target / "model.onnx", "--data", fashion / "test.npz")
    assert code == 2 and "give -o FILE.onnx" in stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "edit, fragment",
    [
        (lambda p: p["int8"]["thresholds"].pop(), "plan.json: int8: thresholds: one per exit"),
        (lambda p: p["int8"]["thresholds"].__setitem__(0, 2.0), "plan.json: int8.thresholds[0]: must be a number"),
        (lambda p: p["artifacts"].pop("int8_host_module"), "plan.json: int8: artifacts.eenn_int8_onnx and"),
        (lambda p: p["int8"].update(calibration_samples=0), "plan.json: int8.calibration_samples"),
    ],
)
def test_a_plan_with_a_bad_int8_section_is_one_line_naming_the_field(quantized, fashion, tmp_path, edit, fragment):
    out = tmp_path / "eenn"
    out.mkdir()
    plan = json.loads((quantized[0] / "plan.json").read_text())
    edit(plan)
    (out / "plan.json").write_text(json.dumps(plan))
    assert_one_line_error(["run", out, "--data", fashion / "test.npz", "--dtype", "int8"], fragment)


def test_run_int8_without_an_int8_network_says_how_to_make_one(augmented, fashion):
    out, _plan, _cache = augmented
    code, _, stderr = run_cli("run", out, "--data", fashion / "test.npz", "--dtype", "int8", "--n", "5")
    assert code == 2 and "eenn-tvm quantize" in stderr


@pytest.mark.slow
def test_the_examples_int8_network_keeps_the_tolerance_on_the_10k_test_images(tmp_path):
    """augment --int8 on the example's 60k training images, then the int8 network on the 10k test images."""
    train, test = EXAMPLE / "train.npz", EXAMPLE / "test.npz"
    if not train.exists():
        pytest.skip("the example's data is not made: .venv/bin/python examples/fashion_mnist/make_data.py")
    out = tmp_path / "fashion_mnist"
    args = ["--max-accuracy-drop", "0.01", "--int8", "--cache-dir", tmp_path / "cache", "-o", out]
    code, _, stderr = run_cli("augment", MODEL, "--data", train, *args)
    assert code == 0, stderr
    code, stdout, stderr = run_cli("run", out, "--data", test, "--dtype", "int8", "--json")
    assert code == 0, stderr
    result = json.loads(stdout)
    int8 = result["int8"]
    assert result["baseline_accuracy"] - int8["tvm"]["accuracy"] <= 0.01
    assert int8["agreement"] >= 0.995 and int8["tvm"]["mac_reduction"] > 0.6
