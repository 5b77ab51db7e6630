"""The placement problem as a JSON document: what `map --problem` reads and what the plan keeps of a placement.

Numbers keep the form they were written in (an int stays an int), so a problem read and written again is the same
file; they are checked as physics asks (finite; throughputs and memories > 0, the rest >= 0; shares and accuracies
at most 1), and names are unique. Fields the solver does not read (a `provenance`, say) are allowed and ignored.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from pydantic import Field, PrivateAttr, field_validator

from eenn_tvm.documents import (
    Compact,
    Count,
    Fraction,
    NonNegative,
    Positive,
    UserDocument,
    read_json,
    unique_names,
    validate,
)
from eenn_tvm.errors import EennError
from eenn_tvm.placement.solver import Block, LinkCost, Node, PlacementProblem

REMEDY = "fix the problem file (its format: docs/placement.md)"


class ExitEntry(Compact):
    exit_fraction: Fraction  # the share of all samples that leave at this block's exit
    accuracy: Fraction | None = None  # of the network truncated there


class BlockEntry(Compact):
    name: str
    macs: NonNegative
    param_bytes: Count = 0
    out_bits: NonNegative
    exit: ExitEntry | None = None
    seconds: dict[str, NonNegative] | None = None  # measured or predicted per node, instead of macs / macs_per_s


class NodeEntry(Compact):
    name: str
    tier: Count
    macs_per_s: Positive
    power_w: NonNegative
    memory_bytes: Positive
    flash_bytes: NonNegative | None = None  # a microcontroller: parameters go to flash


class LinkEntry(Compact):
    sender: str = Field(alias="from")
    receiver: str = Field(alias="to")
    energy_j_per_bit: NonNegative
    seconds_per_bit: NonNegative
    latency_s: NonNegative


class Constraints(Compact):
    min_accuracy: Fraction = 0.0  # of the terminal exit
    max_latency_s: Positive | None = None  # of a sample that takes no early exit; None: no bound


class ProblemFile(UserDocument):
    source: str  # the node where the input arrives
    input_bits: NonNegative = 0
    objective: Literal["energy", "latency"] = "energy"
    choose_terminal_exit: bool = False
    constraints: Constraints = Field(default_factory=Constraints)
    blocks: list[BlockEntry]
    nodes: list[NodeEntry]
    links: list[LinkEntry] = Field(default_factory=list)

    _where: str = PrivateAttr("the problem")

    @field_validator("blocks", "nodes")
    @classmethod
    def _unique(cls, items: list) -> list:
        return unique_names(items)

    @classmethod
    def load(cls, path: str | Path) -> ProblemFile:
        """A bad file is one EennError line naming the file and the field."""
        document = read_json(cls, Path(path), REMEDY)
        document._where = str(path)
        return document

    @classmethod
    def from_json(cls, data: dict, where: str = "the problem") -> ProblemFile:
        document = validate(cls, data, where, REMEDY)
        document._where = where
        return document

    def problem(self) -> PlacementProblem:
        """The solver's problem, checked as a whole (the source and the links name nodes, the shares add up)."""
        blocks = [
            Block(
                b.name,
                b.macs,
                b.param_bytes,
                b.out_bits,
                b.exit.exit_fraction if b.exit else 0.0,
                b.exit.accuracy if b.exit else None,
                b.seconds,
            )
            for b in self.blocks
        ]
        nodes = [Node(n.name, n.tier, n.macs_per_s, n.power_w, n.memory_bytes, n.flash_bytes) for n in self.nodes]
        links = {
            (k.sender, k.receiver): LinkCost(k.energy_j_per_bit, k.seconds_per_bit, k.latency_s) for k in self.links
        }
        bound = self.constraints.max_latency_s
        problem = PlacementProblem(
            self.source,
            self.input_bits,
            blocks,
            nodes,
            links,
            self.objective,
            self.choose_terminal_exit,
            math.inf if bound is None else bound,
            self.constraints.min_accuracy,
        )
        try:
            problem.check()
        except ValueError as err:
            raise EennError(f"{self._where}: {err}: {REMEDY}") from None
        return problem

    @classmethod
    def of(cls, problem: PlacementProblem) -> ProblemFile:
        """The standalone file of a problem: `map --problem` solves it the same way."""
        blocks = [
            BlockEntry(
                name=b.name,
                macs=b.macs,
                param_bytes=b.param_bytes,
                out_bits=b.out_bits,
                exit=ExitEntry(exit_fraction=b.exit_fraction, accuracy=b.accuracy)
                if b.exit_fraction or b.has_exit
                else None,
                seconds=b.seconds,
            )
            for b in problem.blocks
        ]
        return cls(
            source=problem.source,
            input_bits=problem.input_bits,
            objective=problem.objective,
            choose_terminal_exit=problem.choose_terminal_exit,
            constraints=Constraints(
                min_accuracy=problem.min_accuracy,
                max_latency_s=problem.max_latency_s if math.isfinite(problem.max_latency_s) else None,
            ),
            blocks=blocks,
            nodes=[NodeEntry(**vars(n)) for n in problem.nodes],
            links=[LinkEntry(sender=a, receiver=b, **vars(cost)) for (a, b), cost in problem.links.items()],
        )

    def to_json(self) -> dict:
        return self.model_dump(by_alias=True)
