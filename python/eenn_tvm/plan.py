"""The plan: the one document the stages hand on (versioned JSON in OUT/plan.json).

`augment` writes it; `run`, `map`, `build` and `compile` read it, and `map` and `compile` add their sections.
Everything a later stage needs is in it or in a file it names relative to its own folder; nothing is kept
anywhere else.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Literal, Protocol

from pydantic import Field, field_validator

from eenn_tvm.documents import Document, FolderDocument
from eenn_tvm.errors import EennError
from eenn_tvm.placement.problem_file import ProblemFile

FORMAT = "eenn-tvm plan"
VERSION = 1


class PlannedExit(Document):
    index: int
    point: str  # ONNX tensor name in the (simplified) model
    binding: str  # Relax binding name
    shape: list[int]
    head: str  # head kind, see heads.HEAD_KINDS
    threshold: float  # a sample leaves when its confidence reaches it; infinity: never
    macs_to_reach: int  # backbone MACs up to the point
    head_macs: int
    head_param_bytes: int
    weights: str  # .npz file of the head's layers, relative to the plan

    @field_validator("threshold")
    @classmethod
    def _a_confidence(cls, threshold: float) -> float:
        if not (0 <= threshold <= 1 or threshold == math.inf):
            raise ValueError("must be a number between 0 and 1 (or Infinity: the exit never fires)")
        return threshold


class PredictedFigures(Document):
    """The searched cost where it is not MACs: a platform's predicted energy or latency per inference."""

    cost: str  # e.g. "energy on device"
    mean: float
    full: float  # the original model
    fraction: float


class Evaluation(Document):
    samples: int
    baseline_accuracy: float  # the original model
    accuracy: float
    mean_macs: float
    mac_fraction: float  # mean MACs per inference / the original model's MACs
    exit_histogram: list[int]  # samples leaving at each exit, then at the end
    predicted: PredictedFigures | None = None


class Baseline(Document):
    """Shallow-Deep-Networks style: exits at fixed MAC fractions, global-pool + linear heads, one threshold.
    Infeasible when no single threshold meets the accuracy floor: then it has no exits and no figures."""

    exits: list[PlannedExit]  # all with the same threshold
    validation: Evaluation | None  # None when infeasible
    feasible: bool = True


class ModelInfo(Document):
    name: str
    input_name: str
    input_shape: list[int]
    output_name: str
    classes: int
    total_macs: int


class SearchRecord(Document):
    """The settings and timings of the search."""

    max_accuracy_drop: float
    confidence: float
    accuracy_margin: dict[str, float]  # "eenn", "baseline": the statistical margin added to the floor
    val_fraction: float | None  # None: thresholds set on calibration_data
    calibration_data: str | None
    seed: int
    cost: str  # "macs", or e.g. "energy on device"
    data: str
    validation_samples: int
    candidate_points: int
    heads_trained: int
    baseline_pareto: list[list[float]]
    seconds: dict[str, float] = Field(default_factory=dict)  # per stage, in the order they ran


class Artifacts(Document):
    """The files `augment` writes beside the plan."""

    model_onnx: str  # the backbone as imported: later stages rebuild the network from it
    host_module: str
    eenn_onnx: str
    baseline_onnx: str | None  # None: the baseline is infeasible
    report: str


class Figures(Document):
    energy_j: float
    expected_latency_s: float
    latency_s: float  # worst case: a sample that takes no early exit


class PlacedFigures(Figures):
    nodes: list[str]  # per segment


class PlacementRecord(Figures):
    """`eenn-tvm map`: the target of each segment, its costs, the baselines, and the problem it solved."""

    platform: str
    objective: str
    cost_sources: dict[str, str]  # per target: "model" (learned) or "analytic"
    segments: dict[str, str]  # segment -> target
    baselines: dict[str, PlacedFigures | None]  # None: infeasible
    original_model: dict[str, Figures]  # the model without exits, run whole on each target it can reach
    problem: ProblemFile


class Transfer(Document):
    shape: list[int]
    bits: int | None  # on the link (None: the input, which arrives on this tier)


class DeployedTier(Document):
    target: str
    kind: Literal["mcu", "host"]
    segments: list[str]
    artifact: str  # relative to the plan: the firmware folder or the host module
    receives: Transfer
    hands_over: Transfer | None  # None: the last tier


class Deployment(Document):
    """`eenn-tvm compile`: per tier, its artefact and what it receives and hands on."""

    platform: str
    platform_file: str  # the platform's TOML, copied beside the plan
    tiers: list[DeployedTier]


class Plan(FolderDocument):
    format: Literal["eenn-tvm plan"] = FORMAT
    model: ModelInfo
    decision: str  # confidence rule, see decision.RULES
    exits: list[PlannedExit]
    validation: Evaluation
    baseline: Baseline
    pareto: list[list[float]]  # [mean MAC fraction, validation accuracy], cheapest first
    search: SearchRecord
    artifacts: Artifacts
    placement: PlacementRecord | None = None
    deployment: Deployment | None = None
    version: Literal[1] = VERSION

    file: ClassVar[str] = "plan.json"
    missing: ClassVar[str] = "no plan.json in it: give the -o folder that `eenn-tvm augment` wrote"
    remedy: ClassVar[str] = "run `eenn-tvm augment` again"

    def artifact(self, folder: str | Path, name: str) -> Path:
        """The file the plan names as `artifacts.name`, in `folder`: one line when it is missing. (Issue 13, phase 2:
        this is where it is also confined to the folder and its hash checked.)"""
        relative = getattr(self.artifacts, name)
        if not (Path(folder) / relative).is_file():
            raise EennError(f"{folder}: its {name} ({relative}) is missing: {self.remedy}")
        return Path(folder) / relative


class ExitMacs(Protocol):
    macs_to_reach: int
    head_macs: int


def macs_by_exit(exits: Sequence[ExitMacs], total_macs: int) -> list[int]:
    """MACs a sample pays when it leaves at exit i (the backbone so far and every head it passed), then at the end."""
    costs, heads = [], 0
    for e in exits:
        heads += e.head_macs
        costs.append(e.macs_to_reach + heads)
    return [*costs, total_macs + heads]
