"""What an inference costs: the interface the search minimises; MACs by default, or the cost model's
predicted energy or latency on a target (`augment --platform P --objective energy|latency`)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Protocol

from tvm import relax

from eenn_tvm.analysis import Analysis, ExitPoint
from eenn_tvm.catalog import OBJECTIVES
from eenn_tvm.costmodel.model import CostModel
from eenn_tvm.exit_functions import exit_function
from eenn_tvm.frontend import ImportedModel
from eenn_tvm.heads import Head
from eenn_tvm.passes import SplitAtExits, segment_names


class CostFunction(Protocol):
    name: str

    def reach(self, point: ExitPoint) -> float:
        """Cost of the backbone from the input up to the point."""

    def total(self) -> float:
        """Cost of the whole backbone."""

    def head(self, head: Head, point: ExitPoint) -> float:
        """Cost of evaluating the head (and its decision) at the point."""


@dataclass
class MacCost:
    analysis: Analysis
    name: str = "macs"

    def reach(self, point: ExitPoint) -> float:
        return float(point.macs_before)

    def total(self) -> float:
        return float(self.analysis.total_macs)

    def head(self, head: Head, point: ExitPoint) -> float:
        return float(head.macs(point.shape))


class PredictedCost:
    """Expected energy (J) or latency (s) on one target, predicted by the cost model for every backbone
    segment between consecutive candidate points and for every head with its decision."""

    def __init__(
        self, model: ImportedModel, analysis: Analysis, cost_model: CostModel, target: str, objective: str, rule: str
    ):
        if objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {objective!r}")
        self.name = f"{objective} on {target}"
        self.cost_model, self.target, self.objective, self.rule = cost_model, target, objective, rule
        points = [p.name for p in analysis.exit_points]
        mod = SplitAtExits(points)(model.mod)
        segments = [self._predict(mod[n]) for n in segment_names(len(points) + 1)]
        self._reach = dict(zip(points, itertools.accumulate(segments)))
        self._total = sum(segments)

    def reach(self, point: ExitPoint) -> float:
        return self._reach[point.name]

    def total(self) -> float:
        return self._total

    def head(self, head: Head, point: ExitPoint) -> float:
        return self._predict(exit_function(head, relax.TensorType(point.shape, "float32"), self.rule, 0.5))

    def _predict(self, func: relax.Function) -> float:
        p = self.cost_model.predict_function(func, self.target)
        return p.energy_j if self.objective == "energy" else p.latency_s
