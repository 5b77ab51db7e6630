"""The plan: the one document the stages hand on (versioned JSON in OUT/plan.json).

`augment` writes it; `run`, `map`, `build` and `compile` read it, and `map` and `compile` add their sections.
Everything a later stage needs is in it or in a file it names relative to its own folder; nothing is kept
anywhere else.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, ClassVar, Literal, Protocol

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator

from eenn_tvm.catalog import RULES
from eenn_tvm.documents import (
    Count,
    Document,
    Finite,
    FolderDocument,
    Fraction,
    NonNegative,
    RelativePath,
    Sha256,
    Size,
)
from eenn_tvm.errors import EennError
from eenn_tvm.placement.problem_file import ProblemFile
from eenn_tvm.targets.mcu import MANIFEST_FILE

FORMAT = "eenn-tvm plan"
VERSION = 2  # 2: the SHA-256 of every file the plan names


Point = Annotated[list[Finite], Field(min_length=2, max_length=2)]  # on a Pareto front: [cost, accuracy]


def _a_confidence(threshold: float) -> float:
    if not (0 <= threshold <= 1 or threshold == math.inf):
        raise ValueError("must be a number between 0 and 1 (or Infinity: the exit never fires)")
    return threshold


# A sample leaves when its confidence (in [0, 1] for every rule) reaches it; infinity: never.
Threshold = Annotated[float, Field(allow_inf_nan=True), AfterValidator(_a_confidence)]


class PlannedExit(Document):
    index: Count
    point: str  # ONNX tensor name in the (simplified) model
    binding: str  # Relax binding name
    shape: list[Size] = Field(min_length=2)  # (1, channels, *spatial)
    head: str  # head kind, see heads.HEAD_KINDS (the weights file says which it is)
    # infinity: never (the SDN baseline when only the original model meets the floor)
    threshold: Threshold
    macs_to_reach: Count  # backbone MACs up to the point
    head_macs: Count
    head_param_bytes: Count
    weights: RelativePath  # .npz file of the head's layers


class PredictedFigures(Document):
    """The searched cost where it is not MACs: a platform's predicted energy or latency per inference."""

    cost: str  # e.g. "energy on device"
    mean: NonNegative
    full: NonNegative  # the original model
    fraction: NonNegative


class Evaluation(Document):
    samples: Size
    baseline_accuracy: Fraction  # the original model
    accuracy: Fraction
    mean_macs: NonNegative
    mac_fraction: NonNegative  # mean MACs per inference / the original model's MACs
    exit_histogram: list[Count]  # samples leaving at each exit, then at the end
    predicted: PredictedFigures | None = None

    @field_validator("exit_histogram")
    @classmethod
    def _every_sample_leaves_once(cls, histogram: list[int], info: ValidationInfo) -> list[int]:
        samples = info.data.get("samples")
        if samples is not None and sum(histogram) != samples:
            raise ValueError(f"adds up to {sum(histogram)}, not to samples ({samples})")
        return histogram


class Baseline(Document):
    """Shallow-Deep-Networks style: exits at fixed MAC fractions, global-pool + linear heads, one threshold.
    Infeasible when no single threshold meets the accuracy floor: then it has no exits and no figures."""

    exits: list[PlannedExit]  # all with the same threshold
    validation: Evaluation | None  # None when infeasible
    feasible: bool = True

    @model_validator(mode="after")
    def _figures_when_feasible(self) -> Baseline:
        if self.feasible != (self.validation is not None):
            raise ValueError("its validation figures are there exactly when it is feasible")
        if not self.feasible and self.exits:
            raise ValueError("infeasible, yet with exits")
        return self


class ModelInfo(Document):
    name: str
    input_name: str
    input_shape: list[Size] = Field(min_length=1)
    output_name: str
    classes: Annotated[int, Field(ge=2)]
    total_macs: Size


class SearchRecord(Document):
    """The settings and timings of the search."""

    max_accuracy_drop: Fraction
    confidence: Fraction
    accuracy_margin: dict[str, float]  # "eenn", "baseline": validation accuracy kept above the floor
    # "eenn", "baseline": p-value of the drop test that certified the cascade (eenn_tvm.guarantee; 1: no exit)
    p_value: dict[str, Fraction] = Field(default_factory=dict)
    val_fraction: Fraction | None  # None: thresholds set on calibration_data
    calibration_data: str | None
    calibration_sha256: Sha256 | None  # so that `quantize` is given the very files augment was
    seed: Count
    cost: str  # "macs", or e.g. "energy on device"
    data: str
    data_sha256: Sha256
    validation_samples: Count
    candidate_points: Count
    heads_trained: Count
    baseline_pareto: list[Point]
    seconds: dict[str, NonNegative] = Field(default_factory=dict)  # per stage, in the order they ran


class Artifacts(Document):
    """The files `augment` writes beside the plan."""

    model_onnx: RelativePath  # the backbone as imported: later stages rebuild the network from it
    host_module: RelativePath
    eenn_onnx: RelativePath
    # the same network as one C function over the same kernels (targets/host/static.py); None: an older eenn-tvm
    static_host_module: RelativePath | None = None
    baseline_onnx: RelativePath | None  # None: the baseline is infeasible
    report: RelativePath
    eenn_int8_onnx: RelativePath | None = None  # `eenn-tvm quantize` or `augment --int8`: the int8 network (QDQ)
    int8_host_module: RelativePath | None = None  # the same made integer by QDQToInteger, built for this host


class Figures(Document):
    energy_j: NonNegative
    expected_latency_s: NonNegative
    latency_s: NonNegative  # worst case: a sample that takes no early exit


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
    shape: list[Size]
    bits: Count | None  # on the link (None: the input, which arrives on this tier)


class DeployedTier(Document):
    target: str
    kind: Literal["mcu", "host"]
    segments: list[str]
    artifact: RelativePath  # the firmware folder or the host module
    receives: Transfer
    hands_over: Transfer | None  # None: the last tier

    @property
    def file(self) -> str:
        """The file that stands for the artefact: the host module, or the firmware folder's manifest (which holds
        the hashes of the folder's own files)."""
        return f"{self.artifact}/{MANIFEST_FILE}" if self.kind == "mcu" else self.artifact


class Deployment(Document):
    """`eenn-tvm compile`: per tier, its artefact and what it receives and hands on."""

    platform: str
    platform_file: RelativePath  # the platform's TOML, copied beside the plan
    tiers: list[DeployedTier]


class StreamEvaluation(Document):
    """The stream decisions on stream data, windows in order: MACs count a reused window as the tap and distance."""

    samples: Size
    streams: Size
    baseline_accuracy: Fraction  # the original model
    accuracy: Fraction
    mean_macs: NonNegative
    mac_fraction: NonNegative
    reused: Count  # windows that took the previous answer
    exit_histogram: list[Count]  # of the others: leaving at each exit, then at the end


class StreamDecision(Document):
    """`augment --stream`: decisions that use the stream's past (eenn_tvm.stream), certified like the thresholds."""

    version: Literal[1] = 1
    tap: str  # ONNX tensor whose global-average-pooled features the distance compares
    # int8: the tap is the int8 network's (its codes); features are int32 channel sums, the distance their sum of
    # absolute differences, reuse_below a whole number (eenn_tvm.stream.distance)
    tap_dtype: Literal["float32", "int8"] = "float32"
    tap_shape: list[Size] = Field(min_length=2)
    tap_macs: Count  # backbone MACs up to the tap
    overhead_ops: Count  # pooling the tap and the distance, per window
    reuse_below: NonNegative  # mean absolute difference under which the last computed answer is reused; 0: never
    patience: Annotated[int, Field(ge=1)]
    patient_scale: Fraction  # an exit agreeing with the last `patience` answers leaves at this share of its threshold
    thresholds: list[Threshold]  # per exit of the plan, in stream mode
    p_value: Fraction  # of the drop test that certified the rule (1: none passed; then no reuse and no patience)
    validation: StreamEvaluation


class Int8Network(Document):
    """`eenn-tvm quantize` or `augment --int8`: the int8 form of the early-exit network (artifacts eenn_int8_onnx,
    int8_host_module), its thresholds searched again on its own confidences; figures on the plan's validation split."""

    calibration_samples: Size  # from the heads' training split, stratified
    thresholds: list[Threshold]  # one per exit of the plan; infinity: the exit never fires in the int8 network
    model_accuracy: Fraction  # the int8 model alone (no exits)
    validation: Evaluation  # the int8 early-exit network; its baseline_accuracy is the float original's
    float_thresholds_accuracy: Fraction  # the int8 network with the float plan's thresholds, for comparison
    accuracy_margin: float  # validation accuracy kept above the floor
    meets_tolerance: bool  # False when the int8 model alone loses more than the tolerance
    ops: dict[Literal["integer", "float"], dict[str, Count]]  # op kind -> count in the network after QDQToInteger
    stream: StreamDecision | None = None  # a stream plan's rule certified again on the int8 network's scores and tap


class Plan(FolderDocument):
    format: Literal["eenn-tvm plan"] = FORMAT
    model: ModelInfo
    decision: str  # confidence rule, see catalog.RULES
    exits: list[PlannedExit]
    validation: Evaluation
    baseline: Baseline
    pareto: list[Point]  # [mean MAC fraction, validation accuracy], cheapest first
    search: SearchRecord
    artifacts: Artifacts
    placement: PlacementRecord | None = None
    deployment: Deployment | None = None
    int8: Int8Network | None = None
    stream: StreamDecision | None = None
    hashes: dict[RelativePath, Sha256] = Field(default_factory=dict)  # of every file named above
    version: Literal[2] = VERSION

    file: ClassVar[str] = "plan.json"
    missing: ClassVar[str] = "no plan.json in it: give the -o folder that `eenn-tvm augment` wrote"
    remedy: ClassVar[str] = "run `eenn-tvm augment` again"

    @field_validator("decision")
    @classmethod
    def _a_rule(cls, decision: str) -> str:
        if decision not in RULES:
            raise ValueError(f"expected one of {', '.join(RULES)}, got {decision!r}")
        return decision

    @model_validator(mode="after")
    def _exits_in_order(self) -> Plan:
        for where, exits in (("exits", self.exits), ("baseline.exits", self.baseline.exits)):
            for i, e in enumerate(exits):
                if e.index != i:
                    raise ValueError(f"{where}[{i}].index: expected {i}, got {e.index}")
                if e.macs_to_reach > self.model.total_macs:
                    raise ValueError(f"{where}[{i}].macs_to_reach: more than model.total_macs")
        for where, exits, figures in (
            ("validation", self.exits, self.validation),
            ("baseline.validation", self.baseline.exits, self.baseline.validation),
        ):
            if figures is not None and len(figures.exit_histogram) != len(exits) + 1:
                raise ValueError(f"{where}.exit_histogram: needs one count per exit and one for the end")
        return self

    @model_validator(mode="after")
    def _deployment_covers_the_network(self) -> Plan:
        if self.deployment is None:
            return self
        if self.placement is None:
            raise ValueError("deployment: given without a placement")
        segments = [s for tier in self.deployment.tiers for s in tier.segments]
        if segments != [f"segment_{i}" for i in range(len(self.exits) + 1)]:
            raise ValueError(f"deployment.tiers: run segments {segments}, not every segment once and in order")
        return self

    @field_validator("stream")
    @classmethod
    def _thresholds_per_exit(cls, stream: StreamDecision | None, info: ValidationInfo) -> StreamDecision | None:
        exits = info.data.get("exits")
        if stream is not None and exits is not None and len(stream.thresholds) != len(exits):
            raise ValueError(f"thresholds: one per exit ({len(exits)}), got {len(stream.thresholds)}")
        return stream

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

    def named_files(self) -> list[str]:
        """Every file the plan names, relative to its folder."""
        names = [name for name in self.artifacts.model_dump().values() if name is not None]
        names += [e.weights for e in [*self.exits, *self.baseline.exits]]
        if self.deployment is not None:
            names += [self.deployment.platform_file, *(tier.file for tier in self.deployment.tiers)]
        return list(dict.fromkeys(names))

    def artifact(self, folder: str | Path, name: str) -> Path:
        """The file the plan names as `artifacts.name`, checked (see `named_file`)."""
        relative = getattr(self.artifacts, name)
        if relative is None:
            raise EennError(f"{folder}: has no {name}: {self.remedy}")
        return self.named_file(folder, relative)


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
