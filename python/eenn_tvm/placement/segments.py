"""`map` on an `augment` output: the early-exit network's segments placed on a platform's targets.

Each segment (backbone up to an exit, with that exit's head and decision) becomes a block of the placement
problem: its time on every target from the cost model, its parameters, the activation it hands on (at the
platform's feature width), and the share of samples that leave at its exit on validation. The optimum goes
into the plan, with the problem itself (so it can be solved again with `map --problem`).
"""

from __future__ import annotations

import math
from itertools import pairwise

from tvm import relax

from eenn_tvm.costmodel.features import param_bytes
from eenn_tvm.costmodel.model import CostModel
from eenn_tvm.network import Network
from eenn_tvm.placement.problem_file import ProblemFile
from eenn_tvm.placement.solver import Block, LinkCost, Node, Placement, PlacementProblem, baselines, solve
from eenn_tvm.plan import Figures, PlacedFigures, PlacementRecord, Plan, macs_by_exit
from eenn_tvm.platform import Platform, Target


def placement_problem(
    plan: Plan, network: Network, platform: Platform, cost_model: CostModel, objective: str, max_latency_s: float | None
) -> PlacementProblem:
    shares = [n / plan.validation.samples for n in plan.validation.exit_histogram]
    reach = macs_by_exit(plan.exits, plan.model.total_macs)
    macs = [after - before for before, after in pairwise([0, *reach])]
    blocks = []
    for i, name in enumerate(network.segments):
        func = network.mod[name]
        seconds = {t.name: cost_model.predict_function(func, t.name).latency_s for t in platform.targets}
        blocks.append(
            Block(
                name,
                float(macs[i]),
                param_bytes(func),
                platform.transfer_bits(func.ret_ty.fields[0].shape),
                shares[i] if i < len(plan.exits) else 0.0,
                None,
                seconds,
            )
        )
    nodes, links = platform_nodes(platform)
    return PlacementProblem(
        platform.device.name,
        platform.transfer_bits(plan.model.input_shape),
        blocks,
        nodes,
        links,
        objective,
        max_latency_s=math.inf if max_latency_s is None else max_latency_s,
    )


def platform_nodes(platform: Platform) -> tuple[list[Node], dict[tuple[str, str], LinkCost]]:
    """The platform's targets and links as the placement problem's nodes and links."""
    nodes = [_node(t) for t in platform.targets]
    links = {
        (link.sender, link.receiver): LinkCost(link.energy_j_per_bit, link.seconds_per_bit, link.latency_s)
        for link in platform.links
    }
    return nodes, links


def place(
    plan: Plan, network: Network, platform: Platform, cost_model: CostModel, objective: str, max_latency_s: float | None
) -> PlacementRecord:
    """The placement the plan keeps, with what running the original model whole, without exits, on each target
    would cost (the input sent there first)."""
    problem = placement_problem(plan, network, platform, cost_model, objective, max_latency_s)
    best = solve(problem)
    return PlacementRecord(
        platform=platform.name,
        objective=objective,
        cost_sources=cost_model.sources(),
        segments=dict(zip(network.segments, best.nodes)),
        **_figures(best),
        baselines={
            k: None if p is None else PlacedFigures(nodes=p.nodes, **_figures(p)) for k, p in baselines(problem).items()
        },
        original_model=_original_model(network.backbone, problem, platform, cost_model),
        problem=ProblemFile.of(problem),
    )


def _original_model(
    func: relax.Function, problem: PlacementProblem, platform: Platform, cost_model: CostModel
) -> dict[str, Figures]:
    """Energy and latency of the original model run whole on each target it can reach in one hop."""
    out = {}
    for target in platform.targets:
        seconds = cost_model.predict_function(func, target.name).latency_s
        energy = seconds * target.active_power_w
        if target.name != problem.source:
            link = problem.links.get((problem.source, target.name))
            if link is None:
                continue
            energy += problem.input_bits * link.energy_j_per_bit
            seconds += problem.input_bits * link.seconds_per_bit + link.latency_s
        out[target.name] = Figures(energy_j=energy, expected_latency_s=seconds, latency_s=seconds)
    return out


def _figures(p: Placement) -> dict:
    return {"energy_j": p.energy_j, "expected_latency_s": p.expected_latency_s, "latency_s": p.latency_s}


def _node(t: Target) -> Node:
    """Blocks with a `seconds` table (from the cost model) ignore the throughput; the others divide by it."""
    return Node(t.name, t.tier, t.macs_per_s or 1.0, t.active_power_w, t.memory_bytes, t.flash_bytes)
