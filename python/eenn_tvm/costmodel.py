"""The cost model: latency and energy of a segment on a target, learned from measurements.

Features come from the segment's Relax function (MACs per kind of operator, bytes in, out and of parameters,
the shapes that decide loop overheads). Per target, a base model (a fixed cost, a cost per operator call, a cost
per unit of work; non-negative least squares) and gradient-boosted trees (XGBoost, as TVM's own tuners use) that
learn the log of its error: prediction = base x exp(trees). Targets with no measurements fall back
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

from eenn_tvm.errors import EennError
from eenn_tvm.platform import Platform, Target

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
    "conv_reduction",
    "conv_kernel_area",
    "conv_kernel_width",
    "conv_out_channels",
    "conv_out_pixels",
    "conv_stride",
    "conv_padded",
    "dw_kernel_area",
    "dw_channels",
    "dw_out_pixels",
    "dw_stride",
    "dense_reduction",
    "dense_units",
    "pool_window",
    "pool_max",
    "pool_out_pixels",
    "conv_share",
    "depthwise_share",
    "dense_share",
    "pool_share",
    "elementwise_share",
]
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
MCU_FALLBACK_CYCLES_PER_MAC = (
    10.0  # analytic MCU fallback: untuned float32 kernels (bench/mcu.py: 7-9 instr/MAC on the M4)
)


@dataclass
class Prediction:
    latency_s: float
    energy_j: float
    source: (
        str  # "measured" (this very function), "model" (learned from measurements) or "analytic" (MACs / throughput)
    )


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


def _base(features: dict[str, float], coef) -> float:
    """The base model the trees correct: a fixed cost, a cost per operator call, a cost per unit of work."""
    return max(coef[0] + coef[1] * features["ops"] + coef[2] * work_of(features), 1e-12)


def _fit_base(rows: list[dict]) -> list[float]:
    """Non-negative least squares on relative error, so small and large workloads count alike."""
    from scipy.optimize import nnls

    a = np.array([[1.0, r["features"]["ops"], work_of(r["features"])] for r in rows])
    y = np.array([r["latency_s"] for r in rows])
    coef, _ = nnls(a / y[:, None], np.ones(len(y)))
    return coef.tolist()


def analytic_latency(features: dict[str, float], target: Target) -> float:
    if target.macs_per_s:
        return work_of(features) / target.macs_per_s
    if target.kind == "mcu":
        return work_of(features) * MCU_FALLBACK_CYCLES_PER_MAC / target.clock_hz
    raise EennError(f"target {target.name} has neither measurements nor macs_per_s: profile it or give its throughput")


class CostModel:
    """Per target: a base model and XGBoost trees correcting it, or nothing (then analytic); and the
    measurements of whole functions, used as they are where one is asked for."""

    def __init__(
        self,
        platform: Platform,
        boosters: dict[str, tuple] | None = None,
        measured: dict[str, dict[str, float]] | None = None,
    ):
        self.platform = platform
        self.boosters = boosters or {}  # target -> (base model coefficients, booster of log(seconds / base))
        # target -> function key -> seconds: a segment measured exactly as it is needs no prediction
        self.measured = measured or {}

    @classmethod
    def for_platform(cls, platform: Platform, model_path: Path | None = None) -> CostModel:
        """The given model file; by default costs/PLATFORM.model.json, else one trained on the measurements in
        costs/PLATFORM.jsonl, else none (every target analytic)."""
        from eenn_tvm.profiling import read_dataset

        if model_path is not None:
            if not Path(model_path).is_file():
                raise EennError(
                    f"{model_path}: no such cost model: make one with `eenn-tvm profile --platform {platform.name}`"
                )
            return cls.load(model_path, platform)
        default = Path("costs") / f"{platform.name}.model.json"
        if default.is_file():
            return cls.load(default, platform)
        return cls.train(platform, read_dataset(Path("costs") / f"{platform.name}.jsonl"))

    @classmethod
    def train(cls, platform: Platform, rows: list[dict], seed: int = 0) -> CostModel:
        """`rows`: measurements, each {"target", "features", "latency_s"} (the dataset `profile` writes)."""
        boosters = {}
        rows = [r for r in rows if set(FEATURES) <= r["features"].keys()]  # rows from before a feature change cannot
        for target in platform.targets:
            mine = [r for r in rows if r["target"] == target.name]
            if len(mine) >= 8:
                boosters[target.name] = _fit(mine, seed)
        measured: dict[str, dict[str, float]] = {}
        for r in rows:
            measured.setdefault(r["target"], {})[r["workload"].rsplit(":", 1)[-1]] = r["latency_s"]
        return cls(platform, boosters, measured)

    def predict_function(self, func: relax.Function, target_name: str) -> Prediction:
        """The measurement of this very function where the dataset has one; else the model's prediction."""
        from eenn_tvm.workloads import function_key

        seconds = self.measured.get(target_name, {}).get(function_key(func))
        if seconds is None:
            return self.predict(segment_features(func), target_name)
        return Prediction(seconds, seconds * self.platform.target(target_name).active_power_w, "measured")

    def predict(self, features: dict[str, float], target_name: str) -> Prediction:
        target = self.platform.target(target_name)
        booster = self.boosters.get(target_name)
        if booster is None:
            latency, source = analytic_latency(features, target), "analytic"
        else:
            import xgboost

            x = xgboost.DMatrix(np.array([[features[f] for f in FEATURES]], np.float32), feature_names=FEATURES)
            coef, trees = booster
            latency, source = _base(features, coef) * math.exp(float(trees.predict(x)[0])), "model"
        return Prediction(latency, latency * target.active_power_w, source)

    def sources(self) -> dict[str, str]:
        return {t.name: "model" if t.name in self.boosters else "analytic" for t in self.platform.targets}

    def save(self, path: Path) -> None:
        document = {
            "format": "eenn-tvm-costmodel",
            "version": 1,
            "platform": self.platform.name,
            "features": FEATURES,
            "measured": self.measured,
            "boosters": {
                name: {"base": coef, "trees": json.loads(b.save_raw("json").decode())}
                for name, (coef, b) in self.boosters.items()
            },
        }
        Path(path).write_text(json.dumps(document) + "\n")

    @classmethod
    def load(cls, path: Path, platform: Platform) -> CostModel:
        import xgboost

        again = "run `eenn-tvm profile` again"
        try:  # interim, until the cost model has a schema (issue 13, phase 2)
            document = json.loads(Path(path).read_text())
            if document.get("features") != FEATURES:
                raise EennError(f"{path}: made with other features: {again}")
            boosters = {}
            for name, saved in document["boosters"].items():
                booster = xgboost.Booster()
                booster.load_model(bytearray(json.dumps(saved["trees"]).encode()))
                boosters[name] = (saved["base"], booster)
            return cls(platform, boosters, document.get("measured", {}))
        except (ValueError, KeyError, TypeError, AttributeError, xgboost.core.XGBoostError) as err:
            raise EennError(f"{path}: not a cost model eenn-tvm wrote ({type(err).__name__}): {again}") from None


def _fit(rows: list[dict], seed: int):
    import xgboost

    coef = _fit_base(rows)
    x = np.array([[r["features"][f] for f in FEATURES] for r in rows], np.float32)
    y = np.array([math.log(r["latency_s"] / _base(r["features"], coef)) for r in rows])
    params = {
        "max_depth": 4,
        "eta": 0.1,
        "subsample": 0.9,
        "colsample_bytree": 0.9,
        "min_child_weight": 1,
        "objective": "reg:squarederror",
        "seed": seed,
        "nthread": 1,
    }
    return coef, xgboost.train(params, xgboost.DMatrix(x, label=y, feature_names=FEATURES), num_boost_round=300)


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


def validate(
    platform: Platform, rows: list[dict], seed: int = 0, held_out: float = 0.25, repeats: int = 5
) -> dict[str, dict]:
    """Train on most workloads, predict the rest, `repeats` times over different random splits: per measured
    target, the mean absolute percentage error and Spearman's rank correlation of the model and of the MAC
    proxy (work x the median seconds per unit of work of the training rows), averaged over the splits."""
    splits = [_validate_once(platform, rows, seed + k, held_out) for k in range(repeats)]
    report = {}
    for target in {name for split in splits for name in split}:
        runs = [split[target] for split in splits if target in split]
        report[target] = {
            "splits": len(runs),
            "train": runs[0]["train"],
            "held_out": runs[0]["held_out"],
            "mape": float(np.mean([r["mape"] for r in runs])),
            "spearman": float(np.mean([r["spearman"] for r in runs])),
            "mape_range": [min(r["mape"] for r in runs), max(r["mape"] for r in runs)],
            "mac_proxy": {k: float(np.mean([r["mac_proxy"][k] for r in runs])) for k in ("mape", "spearman")},
        }
    return report


def _validate_once(platform: Platform, rows: list[dict], seed: int, held_out: float) -> dict[str, dict]:
    from scipy.stats import spearmanr

    keys = sorted({r["workload"] for r in rows})
    rng = np.random.default_rng(seed)
    test_keys = (
        set(rng.choice(keys, size=max(1, round(held_out * len(keys))), replace=False).tolist()) if keys else set()
    )
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
            "train": len(fitted),
            "held_out": len(test),
            "mape": _mape(predicted, measured),
            "spearman": float(spearmanr(predicted, measured).statistic),
            "mac_proxy": {"mape": _mape(proxy, measured), "spearman": float(spearmanr(proxy, measured).statistic)},
        }
    return report


def _mape(predicted: np.ndarray, measured: np.ndarray) -> float:
    return float(np.mean(np.abs(predicted - measured) / measured))
