"""The exit decision: a confidence per sample from an exit's logits, compared with that exit's threshold.

All three rules give higher values for more confident outputs, in [0, 1]:
maxprob is the largest softmax probability, margin the top-1 minus the top-2 probability, and
entropy one minus the softmax entropy divided by its maximum, log(classes).
"""

from __future__ import annotations

import numpy as np

from eenn_tvm.catalog import RULES


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def confidence(logits: np.ndarray, rule: str) -> np.ndarray:
    """(N, classes) logits -> (N,) confidence."""
    p = softmax(logits.astype(np.float32))
    if rule == "maxprob":
        return p.max(-1)
    if rule == "margin":
        top2 = np.sort(p, axis=-1)[..., -2:]
        return top2[..., 1] - top2[..., 0]
    if rule == "entropy":
        h = -(p * np.log(np.maximum(p, 1e-30))).sum(-1)
        return 1.0 - h / np.log(p.shape[-1])
    raise ValueError(f"unknown decision rule {rule!r}: choose one of {', '.join(RULES)}")
