"""What an inference costs: the interface the search minimises, and its default, MACs.

A cost model (latency or energy per target) plugs in by providing the same three numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .analysis import Analysis, ExitPoint
from .heads import Head


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
