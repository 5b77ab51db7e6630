"""The plan: the one document the stages hand on (versioned JSON in OUT/plan.json).

`augment` writes it; `run`, `map`, `build` and `compile` read it, and `map` and `compile` add their sections.
Everything a later stage needs is in it or in a file it names relative to its own folder; nothing is kept
anywhere else.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, ClassVar, Literal, Protocol

from pydantic import AfterValidator, Field, ValidationInfo, field_validator

from eenn_tvm.documents import Document, FolderDocument
from eenn_tvm.placement.problem_file import ProblemFile

FORMAT = "eenn-tvm plan"
VERSION = 1


def _a_confidence(threshold: float) -> float:
    if not (0 <= threshold <= 1 or threshold == math.inf):
        raise ValueError("must be a number between 0 and 1 (or Infinity: the exit never fires)")
    return threshold


Threshold = Annotated[float, AfterValidator(_a_confidence)]  # a sample leaves when its confidence reaches it


class PlannedExit(Document):
    index: int
    point: str  # ONNX tensor name in the (simplified) model
    binding: str  # Relax binding name
    shape: list[int]
    head: str  # head kind, see heads.HEAD_KINDS
    threshold: Threshold  # infinity: never
    macs_to_reach: int  # backbone MACs up to the point
    head_macs: int
    head_param_bytes: int
    weights: str  # .npz file of the head's layers, relative to the plan


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
    """Shallow-Deep-Networks style: exits at fixed MAC fractions, global-pool + linear heads, one threshold."""

    exits: list[PlannedExit]  # all with the same threshold
    validation: Evaluation


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
    baseline_onnx: str
    report: str
    eenn_int8_onnx: str | None = None  # `eenn-tvm quantize` or `augment --int8`: the int8 network (QDQ)
    int8_host_module: str | None = None  # the same made integer by QDQToInteger, built for this host


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


class Int8Network(Document):
    """`eenn-tvm quantize` or `augment --int8`: the int8 form of the early-exit network (artifacts eenn_int8_onnx,
    int8_host_module), its thresholds searched again on its own confidences; figures on the plan's validation split."""

    calibration_samples: int = Field(ge=1)  # from the heads' training split, stratified
    thresholds: list[Threshold]  # one per exit of the plan; infinity: the exit never fires in the int8 network
    model_accuracy: float  # the int8 model alone (no exits)
    validation: Evaluation  # the int8 early-exit network; its baseline_accuracy is the float original's
    float_thresholds_accuracy: float  # the int8 network with the float plan's thresholds, for comparison
    accuracy_margin: float
    meets_tolerance: bool  # False when the int8 model alone loses more than the tolerance
    ops: dict[Literal["integer", "float"], dict[str, int]]  # op kind -> count in the network after QDQToInteger


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
    int8: Int8Network | None = None
    version: Literal[1] = VERSION

    file: ClassVar[str] = "plan.json"
    missing: ClassVar[str] = "no plan.json in it: give the -o folder that `eenn-tvm augment` wrote"
    remedy: ClassVar[str] = "run `eenn-tvm augment` again"

    @field_validator("int8")
    @classmethod
    def _fits_the_plan(cls, int8: Int8Network | None, info: ValidationInfo) -> Int8Network | None:
        exits, artifacts = info.data.get("exits"), info.data.get("artifacts")
        if int8 is None or exits is None or artifacts is None:  # no int8, or the plan's own fields are invalid
            return int8
        if len(int8.thresholds) != len(exits):
            raise ValueError(f"thresholds: one per exit ({len(exits)}), got {len(int8.thresholds)}")
        if artifacts.eenn_int8_onnx is None or artifacts.int8_host_module is None:
            raise ValueError("artifacts.eenn_int8_onnx and artifacts.int8_host_module must name its files")
        return int8


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
