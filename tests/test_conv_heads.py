"""A plan whose exits are convolutional heads (grid_conv) deploys like any other: the host module and onnxruntime
agree, and the Cortex-M4 firmware, float32 and int8, takes the host's exits in QEMU."""

import json

import pytest
from conftest import MODEL
from test_cli import run_cli
from test_mcu import verify

from eenn_tvm import heads
from eenn_tvm.augment import Settings, augment
from eenn_tvm.outputs import Output


@pytest.fixture(scope="module")
def conv_augmented(fashion, tmp_path_factory):
    """The example ResNet-8 augmented with convolutional heads on offer, and global ones (the baseline's)."""
    offered = heads.kinds_for
    out = tmp_path_factory.mktemp("conv") / "eenn"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(heads, "kinds_for", lambda shape: [k for k in offered(shape) if k in ("grid_conv", "gap_linear")])
        plan = augment(
            MODEL,
            fashion / "train.npz",
            Output.of(out, "augment"),
            Settings(cache_dir=tmp_path_factory.mktemp("cache")),
        )
    assert any(e.head == "grid_conv" for e in plan.exits)
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
    assert figures["tvm"]["mac_reduction"] > 0.3


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_convolutional_heads_take_the_hosts_exits_on_cortex_m4(conv_augmented, fashion, dtype, tmp_path):
    source = conv_augmented
    if dtype == "int8":
        source = tmp_path / "int8"
        code, _, stderr = run_cli("quantize", conv_augmented, "--data", fashion / "train.npz", "-o", source)
        assert code == 0, stderr
    folder = tmp_path / "fw"
    code, _, stderr = run_cli(
        "build", source, "--target", "cortex-m4", "--dtype", dtype, "-o", folder, "--ram", "262144"
    )
    assert code == 0, stderr
    code, result = verify(folder, fashion / "test.npz", "--n", "20")
    assert code == 0, result
    assert result["exit_mismatches"] == 0 and result["class_mismatches"] == 0
