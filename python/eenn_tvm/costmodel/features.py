"""What the cost model sees of a segment: features of its Relax function (MACs per kind of operator, bytes in, out
and of parameters, the shapes that decide loop overheads) and a key that identifies the computation."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import tvm
from tvm import relax

_SHAPE_FEATURES = {
    "conv": [
        "conv_reduction",
        "conv_kernel_area",
        "conv_kernel_width",
        "conv_out_channels",
        "conv_out_pixels",
        "conv_stride",
        "conv_padded",
    ],
    "depthwise": ["dw_kernel_area", "dw_channels", "dw_out_pixels", "dw_stride"],
    "dense": ["dense_reduction", "dense_units"],
    "pool": ["pool_window", "pool_max", "pool_out_pixels"],
}
FEATURES = [
    "log_work",
    "log_conv_macs",
    "log_depthwise_macs",
    "log_dense_macs",
    "log_pool_macs",
    "log_elementwise",
    "log_input_bytes",
    "log_output_bytes",
    "log_param_bytes",
    "ops",
    # MAC-weighted shapes of each kind of operator: they set the loop overheads per MAC
    *(name for names in _SHAPE_FEATURES.values() for name in names),
    "conv_share",
    "depthwise_share",
    "dense_share",
    "pool_share",
    "elementwise_share",
]


def segment_features(func: relax.Function) -> dict[str, float]:
    """Features of one segment (a Relax function of one input)."""
    macs = dict.fromkeys(["conv", "depthwise", "dense", "pool", "elementwise"], 0.0)
    shapes = {kind: np.zeros(len(names)) for kind, names in _SHAPE_FEATURES.items()}  # MAC-weighted sums
    ops = 0
    for call in _calls(func):
        ops += 1
        kind, count, shape = _operator(call)
        macs[kind] += count
        if kind in shapes:
            shapes[kind] += count * np.array(shape, float)
    work = sum(macs.values())
    in_bytes = _nbytes(func.params[0].ty)
    out_bytes = sum(_nbytes(f) for f in _fields(func.ret_ty))
    features = {
        "log_work": math.log1p(work),
        **{f"log_{k}_macs": math.log1p(macs[k]) for k in ("conv", "depthwise", "dense", "pool")},
        "log_elementwise": math.log1p(macs["elementwise"]),
        "log_input_bytes": math.log1p(in_bytes),
        "log_output_bytes": math.log1p(out_bytes),
        "log_param_bytes": math.log1p(param_bytes(func)),
        "ops": ops,
        **{f"{k}_share": macs[k] / work if work else 0.0 for k in macs},
    }
    for kind, names in _SHAPE_FEATURES.items():
        features.update(zip(names, (shapes[kind] / macs[kind] if macs[kind] else shapes[kind]).tolist()))
    return {f: float(features[f]) for f in FEATURES}


def param_bytes(func: relax.Function) -> int:
    """Bytes of the constants (weights) a segment's operators read."""
    return sum(_nbytes(a.ty) for call in _calls(func) for a in call.args if isinstance(a, tvm.ir.expr.Constant))


def _operator(call: relax.Call) -> tuple[str, float, list[float]]:
    """(kind, MACs or operations, the shape features of that kind) of one operator call."""
    out, op = _shape(call.ty), call.op.name
    if op in ("relax.nn.conv1d", "relax.nn.conv2d"):
        w = _shape(call.args[1].ty)
        count = math.prod(out) * math.prod(w[1:])
        pixels, stride = math.prod(out[2:]), int(call.attrs.strides[0])
        if int(call.attrs.groups) > 1 and w[1] == 1:
            return "depthwise", count, [math.prod(w[2:]), w[0], pixels, stride]
        padded = float(any(int(p) for p in call.attrs.padding))
        return "conv", count, [math.prod(w[1:]), math.prod(w[2:]), w[-1], w[0], pixels, stride, padded]
    if op == "relax.matmul":
        k = _shape(call.args[0].ty)[-1]
        return "dense", math.prod(out) * k, [k, out[-1]]
    if "pool" in op:
        inputs = math.prod(_shape(call.args[0].ty))
        return "pool", inputs, [inputs / max(math.prod(out), 1), float("max" in op), math.prod(out[2:])]
    return "elementwise", math.prod(out) if out else 1, []


def work_of(features: dict[str, float]) -> float:
    """MACs plus elementwise operations: the unit the models learn seconds per."""
    return max(math.expm1(features["log_work"]), 1.0)


def _calls(func: relax.Function) -> list[relax.Call]:
    return [
        b.value
        for block in func.body.blocks
        for b in block.bindings
        if isinstance(b.value, relax.Call) and isinstance(b.value.op, tvm.ir.Op)
    ]


def _fields(ty) -> list:
    if isinstance(ty, relax.TupleType):
        return [f for item in ty.fields for f in _fields(item)]
    return [ty]


def _shape(ty) -> list[int]:
    return [int(d) for d in ty.shape] if getattr(ty, "shape", None) is not None else []


def _nbytes(ty) -> int:
    shape = _shape(ty)
    return math.prod(shape) * tvm.runtime.DataType(str(ty.dtype)).bits // 8 if shape or hasattr(ty, "dtype") else 0


def function_key(func: relax.Function) -> str:
    """Identifies the computation (not the weights): two functions with the same key cost the same."""
    named = func.with_attr("global_symbol", "segment")  # the name a function is kept under does not change its cost
    return hashlib.sha256(named.script(show_meta=False).encode()).hexdigest()[:12]
