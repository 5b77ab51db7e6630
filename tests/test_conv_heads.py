"""A plan whose exits are convolutional heads (grid_conv) deploys like any other: the host module and onnxruntime
agree, the Cortex-M4 firmware, float32 and int8, takes the host's exits in QEMU, and stream decisions run on them."""

import json

import numpy as np
import pytest
import zoo
from conftest import MODEL
from test_cli import run_cli
from test_mcu import verify

from eenn_tvm.augment import Settings, augment
from eenn_tvm.costs import MacCost
from eenn_tvm.outputs import Output


class ConvolutionalHeadsPreferred(MacCost):
    """MACs, but any other head priced as the whole backbone: the search keeps only convolutional heads."""

    def head(self, head, point):
        return super().head(head, point) if head.kind == "grid_conv" else self.total()


@pytest.fixture(scope="module")
def conv_augmented(fashion, tmp_path_factory):
    """The example ResNet-8 augmented on 2,000 images, its exits convolutional heads (through augment's cost hook)."""
    out = tmp_path_factory.mktemp("conv") / "eenn"
    train = np.load(fashion / "train.npz")
    np.savez(out.parent / "train.npz", x=train["x"][:2000], y=train["y"][:2000])
    plan = augment(
        MODEL,
        out.parent / "train.npz",
        Output.of(out, "augment"),
        # a loose tolerance: 400 calibration samples must certify exits that are all convolutional heads
        Settings(max_accuracy_drop=0.05, confidence=0.5, cache_dir=tmp_path_factory.mktemp("cache")),
        cost=lambda _model, analysis: ConvolutionalHeadsPreferred(analysis),
    )
    assert plan.exits and all(e.head == "grid_conv" for e in plan.exits)
    return out


@pytest.mark.slow
def test_convolutional_heads_run_alike_on_the_host_and_in_onnxruntime(conv_augmented, fashion):
    figures = {}
    for engine in ("tvm", "onnxruntime"):
        code, stdout, stderr = run_cli(
            "run", conv_augmented, "--data", fashion / "test.npz", "--json", "--engine", engine
        )
        assert code == 0, stderr
        figures[engine] = json.loads(stdout)
    for key in ["accuracy", "mean_macs", "exit_histogram"]:
        assert figures["tvm"][key] == figures["onnxruntime"][key], key
    assert figures["tvm"]["mac_reduction"] > 0  # samples leave at the convolutional heads


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_convolutional_heads_take_the_hosts_exits_on_cortex_m4(conv_augmented, fashion, dtype, tmp_path):
    source = conv_augmented
    if dtype == "int8":
        source = tmp_path / "int8"
        code, _, stderr = run_cli(
            "quantize", conv_augmented, "--data", conv_augmented.parent / "train.npz", "-o", source
        )
        assert code == 0, stderr
    folder = tmp_path / "fw"
    code, _, stderr = run_cli(
        "build", source, "--target", "cortex-m4", "--dtype", dtype, "-o", folder, "--ram", "262144"
    )
    assert code == 0, stderr
    code, result = verify(folder, fashion / "test.npz", "--n", "20")
    assert code == 0, result
    assert result["exit_mismatches"] == 0 and result["class_mismatches"] == 0


def test_stream_decisions_are_certified_and_replayed_on_convolutional_exits(zoo_model, tmp_path):
    z = zoo_model("ecg", "legacy")  # a 1-D network: its early maps are long enough for the 8-cell grid
    x, y = zoo.self_labelled(z.path, z.input_shape, 1000)
    streams = tmp_path / "streams.npz"
    np.savez(streams, x=x, y=y, stream=np.arange(len(y)) // 50, order=np.arange(len(y)) % 50)
    plan = augment(
        z.path,
        streams,
        Output.of(tmp_path / "eenn", "augment"),
        Settings(max_accuracy_drop=0.1, cache_dir=None, stream=True),
        cost=lambda _model, analysis: ConvolutionalHeadsPreferred(analysis),
    )
    assert plan.exits and all(e.head == "grid_conv" for e in plan.exits)
    assert len(plan.stream.thresholds) == len(plan.exits)
    code, stdout, stderr = run_cli("run", tmp_path / "eenn", "--data", streams, "--json")
    assert code == 0, stderr
    ran = json.loads(stdout)["stream"]
    assert ran["streams"] == 20 and ran["samples"] == len(y)
    assert 0 in ran["slots"]  # windows the stream rule did not reuse leave at a convolutional exit
