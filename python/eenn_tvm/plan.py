"""The plan: the one document the stages hand on (versioned JSON in OUT/plan.json).

`augment` writes it; `run` (and later `map`, `build`) read it. Everything a later stage needs is in
it or in a file it names relative to its own folder; nothing is kept anywhere else.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from eenn_tvm.errors import EennError
from eenn_tvm.outputs import write_file_atomically

FORMAT = "eenn-tvm plan"
VERSION = 1


@dataclass
class PlannedExit:
    index: int
    point: str  # ONNX tensor name in the (simplified) model
    binding: str  # Relax binding name
    shape: list[int]
    head: str  # head kind, see heads.HEAD_KINDS
    threshold: float
    macs_to_reach: int  # backbone MACs up to the point
    head_macs: int
    head_param_bytes: int
    weights: str  # .npz file of the head's layers, relative to the plan


@dataclass
class Evaluation:
    samples: int
    baseline_accuracy: float  # the original model
    accuracy: float
    mean_macs: float
    mac_fraction: float  # mean MACs per inference / the original model's MACs
    exit_histogram: list[int]  # samples leaving at each exit, then at the end
    predicted: dict | None = None  # with a platform: {"cost", "mean", "full", "fraction"} of the searched cost


@dataclass
class Baseline:
    """Shallow-Deep-Networks style: exits at fixed MAC fractions, global-pool + linear heads, one threshold.
    Infeasible when no single threshold meets the accuracy floor: then it has no exits and no figures."""

    exits: list[PlannedExit]  # all with the same threshold
    validation: Evaluation | None  # None when infeasible
    feasible: bool = True


@dataclass
class Plan:
    model: dict  # name, onnx (file relative to the plan), input_name, input_shape, classes, total_macs
    decision: str  # confidence rule, see decision.RULES
    exits: list[PlannedExit]
    validation: Evaluation
    baseline: Baseline
    pareto: list[list[float]]  # [mean MAC fraction, validation accuracy], cheapest first
    search: dict  # the settings and timings of the search
    artifacts: dict = field(default_factory=dict)  # what else is in the folder: name -> file
    placement: dict | None = None  # `eenn-tvm map`: the node of each segment, its costs, the problem it solved
    deployment: dict | None = None  # `eenn-tvm compile`: per tier, its artefact and what it hands to the next
    version: int = VERSION

    def to_json(self) -> dict:
        return {"format": FORMAT, **asdict(self)}

    def artifact(self, folder: str | Path, name: str) -> Path:
        """The file the plan names as `artifacts[name]`, in `folder`: one line when it is missing. (Issue 13, phase 2:
        this is where it is also confined to the folder and its hash checked.)"""
        relative = self.artifacts.get(name)
        if not isinstance(relative, str) or not (Path(folder) / relative).is_file():
            raise EennError(f"{folder}: its {name} ({relative}) is missing: run `eenn-tvm augment` again")
        return Path(folder) / relative

    def save(self, folder: Path, log: Callable[[str], None] = lambda _: None) -> None:
        """Written beside and renamed over plan.json: a reader never sees half a plan."""
        write_file_atomically(Path(folder) / "plan.json", json.dumps(self.to_json(), indent=2) + "\n", log)

    @classmethod
    def load(cls, folder: str | Path) -> Plan:
        path = Path(folder) / "plan.json"
        if not path.is_file():
            raise EennError(f"{folder}: no plan.json in it: give the -o folder that `eenn-tvm augment` wrote")
        again = "run `eenn-tvm augment` again"
        doc = read_document(path, FORMAT, VERSION, again)
        doc.pop("format")
        try:
            plan = cls(
                **{
                    **doc,
                    "exits": [PlannedExit(**e) for e in doc["exits"]],
                    "validation": Evaluation(**doc["validation"]),
                    "baseline": Baseline(
                        exits=[PlannedExit(**e) for e in doc["baseline"]["exits"]],
                        validation=Evaluation(**doc["baseline"]["validation"])
                        if doc["baseline"]["validation"]
                        else None,
                        feasible=doc["baseline"].get("feasible", True),
                    ),
                }
            )
        except (KeyError, TypeError, AttributeError) as err:
            raise EennError(f"{path}: not a whole plan ({_described(err)}): {again}") from None
        _check_thresholds(path, plan, again)
        return plan


def read_document(path: Path, format_name: str, version: int, again: str) -> dict:
    """A JSON object eenn-tvm wrote, of this format and version; anything else is one line ending with `again`."""
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise EennError(f"{path}: not valid JSON ({err}): {again}") from None
    if not isinstance(doc, dict) or doc.get("format") != format_name or doc.get("version") != version:
        raise EennError(f"{path}: not a version-{version} {format_name} document: {again}")
    return doc


def _check_thresholds(path: Path, plan: Plan, again: str) -> None:
    """Interim, until the plan has a schema (issue 13, phase 2): a threshold is a confidence in [0, 1]; null or 5.0
    would build an exit that never fires, a string would not build."""
    for where, exits in (("exits", plan.exits), ("baseline.exits", plan.baseline.exits)):
        for i, e in enumerate(exits):
            t = e.threshold
            if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t <= 1:
                raise EennError(f"{path}: {where}[{i}].threshold: {t!r} is not a confidence in [0, 1]: {again}")


def _described(err: Exception) -> str:
    return f"missing field {err.args[0]!r}" if isinstance(err, KeyError) else str(err)
