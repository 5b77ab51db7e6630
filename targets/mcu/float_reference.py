"""The float32 kernels' arithmetic in numpy (float64), for the tests and benchmarks of the kernel library; the
integer arithmetic has its own, single definition: `eenn_tvm.quantized.reference`."""

from __future__ import annotations

import numpy as np


def conv2d_f32(
    x, weights, bias, act_min=-np.inf, act_max=np.inf, strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), groups=1
) -> np.ndarray:
    """NCHW x OIHW, grouped; pads (top, left, bottom, right) are zeros; the result clamped to [act_min, act_max]."""
    weights = np.asarray(weights, np.float64)
    out_channels, group_channels, kh, kw = weights.shape
    top, left, bottom, right = pads
    padded = np.pad(np.asarray(x, np.float64), ((0, 0), (0, 0), (top, bottom), (left, right)))
    span = [d * (k - 1) + 1 for k, d in zip((kh, kw), dilations)]
    windows = np.lib.stride_tricks.sliding_window_view(padded, span, axis=(2, 3))
    windows = windows[:, :, :: strides[0], :: strides[1], :: dilations[0], :: dilations[1]]  # N, C, OH, OW, KH, KW
    per_group = out_channels // groups
    parts = []
    for g in range(groups):
        patch = windows[:, g * group_channels : (g + 1) * group_channels]
        w = weights[g * per_group : (g + 1) * per_group]
        parts.append(np.einsum("ncyxij,ocij->noyx", patch, w))
    acc = np.concatenate(parts, axis=1)
    if bias is not None:
        acc = acc + np.asarray(bias, np.float64)[None, :, None, None]
    return np.clip(acc, act_min, act_max)
