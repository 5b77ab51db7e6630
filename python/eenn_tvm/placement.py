"""`map` on an `augment` output: the early-exit network's segments placed on a platform's targets.

Each segment (backbone up to an exit, with that exit's head and decision) becomes a block of the placement
problem: its time on every target from the cost model, its parameters, the activation it hands on (at the
platform's feature width), and the share of samples that leave at its exit on validation. The optimum goes
into the plan, with the problem itself (so it can be solved again with `map --problem`).
"""

from __future__ import annotations

import math

from tvm import relax

from eenn_tvm.costmodel import CostModel, param_bytes
from eenn_tvm.firmware import Network
from eenn_tvm.mapping import Block, Link, Node, Placement, Problem, baselines, solve
from eenn_tvm.plan import Plan
from eenn_tvm.platform import Platform, Target


def placement_problem(
    plan: Plan, network: Network, platform: Platform, cost_model: CostModel, objective: str, max_latency_s: float | None
) -> Problem:
    shares = [n / plan.validation.samples for n in plan.validation.exit_histogram]
    blocks = []
    for i, name in enumerate(network.segments):
        func = network.mod[name]
        seconds = {t.name: cost_model.predict_function(func, t.name).latency_s for t in platform.targets}
        blocks.append(
            Block(
                name,
                _macs(plan, i),
                param_bytes(func),
                platform.transfer_bits(func.ret_ty.fields[0].shape),
                shares[i] if i < len(plan.exits) else 0.0,
                None,
                seconds,
            )
        )
    nodes, links = platform_nodes(platform)
    input_bits = platform.transfer_bits(plan.model["input_shape"])
    return Problem(
        platform.device.name,
        input_bits,
        blocks,
        nodes,
        links,
        objective,
        False,
        math.inf if max_latency_s is None else max_latency_s,
        0.0,
    )


def platform_nodes(platform: Platform) -> tuple[list[Node], dict[tuple[str, str], Link]]:
    """The platform's targets and links as the placement problem's nodes and links."""
    nodes = [_node(t) for t in platform.targets]
    links = {
        (link.source, link.target): Link(link.energy_j_per_bit, link.seconds_per_bit, link.latency_s)
        for link in platform.links
    }
    return nodes, links


def place(
    plan: Plan, network: Network, platform: Platform, cost_model: CostModel, objective: str, max_latency_s: float | None
) -> dict:
    """The placement document the plan keeps, with what running the original model whole, without exits, on
    each target would cost (the input sent there first)."""
    problem = placement_problem(plan, network, platform, cost_model, objective, max_latency_s)
    best = solve(problem)
    others = baselines(problem)
    return {
        "platform": platform.name,
        "objective": objective,
        "cost_sources": cost_model.sources(),
        "segments": dict(zip(network.segments, best.nodes)),
        **_figures(best),
        "baselines": {k: (None if p is None else {"nodes": p.nodes, **_figures(p)}) for k, p in others.items()},
        "original_model": _original_model(network.backbone, problem, platform, cost_model),
        "problem": problem.to_json(),
    }


def _original_model(func: relax.Function, problem: Problem, platform: Platform, cost_model: CostModel) -> dict:
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
        out[target.name] = {"energy_j": energy, "expected_latency_s": seconds, "latency_s": seconds}
    return out


def _figures(p: Placement) -> dict:
    return {"energy_j": p.energy_j, "expected_latency_s": p.expected_latency_s, "latency_s": p.latency_s}


def _node(t: Target) -> Node:
    """Blocks with a `seconds` table (from the cost model) ignore the throughput; the others divide by it."""
    return Node(t.name, t.tier, t.macs_per_s or 1.0, t.active_power_w, t.memory_bytes, t.flash_bytes)


def _macs(plan: Plan, index: int) -> float:
    reach = [e.macs_to_reach for e in plan.exits] + [plan.model["total_macs"]]
    before = reach[index - 1] if index else 0
    head = plan.exits[index].head_macs if index < len(plan.exits) else 0
    return float(reach[index] - before + head)
