"""Shared fixtures: the test model zoo (exported once per session), the MLPerf Tiny reference models,
and onnxruntime as the numerical reference."""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import zoo

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EENN_SHARED", REPO.parent / "shared"))
MLPERF = SHARED / "models" / "mlperf-tiny"
EXAMPLE = REPO / "examples" / "fashion_mnist"
MODEL = EXAMPLE / "resnet8.onnx"


@pytest.fixture(scope="session")
def zoo_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("zoo")


@pytest.fixture(scope="session")
def zoo_model(zoo_dir):
    """zoo_model(name, exporter) -> zoo.ZooModel, exported on first use."""
    cache = {}

    def get(name, exporter):
        if (name, exporter) not in cache:
            cache[name, exporter] = zoo.make(name, exporter, zoo_dir)
        return cache[name, exporter]

    return get


@pytest.fixture(scope="session")
def mlperf_model():
    def get(name):
        path = MLPERF / f"{name}.onnx"
        if not path.exists():
            pytest.skip(f"{path} is missing (the shared/ folder beside the repository)")
        return path

    return get


def ort_int8_is_exact() -> bool:
    """Does onnxruntime compute int8 networks exactly here? Its x86 int8 kernels on CPUs without VNNI (AVX2, AVX-512
    without VNNI) sum u8 x s8 pairs in saturating 16-bit lanes, which its documentation warns of: a network with large
    weights then comes out steps, or classes, away from the exact integer arithmetic that eenn-tvm's code and
    reference both do (seen on an AMD EPYC with AVX2 only)."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return True
    cpuinfo = Path("/proc/cpuinfo")
    return cpuinfo.exists() and "vnni" in cpuinfo.read_text()


def ort_run(model: onnx.ModelProto | Path, x: np.ndarray, extra_outputs: list[str] = ()) -> dict[str, np.ndarray]:
    """All graph outputs (and the named intermediate tensors) of a model in onnxruntime."""
    proto = onnx.load(str(model)) if isinstance(model, Path) else model
    proto = onnx.shape_inference.infer_shapes(proto)
    infos = {v.name: v for v in proto.graph.value_info}
    have = {o.name for o in proto.graph.output}
    for name in extra_outputs:
        if name not in have:
            proto.graph.output.append(infos[name])
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x}
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feed)))


def two_tier_platform(
    name: str,
    device: str,
    host: str,
    ram_bytes: int,
    host_macs_per_s: float | None,
    link: tuple[float, float, float, float],
) -> str:
    """A platform TOML: a Cortex-M4 device and a host (timed here, or with a throughput), one link
    (bandwidth, latency, send and receive energy per bit)."""
    host_speed = "measured_here = true" if host_macs_per_s is None else f"macs_per_s = {host_macs_per_s:g}"
    bandwidth, latency, send, receive = link
    return f"""
name = "{name}"
[[targets]]
name = "{device}"
kind = "mcu"
tier = 0
core = "cortex-m4"
clock_hz = 64e6
cycles_per_instruction = 1.3
active_power_w = 0.01
flash_bytes = 1048576
ram_bytes = {ram_bytes}
[[targets]]
name = "{host}"
kind = "host"
tier = 1
{host_speed}
active_power_w = 15.0
memory_bytes = 8000000000
[[links]]
from = "{device}"
to = "{host}"
bandwidth_bps = {bandwidth:g}
latency_s = {latency:g}
energy_j_per_bit_send = {send:g}
energy_j_per_bit_receive = {receive:g}
"""


@pytest.fixture(scope="session")
def fashion(tmp_path_factory):
    """Small train and test files from Debian's Fashion-MNIST: 4000 to augment on, 1000 held out."""
    sys.path.insert(0, str(EXAMPLE))
    import fashion_mnist

    if not fashion_mnist.DATA_DIR.exists():
        pytest.skip("Debian's dataset-fashion-mnist is not installed (scripts/setup.sh installs it)")
    folder = tmp_path_factory.mktemp("fashion")
    x, y = fashion_mnist.load("train")
    np.savez(folder / "train.npz", x=x[:4000], y=y[:4000])
    x, y = fashion_mnist.load("test")
    np.savez(folder / "test.npz", x=x[:1000], y=y[:1000])
    return folder


@pytest.fixture(scope="session")
def augmented(fashion, tmp_path_factory):
    from test_cli import run_cli

    out = tmp_path_factory.mktemp("runs") / "eenn"
    cache = tmp_path_factory.mktemp("cache")
    code, stdout, stderr = run_cli(
        "augment",
        MODEL,
        "--data",
        fashion / "train.npz",
        "--max-accuracy-drop",
        "0.01",
        "--cache-dir",
        cache,
        "-o",
        out,
        "--json",
    )
    assert code == 0, stderr
    return out, json.loads(stdout), cache


@pytest.fixture(scope="session")
def quantized(augmented, fashion, tmp_path_factory):
    """The augmented Fashion-MNIST network with its int8 form added by `eenn-tvm quantize` into a new folder."""
    from test_cli import run_cli

    out, _plan, _cache = augmented
    target = tmp_path_factory.mktemp("int8") / "eenn"
    code, stdout, stderr = run_cli("quantize", out, "--data", fashion / "train.npz", "-o", target, "--json")
    assert code == 0, stderr
    return target, json.loads(stdout)


def compile_augmented(augmented, fashion, platform, out, max_latency_ms: float, *extra) -> tuple[int, str, str]:
    """`eenn-tvm compile` of the augmented example model (its feature cache reused) on `platform`."""
    from test_cli import run_cli

    return run_cli(
        "compile",
        augmented[0] / "model.onnx",
        "--data",
        fashion / "train.npz",
        "--cache-dir",
        augmented[2],
        "--platform",
        platform,
        "--max-latency-ms",
        max_latency_ms,
        "-o",
        out,
        *extra,
    )


@pytest.fixture(scope="session")
def mlp_assets(tmp_path_factory, zoo_model):
    """The dense zoo model, 1,000 samples it labels itself, and an `augment` output of it with at least one exit
    (seconds to make: what the bad-input and fuzz tests run on). Learn-then-Test needs the samples and the 10-point
    tolerance to certify an exit; fewer keep none."""
    from test_cli import run_cli

    folder = tmp_path_factory.mktemp("mlp")
    model = zoo_model("mlp", "legacy")
    shutil.copy(model.path, folder / "model.onnx")
    x, y = zoo.self_labelled(model.path, model.input_shape, 1000)
    np.savez(folder / "data.npz", x=x, y=y)
    data = ["--data", folder / "data.npz", "--no-cache", "--max-accuracy-drop", "0.1"]
    code, _, stderr = run_cli("augment", folder / "model.onnx", *data, "-o", folder / "eenn")
    assert code == 0, stderr
    assert json.loads((folder / "eenn" / "plan.json").read_text())["exits"], "the fixture needs an exit"
    return folder


@pytest.fixture(scope="session")
def mlp_firmware(mlp_assets, tmp_path_factory):
    """The early-exit network of `mlp_assets` built for the Cortex-M4."""
    from test_cli import run_cli

    out = tmp_path_factory.mktemp("mlp-firmware") / "fw"
    code, _, stderr = run_cli("build", mlp_assets / "eenn", "--target", "cortex-m4", "-o", out)
    assert code == 0, stderr
    return out
