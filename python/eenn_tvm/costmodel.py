"""The cost model: latency and energy of a segment on a target, learned from measurements.

Features come from the segment's Relax function (MACs per kind of operator, bytes in, out and of parameters,
the shapes that decide loop overheads). Per target, gradient-boosted trees (XGBoost, as TVM's own tuners use)
learn log(seconds per unit of work); the prediction is work x exp(that). Targets with no measurements fall back
to the analytic model of the FIN paper, work / throughput, and say so (`source: "analytic"`). Energy is
latency x the target's active power.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tvm
from tvm import relax

from .errors import EennError
from .platform import Platform, Target

FEATURES = [
    "log_work", "log_conv_macs", "log_depthwise_macs", "log_dense_macs", "log_pool_macs", "log_elementwise",
    "log_input_bytes", "log_output_bytes", "log_param_bytes", "ops", "conv_reduction", "conv_kernel_area",
    "conv_out_channels", "conv_out_pixels", "conv_stride", "conv_padded", "conv_share", "depthwise_share",
    "dense_share", "pool_share", "elementwise_share",
]
MCU_FALLBACK_CYCLES_PER_MAC = 10.0  # analytic MCU fallback: untuned float32 kernels (bench/mcu.py: 7-9 instr/MAC on the M4)


@dataclass
class Prediction:
    latency_s: float
    energy_j: float
    source: str  # "model" (learned from measurements) or "analytic" (MACs / throughput)


def segment_features(func: relax.Function) -> dict[str, float]:
    """Features of one segment (a Relax function of one input)."""
    acc = {"conv": 0.0, "depthwise": 0.0, "dense": 0.0, "pool": 0.0, "elementwise": 0.0, "params": 0.0, "ops": 0}
    conv_stats = np.zeros(6)  # MAC-weighted: reduction, kernel area, out channels, out pixels, stride, padded
    for call in _calls(func):
        out = _shape(call.ty)
        op = call.op.name
        acc["ops"] += 1
        acc["params"] += sum(_nbytes(a.ty) for a in call.args if isinstance(a, tvm.ir.expr.Constant))
        if op in ("relax.nn.conv1d", "relax.nn.conv2d"):
            w = _shape(call.args[1].ty)
            macs = math.prod(out) * math.prod(w[1:])
            groups = int(call.attrs.groups)
            kind = "depthwise" if groups > 1 and w[1] == 1 else "conv"
            acc[kind] += macs
            if kind == "conv":
                padded = float(any(int(p) for p in call.attrs.padding))
                conv_stats += macs * np.array([math.prod(w[1:]), math.prod(w[2:]), w[0], math.prod(out[2:]),
                                               int(call.attrs.strides[0]), padded])
        elif op == "relax.matmul":
            acc["dense"] += math.prod(out) * _shape(call.args[0].ty)[-1]
        elif "pool" in op:
            acc["pool"] += math.prod(_shape(call.args[0].ty))
        else:
            acc["elementwise"] += math.prod(out) if out else 1
    work = acc["conv"] + acc["depthwise"] + acc["dense"] + acc["pool"] + acc["elementwise"]
    conv = conv_stats / acc["conv"] if acc["conv"] else np.zeros(6)
    in_bytes = _nbytes(func.params[0].ty)
    out_bytes = sum(_nbytes(f) for f in _fields(func.ret_ty))
    return dict(zip(FEATURES, [
        math.log1p(work), math.log1p(acc["conv"]), math.log1p(acc["depthwise"]), math.log1p(acc["dense"]),
        math.log1p(acc["pool"]), math.log1p(acc["elementwise"]), math.log1p(in_bytes), math.log1p(out_bytes),
        math.log1p(acc["params"]), acc["ops"], *conv.tolist(),
        *(acc[k] / work if work else 0.0 for k in ("conv", "depthwise", "dense", "pool", "elementwise")),
    ]))


def work_of(features: dict[str, float]) -> float:
    """MACs plus elementwise operations: the unit the models learn seconds per."""
    return max(math.expm1(features["log_work"]), 1.0)


def analytic_latency(features: dict[str, float], target: Target) -> float:
    if target.macs_per_s:
        return work_of(features) / target.macs_per_s
    if target.kind == "mcu":
        return work_of(features) * MCU_FALLBACK_CYCLES_PER_MAC / target.clock_hz
    raise EennError(f"target {target.name} has neither measurements nor macs_per_s: profile it or give its throughput")


class CostModel:
    """Per target: an XGBoost regressor of log(seconds per unit of work), or nothing (then analytic)."""

    def __init__(self, platform: Platform, boosters: dict[str, object] | None = None):
        self.platform = platform
        self.boosters = boosters or {}

    @classmethod
    def train(cls, platform: Platform, rows: list[dict], seed: int = 0) -> CostModel:
        """`rows`: measurements, each {"target", "features", "latency_s"} (the dataset `profile` writes)."""
        boosters = {}
        for target in platform.targets:
            mine = [r for r in rows if r["target"] == target.name]
            if len(mine) >= 8:
                boosters[target.name] = _fit(mine, seed)
        return cls(platform, boosters)

    def predict(self, features: dict[str, float], target_name: str) -> Prediction:
        target = self.platform.target(target_name)
        booster = self.boosters.get(target_name)
        if booster is None:
            latency, source = analytic_latency(features, target), "analytic"
        else:
            import xgboost

            x = xgboost.DMatrix(np.array([[features[f] for f in FEATURES]], np.float32), feature_names=FEATURES)
            latency, source = work_of(features) * math.exp(float(booster.predict(x)[0])), "model"
        return Prediction(latency, latency * target.active_power_w, source)

    def sources(self) -> dict[str, str]:
        return {t.name: "model" if t.name in self.boosters else "analytic" for t in self.platform.targets}

    def save(self, path: Path) -> None:
        document = {"format": "eenn-tvm-costmodel", "version": 1, "platform": self.platform.name,
                    "features": FEATURES,
                    "boosters": {name: json.loads(b.save_raw("json").decode()) for name, b in self.boosters.items()}}
        Path(path).write_text(json.dumps(document) + "\n")

    @classmethod
    def load(cls, path: Path, platform: Platform) -> CostModel:
        import xgboost

        document = json.loads(Path(path).read_text())
        if document.get("features") != FEATURES:
            raise EennError(f"{path}: made with other features: run `eenn-tvm profile` again")
        boosters = {}
        for name, raw in document["boosters"].items():
            booster = xgboost.Booster()
            booster.load_model(bytearray(json.dumps(raw).encode()))
            boosters[name] = booster
        return cls(platform, boosters)


def _fit(rows: list[dict], seed: int):
    import xgboost

    x = np.array([[r["features"][f] for f in FEATURES] for r in rows], np.float32)
    y = np.array([math.log(r["latency_s"] / work_of(r["features"])) for r in rows])
    params = {"max_depth": 4, "eta": 0.1, "subsample": 0.9, "colsample_bytree": 0.9, "min_child_weight": 1,
              "objective": "reg:squarederror", "seed": seed, "nthread": 1}
    return xgboost.train(params, xgboost.DMatrix(x, label=y, feature_names=FEATURES), num_boost_round=300)


def _calls(func: relax.Function) -> list[relax.Call]:
    return [b.value for block in func.body.blocks for b in block.bindings
            if isinstance(b.value, relax.Call) and isinstance(b.value.op, tvm.ir.Op)]


def _fields(ty) -> list:
    if isinstance(ty, relax.TupleType):
        return [f for item in ty.fields for f in _fields(item)]
    return [ty]


def _shape(ty) -> list[int]:
    return [int(d) for d in ty.shape] if getattr(ty, "shape", None) is not None else []


def _nbytes(ty) -> int:
    shape = _shape(ty)
    return math.prod(shape) * tvm.runtime.DataType(str(ty.dtype)).bits // 8 if shape or hasattr(ty, "dtype") else 0


def validate(platform: Platform, rows: list[dict], seed: int = 0, held_out: float = 0.25) -> dict[str, dict]:
    """Train on most workloads, predict the rest: per measured target, the mean absolute percentage error and
    Spearman's rank correlation of the model, and of the MAC proxy (work x the median seconds per unit of work)."""
    from scipy.stats import spearmanr

    keys = sorted({r["workload"] for r in rows})
    rng = np.random.default_rng(seed)
    test_keys = set(rng.choice(keys, size=max(1, round(held_out * len(keys))), replace=False).tolist()) if keys else set()
    train = [r for r in rows if r["workload"] not in test_keys]
    model = CostModel.train(platform, train, seed)
    report = {}
    for target in platform.targets:
        test = [r for r in rows if r["target"] == target.name and r["workload"] in test_keys]
        fitted = [r for r in train if r["target"] == target.name]
        if len(test) < 3 or target.name not in model.boosters:
            continue
        measured = np.array([r["latency_s"] for r in test])
        predicted = np.array([model.predict(r["features"], target.name).latency_s for r in test])
        per_work = float(np.median([r["latency_s"] / work_of(r["features"]) for r in fitted]))
        proxy = np.array([per_work * work_of(r["features"]) for r in test])
        report[target.name] = {
            "train": len(fitted), "held_out": len(test),
            "mape": _mape(predicted, measured), "spearman": float(spearmanr(predicted, measured).statistic),
            "mac_proxy": {"mape": _mape(proxy, measured), "spearman": float(spearmanr(proxy, measured).statistic)},
        }
    return report


def _mape(predicted: np.ndarray, measured: np.ndarray) -> float:
    return float(np.mean(np.abs(predicted - measured) / measured))
