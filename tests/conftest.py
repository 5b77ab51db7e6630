"""Shared fixtures: the test model zoo (exported once per session), the MLPerf Tiny reference models,
and onnxruntime as the numerical reference."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import zoo

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EENN_SHARED", REPO.parent / "shared"))
MLPERF = SHARED / "models" / "mlperf-tiny"


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
