"""onnxruntime as eenn-tvm runs it: on the CPU, quiet; one sample at a time unless the model's batch is symbolic."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def session(model, threads: int = 0):
    """An inference session on a model file (a path) or a model in memory (an onnx.ModelProto or its bytes);
    `threads` bounds onnxruntime's own thread pool (0: one per core)."""
    import onnxruntime as ort  # heavy; only the stages that run a model need it

    options = ort.SessionOptions()
    options.log_severity_level = 4  # errors reach the caller as exceptions; onnxruntime need not print them
    options.intra_op_num_threads = threads
    if isinstance(model, str | Path):
        source = str(model)
    else:
        source = model if isinstance(model, bytes) else model.SerializeToString()
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def run_each(session, x: np.ndarray, batch: int = 1) -> list[list[np.ndarray]]:
    """Every output of the session's model for each run over `batch` samples of `x` (N, ...) (the last run may
    take fewer)."""
    name = session.get_inputs()[0].name
    return [session.run(None, {name: x[i : i + batch]}) for i in range(0, len(x), batch)]
