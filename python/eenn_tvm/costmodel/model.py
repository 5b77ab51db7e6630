"""The cost model: latency and energy of a segment on a target, learned from measurements.

Features come from the segment's Relax function (see `features`). Per target, a base model (a fixed cost, a cost
per operator call, a cost per unit of work; non-negative least squares) and gradient-boosted trees (XGBoost, as
TVM's own tuners use) that learn the log of its error: prediction = base x exp(trees). Targets with no
measurements fall back to the analytic model of the FIN paper, work / throughput, and say so (`source:
"analytic"`). Energy is latency x the target's active power.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator
from tvm import relax

from eenn_tvm.costmodel.data import CostFiles, Measurement, read_measurements
from eenn_tvm.costmodel.features import FEATURES, function_key, segment_features, work_of
from eenn_tvm.documents import Document, NonNegative, Positive, read_json, write_json
from eenn_tvm.errors import EennError
from eenn_tvm.platform import HostTarget, McuTarget, Platform

# The analytic MCU fallback: untuned float32 kernels (bench/mcu.py: 7-9 instructions per MAC on the M4).
MCU_FALLBACK_CYCLES_PER_MAC = 10.0
REMEDY = "run `eenn-tvm profile` again"
MAX_LOG_ERROR = 50.0  # trained trees correct the base model by factors near 1 (e^50: a file that was not trained)


@dataclass
class Prediction:
    latency_s: float
    energy_j: float
    # "measured" (this very function), "model" (learned from measurements) or "analytic" (MACs / throughput)
    source: str


def _base(features: dict[str, float], coef) -> float:
    """The base model the trees correct: a fixed cost, a cost per operator call, a cost per unit of work."""
    return max(coef[0] + coef[1] * features["ops"] + coef[2] * work_of(features), 1e-12)


def _fit_base(rows: list[Measurement]) -> list[float]:
    """Non-negative least squares on relative error, so small and large workloads count alike."""
    from scipy.optimize import nnls

    a = np.array([[1.0, r.features["ops"], work_of(r.features)] for r in rows])
    y = np.array([r.latency_s for r in rows])
    coef, _ = nnls(a / y[:, None], np.ones(len(y)))
    return coef.tolist()


def analytic_latency(features: dict[str, float], target: McuTarget | HostTarget) -> float:
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
        """The given model file; by default the platform's trained model, else one trained on its measurements
        (see `data.CostFiles`), else none (every target analytic)."""
        if model_path is not None:
            if not Path(model_path).is_file():
                raise EennError(
                    f"{model_path}: no such cost model: make one with `eenn-tvm profile --platform {platform.name}`"
                )
            return cls.load(model_path, platform)
        for files in CostFiles.search_order(platform):
            if files.model.is_file():
                return cls.load(files.model, platform)
            rows = read_measurements(files.measurements)
            if rows:
                return cls.train(platform, rows)
        return cls(platform)

    @classmethod
    def train(cls, platform: Platform, rows: list[Measurement], seed: int = 0) -> CostModel:
        boosters = {}
        rows = [r for r in rows if set(FEATURES) <= r.features.keys()]  # rows from before a feature change cannot
        for target in platform.targets:
            mine = [r for r in rows if r.target == target.name]
            if len(mine) >= 8:
                boosters[target.name] = _fit(mine, seed)
        measured: dict[str, dict[str, float]] = {}
        for r in rows:
            measured.setdefault(r.target, {})[r.function_key] = r.latency_s
        return cls(platform, boosters, measured)

    def predict_function(self, func: relax.Function, target_name: str) -> Prediction:
        """The measurement of this very function where the dataset has one; else the model's prediction."""
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
            log_error = float(trees.predict(x)[0])
            if not abs(log_error) < MAX_LOG_ERROR:  # NaN too
                raise EennError(
                    f"the cost model's trees for {target_name} correct its base model by a factor e^{log_error:.3g}: "
                    f"they are not what `profile` trained: {REMEDY}"
                )
            latency, source = _base(features, coef) * math.exp(log_error), "model"
        return Prediction(latency, latency * target.active_power_w, source)

    def sources(self) -> dict[str, str]:
        return {t.name: "model" if t.name in self.boosters else "analytic" for t in self.platform.targets}

    def save(self, path: Path) -> None:
        boosters = {
            name: SavedBooster(base=coef, trees=json.loads(b.save_raw("json").decode()))
            for name, (coef, b) in self.boosters.items()
        }
        document = CostModelFile(
            platform=self.platform.name, features=FEATURES, measured=self.measured, boosters=boosters
        )
        write_json(document, Path(path))

    @classmethod
    def load(cls, path: Path, platform: Platform) -> CostModel:
        import xgboost

        document = read_json(CostModelFile, Path(path), REMEDY)
        boosters = {}
        for name, saved in document.boosters.items():
            booster = xgboost.Booster()
            try:
                booster.load_model(bytearray(json.dumps(saved.trees).encode()))
            except xgboost.core.XGBoostError:
                raise EennError(f"{path}: boosters.{name}.trees: not a model XGBoost can read: {REMEDY}") from None
            boosters[name] = (saved.base, booster)
        return cls(platform, boosters, document.measured)


class SavedBooster(Document):
    base: list[NonNegative] = Field(min_length=3, max_length=3)  # the base model's coefficients, see `_base`
    trees: dict[str, Any]  # XGBoost's own JSON model of log(seconds / base), read by XGBoost


class CostModelFile(Document):
    """NAME.model.json: what `profile` trained, read by `augment`, `map` and `compile`."""

    format: Literal["eenn-tvm-costmodel"] = "eenn-tvm-costmodel"
    version: Literal[1] = 1
    platform: str
    features: list[str]
    measured: dict[str, dict[str, Positive]]  # target -> function key -> seconds
    boosters: dict[str, SavedBooster]  # per target

    @field_validator("features")
    @classmethod
    def _these_features(cls, features: list[str]) -> list[str]:
        if features != FEATURES:
            raise ValueError("made with other features than this eenn-tvm computes")
        return features


def _fit(rows: list[Measurement], seed: int):
    import xgboost

    coef = _fit_base(rows)
    x = np.array([[r.features[f] for f in FEATURES] for r in rows], np.float32)
    y = np.array([math.log(r.latency_s / _base(r.features, coef)) for r in rows])
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


def cross_validate(
    platform: Platform, rows: list[Measurement], seed: int = 0, held_out: float = 0.25, repeats: int = 5
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


def _validate_once(platform: Platform, rows: list[Measurement], seed: int, held_out: float) -> dict[str, dict]:
    from scipy.stats import spearmanr

    keys = sorted({r.workload for r in rows})
    rng = np.random.default_rng(seed)
    test_keys = (
        set(rng.choice(keys, size=max(1, round(held_out * len(keys))), replace=False).tolist()) if keys else set()
    )
    train = [r for r in rows if r.workload not in test_keys]
    model = CostModel.train(platform, train, seed)
    report = {}
    for target in platform.targets:
        test = [r for r in rows if r.target == target.name and r.workload in test_keys]
        fitted = [r for r in train if r.target == target.name]
        if len(test) < 3 or target.name not in model.boosters:
            continue
        measured = np.array([r.latency_s for r in test])
        predicted = np.array([model.predict(r.features, target.name).latency_s for r in test])
        per_work = float(np.median([r.latency_s / work_of(r.features) for r in fitted]))
        proxy = np.array([per_work * work_of(r.features) for r in test])
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
