"""onnxruntime as eenn-tvm runs it: on the CPU, quiet, one sample at a time (the models have batch 1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def session(model):
    """An inference session on a model file (a path) or a model in memory (an onnx.ModelProto)."""
    import onnxruntime as ort  # heavy; only the stages that run a model need it

    options = ort.SessionOptions()
    options.log_severity_level = 3
    source = str(model) if isinstance(model, str | Path) else model.SerializeToString()
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def run_each(session, x: np.ndarray) -> list[list[np.ndarray]]:
    """Every output of the session's model for each sample of `x` (N, ...), run one at a time."""
    name = session.get_inputs()[0].name
    return [session.run(None, {name: x[i : i + 1]}) for i in range(len(x))]
