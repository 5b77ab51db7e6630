"""The command line as a user meets it: tables, one JSON document, and one clear line for bad input."""

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

from eenn_tvm.cli import main


def run_cli(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def save_graph(path, nodes, inputs, outputs, initializers=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


def conv_graph(path, input_dims, weight_type=TensorProto.FLOAT, extra_nodes=(), output="y"):
    weight = helper.make_tensor("w", weight_type, [4, 3, 3, 3], np.ones(108, dtype=int).tolist())
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1], name="conv0"), *extra_nodes]
    return save_graph(
        path,
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, input_dims)],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, [input_dims[0], 4, *input_dims[2:]])],
        [weight],
    )


def assert_one_line_error(args, *fragments):
    code, out, err = run_cli(*args)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("eenn-tvm: error: "), err
    for fragment in fragments:
        assert fragment in lines[0]


def test_analyze_prints_a_table(zoo_model):
    code, out, _ = run_cli("analyze", zoo_model("resnet", "legacy").path)
    assert code == 0
    assert "candidate exit points" in out and "MACs before" in out


def test_analyze_json_is_exactly_one_document_with_the_documented_fields(zoo_model):
    code, out, _ = run_cli("analyze", zoo_model("resnet", "dynamo").path, "--json")
    assert code == 0
    doc = json.loads(out)
    assert {"model", "total_macs", "exit_points"} <= doc.keys()
    fields = {"name", "op", "shape", "macs_before", "fraction", "activation_bytes", "param_bytes_before"}
    assert doc["exit_points"] and all(fields <= p.keys() for p in doc["exit_points"])


def test_missing_file(tmp_path):
    assert_one_line_error(["analyze", tmp_path / "none.onnx"], "no such file")


def test_not_onnx(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("these are not the weights you are looking for\n" * 20)
    assert_one_line_error(["analyze", path], "not an ONNX model")


def test_truncated_model(zoo_model, tmp_path):
    data = zoo_model("plain", "legacy").path.read_bytes()
    path = tmp_path / "truncated.onnx"
    path.write_bytes(data[: len(data) // 2])
    assert_one_line_error(["analyze", path], str(path))


def test_invalid_per_the_checker(tmp_path):
    path = conv_graph(tmp_path / "int8.onnx", [1, 3, 8, 8], weight_type=TensorProto.INT8)
    assert_one_line_error(["analyze", path], "invalid ONNX model")


def test_unsupported_ops_are_listed_with_their_nodes(tmp_path):
    extra = [
        helper.make_node("Celu", ["y"], ["z"], name="celu0"),
        helper.make_node("LpNormalization", ["z"], ["out"], name="norm0"),
    ]
    path = conv_graph(tmp_path / "ops.onnx", [1, 3, 8, 8], extra_nodes=extra, output="out")
    assert_one_line_error(["analyze", path], "Celu (celu0)", "LpNormalization (norm0)")


def test_symbolic_dims_need_input_shape(tmp_path):
    path = conv_graph(tmp_path / "sym.onnx", ["N", 3, "H", "W"])
    assert_one_line_error(["analyze", path], "--input-shape x=")
    code, out, _ = run_cli("analyze", path, "--input-shape", "x=1x3x16x16", "--json")
    assert code == 0 and json.loads(out)["input_shapes"] == {"x": [1, 3, 16, 16]}


def test_symbolic_batch_alone_defaults_to_one(tmp_path):
    path = conv_graph(tmp_path / "batch.onnx", ["N", 3, 8, 8])
    code, out, _ = run_cli("analyze", path, "--json")
    assert code == 0 and json.loads(out)["input_shapes"] == {"x": [1, 3, 8, 8]}


@pytest.mark.parametrize("shape", ["x=1x3x8", "y=1x3x8x8", "x=oops"])
def test_input_shape_that_does_not_fit(tmp_path, shape):
    path = conv_graph(tmp_path / "fixed.onnx", [1, 3, 8, 8])
    assert_one_line_error(["analyze", path, "--input-shape", shape], "--input-shape")


def test_external_weight_files_are_read(zoo_model, tmp_path):
    proto = onnx.load(str(zoo_model("plain", "legacy").path))
    onnx.save(proto, str(tmp_path / "ext.onnx"), save_as_external_data=True, location="ext.weights", size_threshold=0)
    assert (tmp_path / "ext.weights").exists()
    code, out, _ = run_cli("analyze", tmp_path / "ext.onnx", "--json")
    assert code == 0 and len(json.loads(out)["exit_points"]) == 3
    (tmp_path / "ext.weights").unlink()
    assert_one_line_error(["analyze", tmp_path / "ext.onnx"], "external")


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["build", "m.onnx", "--target", "cortex-m99", "-o", "fw"], "eenn-tvm build --help"),
        (["frobnicate"], "No such command"),
        (["verify"], "Missing argument 'FIRMWARE'"),
    ],
)
def test_a_wrong_option_or_command_is_one_line_pointing_at_the_help(args, fragment):
    assert_one_line_error(args, fragment)
