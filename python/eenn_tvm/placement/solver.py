"""The placement solver: the blocks of an early-exit network on the nodes of a platform, to the exact optimum.

The problem (also a standalone JSON file, see `problem_file.ProblemFile`): a chain of blocks, each with MACs, parameter
bytes, the bits it hands on and optionally an exit (the share of all samples that leave there, and the
accuracy of the network truncated there); nodes with a tier, a throughput, a power and a memory; links. A
sample moves along the chain only over links and never to a lower tier; each node runs one contiguous run of
blocks. Expected energy (or latency) is minimised under a worst-case latency bound (the path of a sample that
takes no early exit), an accuracy floor on the terminal exit, and per-node memory (parameters of its blocks
plus its largest activation).

`solve` is a label-setting search over (block, node, start of the node's run, nodes visited) with Pareto
pruning on (cost, worst-case latency): exact, because a label is only dropped when another with the same
future is no worse in both. `brute_force` enumerates every placement, for checking it on small cases.
"""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass, field, replace

from eenn_tvm.catalog import OBJECTIVES
from eenn_tvm.errors import EennError


@dataclass(frozen=True)
class Block:
    name: str
    macs: float
    param_bytes: int
    out_bits: float
    exit_fraction: float = 0.0
    accuracy: float | None = None  # of the network truncated at this block's exit; None: no exit here
    seconds: dict[str, float] | None = None  # measured or predicted time per node, instead of macs / macs_per_s

    def time_on(self, node: Node) -> float | None:
        """Seconds on `node`, or None where it cannot run (a `seconds` table without that node)."""
        if self.seconds is None:
            return self.macs / node.macs_per_s
        return self.seconds.get(node.name)

    @property
    def has_exit(self) -> bool:
        return self.accuracy is not None


@dataclass(frozen=True)
class Node:
    name: str
    tier: int
    macs_per_s: float
    power_w: float
    memory_bytes: float
    flash_bytes: float | None = None  # a microcontroller: parameters go to flash, activations to memory_bytes


@dataclass(frozen=True)
class LinkCost:
    energy_j_per_bit: float
    seconds_per_bit: float
    latency_s: float


@dataclass
class PlacementProblem:
    source: str
    input_bits: float
    blocks: list[Block]
    nodes: list[Node]
    links: dict[tuple[str, str], LinkCost]
    objective: str = "energy"
    choose_terminal_exit: bool = False
    max_latency_s: float = float("inf")
    min_accuracy: float = 0.0

    def check(self) -> None:
        names = {n.name for n in self.nodes}
        if self.source not in names:
            raise ValueError(f"source {self.source!r} is not a node")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if not self.blocks:
            raise ValueError("blocks: the chain is empty")
        for a, b in self.links:
            if a not in names or b not in names:
                raise ValueError(f"link {a} -> {b} names a node that does not exist")
        if sum(b.exit_fraction for b in self.blocks[:-1]) > 1 + 1e-9:
            raise ValueError("exit fractions add up to more than 1")

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def reach(self) -> list[float]:
        """The share of samples that reach each block."""
        shares, left = [], 1.0
        for b in self.blocks:
            shares.append(max(left, 0.0))
            left -= b.exit_fraction
        return shares


@dataclass
class Placement:
    nodes: list[str]  # per block, up to the terminal one
    terminal_exit: int | None  # the block whose exit truncates the network (choose_terminal_exit), else None
    cost: float  # expected energy (J) or expected latency (s), per the objective
    energy_j: float
    expected_latency_s: float
    latency_s: float  # worst case: a sample that takes no early exit
    per_node: dict[str, dict] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "placement": self.nodes,
            "terminal_exit": self.terminal_exit,
            "energy_j": self.energy_j,
            "latency_s": self.latency_s,
            "expected_latency_s": self.expected_latency_s,
            "per_node": self.per_node,
        }


def runs(nodes: list[str]) -> str:
    """A placement for people: each node with the range of blocks it runs, `device[0-7] edge[8-55]`."""
    out, start = [], 0
    for i in range(1, len(nodes) + 1):
        if i == len(nodes) or nodes[i] != nodes[start]:
            out.append(f"{nodes[start]}[{start}-{i - 1}]" if i - 1 > start else f"{nodes[start]}[{start}]")
            start = i
    return " ".join(out)


class Infeasible(EennError):
    pass


def placement_of(problem: PlacementProblem, nodes: list[str], terminal: int | None = None) -> Placement | None:
    """The figures of one placement (blocks 0..len(nodes)-1), or None if it breaks a rule or a constraint."""
    last = len(nodes) - 1
    reach = problem.reach()
    energy = expected = worst = 0.0
    previous = problem.source
    bits = problem.input_bits
    runs: dict[str, list[int]] = {}
    for i, name in enumerate(nodes):
        if name != previous:
            link = problem.links.get((previous, name))
            node_before = problem.node(previous)
            if link is None or problem.node(name).tier < node_before.tier or name in runs:
                return None
            energy += reach[i] * bits * link.energy_j_per_bit
            seconds = bits * link.seconds_per_bit + link.latency_s
            expected += reach[i] * seconds
            worst += seconds
        node, block = problem.node(name), problem.blocks[i]
        seconds = block.time_on(node)
        if seconds is None:
            return None
        energy += reach[i] * seconds * node.power_w
        expected += reach[i] * seconds
        worst += seconds
        runs.setdefault(name, []).append(i)
        previous, bits = name, block.out_bits
    if terminal is not None and not problem.blocks[terminal].has_exit:
        return None
    end = problem.blocks[last]
    if end.has_exit and end.accuracy < problem.min_accuracy - 1e-12:
        return None
    if worst > problem.max_latency_s * (1 + 1e-12):
        return None
    per_node = {}
    for name, blocks in runs.items():
        if not _fits(problem, problem.node(name), blocks):
            return None
        per_node[name] = {
            "blocks": blocks,
            "param_bytes": _params(problem, blocks),
            "activation_bytes": _activation(problem, blocks),
        }
    cost = energy if problem.objective == "energy" else expected
    return Placement(list(nodes), terminal, cost, energy, expected, worst, per_node)


def _params(problem: PlacementProblem, blocks: list[int]) -> int:
    return sum(problem.blocks[i].param_bytes for i in blocks)


def _activation(problem: PlacementProblem, blocks: list[int]) -> float:
    inputs = [problem.input_bits if i == 0 else problem.blocks[i - 1].out_bits for i in blocks]
    return max(inputs + [problem.blocks[i].out_bits for i in blocks]) / 8


def _fits(problem: PlacementProblem, node: Node, blocks: list[int]) -> bool:
    """Parameters plus the largest activation within memory; on a microcontroller parameters in flash instead."""
    return _room(node, _params(problem, blocks), _activation(problem, blocks))


def _lengths(problem: PlacementProblem) -> list[tuple[int, int | None]]:
    """(number of blocks run, terminal exit) for every admissible truncation."""
    count = len(problem.blocks)
    if not problem.choose_terminal_exit:
        return [(count, None)]
    return [(i + 1, i) for i, b in enumerate(problem.blocks) if b.has_exit] or [(count, None)]


def brute_force(problem: PlacementProblem) -> Placement:
    best = None
    names = [n.name for n in problem.nodes]
    for length, terminal in _lengths(problem):
        for nodes in itertools.product(names, repeat=length):
            p = placement_of(problem, list(nodes), terminal)
            if p is not None and (best is None or (p.cost, p.latency_s) < (best.cost, best.latency_s)):
                best = p
    if best is None:
        raise Infeasible(binding_constraint(problem))
    return best


def solve(problem: PlacementProblem) -> Placement:
    """The optimum by label setting (one pass along the chain; every admissible terminal exit is a place where
    a complete placement can end). A first, narrow pass (the cheapest and the fastest label per state only)
    finds a good feasible placement fast; its cost then bounds the exact pass."""
    quick = _label_setting(problem, narrow=True)
    best = _label_setting(problem, upper=quick.cost if quick else math.inf)
    if best is None:
        raise Infeasible(binding_constraint(problem))
    return best


def _label_setting(problem: PlacementProblem, narrow: bool = False, upper: float = math.inf) -> Placement | None:
    return _LabelSetting(problem, narrow, upper).run()


class _LabelSetting:
    """Labels (cost, worst time, start of the current node's run, its largest activation, path) per state (node,
    nodes of its tier already left, run start where memory can bind). Within a state a label is dropped when
    another is no worse in cost and in time (while the latency bound can still bind): the futures open to both
    are the same, so the search stays exact. `narrow` keeps two labels per state: a fast heuristic for a bound."""

    def __init__(self, problem: PlacementProblem, narrow: bool, upper: float):
        self.problem, self.narrow = problem, narrow
        self.ends = {length - 1: terminal for length, terminal in _lengths(problem)}
        self.reach = problem.reach()
        self.nodes = {n.name: n for n in problem.nodes}
        self.params = list(itertools.accumulate((b.param_bytes for b in problem.blocks), initial=0))
        self.slack = _Slack(problem, self.ends)
        self.bound = _CostBound(problem, self.ends, upper)
        largest = max([problem.input_bits] + [b.out_bits for b in problem.blocks]) / 8
        # Where memory can never bind, the run start does not matter for the future: one state for all starts.
        self.roomy = {n.name for n in problem.nodes if _room(n, self.params[-1], largest)}
        self.energy = problem.objective == "energy"

    def run(self) -> Placement | None:
        start = _Front()
        start.add(0.0, 0.0, (0.0, 0.0, -1, 0.0, None))
        labels, best = {(self.problem.source, frozenset(), -1): start}, None
        for i in range(max(self.ends) + 1):
            labels = self._step(i, labels)
            found = self._finished(i, labels)
            if found is not None and (best is None or (found.cost, found.latency_s) < (best.cost, best.latency_s)):
                best = found
        return best

    def _step(self, i: int, labels: dict) -> dict:
        grown: dict[tuple, _Front] = {}
        for (here, left, _), front in labels.items():
            for move in self._moves(i, here, left):
                self._extend(i, front, move, grown)
        return grown

    def _moves(self, i: int, here: str, left: frozenset):
        """(node, moved, state key, hop time, hop cost, compute time, compute cost) for every node block i can run
        on."""
        problem, block = self.problem, self.problem.blocks[i]
        bits = problem.input_bits if i == 0 else problem.blocks[i - 1].out_bits
        for node in problem.nodes:
            seconds = block.time_on(node)
            if seconds is None:
                continue
            step = self.reach[i] * seconds * (node.power_w if self.energy else 1.0)
            if node.name == here:
                yield node, False, (here, left), 0.0, 0.0, seconds, step
                continue
            link = problem.links.get((here, node.name))
            if link is None or node.tier < self.nodes[here].tier or node.name in left:
                continue
            hop_time = bits * link.seconds_per_bit + link.latency_s
            hop_cost = self.reach[i] * (bits * link.energy_j_per_bit if self.energy else hop_time)
            ran = {here} if i > 0 else set()
            key = (node.name, frozenset(n for n in left | ran if self.nodes[n].tier == node.tier))
            yield node, True, key, hop_time, hop_cost, seconds, step

    def _extend(self, i: int, front, move, grown: dict) -> None:
        node, moved, key, hop_time, hop_cost, seconds, step = move
        block = self.problem.blocks[i]
        bits = self.problem.input_bits if i == 0 else self.problem.blocks[i - 1].out_bits
        activation = max(bits, block.out_bits) / 8
        time_limit = self.slack.bound - self.slack.least[i]  # beyond it, no admissible end is in time
        free_below = self.slack.bound - self.slack.most[i]  # below it, every end is in time: time need not count
        cost_limit = self.bound.upper - self.bound.least[i]
        roomy, params = node.name in self.roomy, self.params
        for cost, time, start, largest, path in front:
            t, total = time + hop_time + seconds, cost + hop_cost + step
            if t > time_limit or total > cost_limit:
                continue
            run_start = i if moved or start < 0 else start
            run_largest = activation if run_start == i else max(largest, activation)
            if not roomy and not _room(node, params[i + 1] - params[run_start], run_largest):
                continue
            state = (*key, -1 if roomy else run_start)
            target = grown.get(state)
            if target is None:
                target = grown[state] = _Front(self.narrow)
            target.add(total, 0.0 if t <= free_below else t, (total, t, run_start, run_largest, (node.name, path)))

    def _finished(self, i: int, labels: dict) -> Placement | None:
        """The cheapest complete placement ending at block i, if i is an admissible end."""
        block = self.problem.blocks[i]
        if i not in self.ends or (block.has_exit and block.accuracy < self.problem.min_accuracy - 1e-12):
            return None
        done = [label for front in labels.values() for label in front]
        if not done:
            return None
        cheapest = min(done, key=lambda label: (label[0], label[1]))
        return placement_of(self.problem, _unwind(cheapest[-1]), self.ends[i])


class _CostBound:
    """Branch and bound: a label whose cost plus the least cost still to come exceeds a placement already known
    (the best feasible baseline) cannot lead to the optimum."""

    def __init__(self, problem: PlacementProblem, ends: dict, upper: float):
        energy = problem.objective == "energy"
        reach = problem.reach()
        count = max(ends) + 1
        cheapest = [
            reach[i]
            * min(
                (
                    t * (n.power_w if energy else 1.0)
                    for n in problem.nodes
                    if (t := problem.blocks[i].time_on(n)) is not None
                ),
                default=math.inf,
            )
            for i in range(count)
        ]
        self.least = [
            min((sum(cheapest[i + 1 : e + 1]) for e in ends if e >= i), default=math.inf) for i in range(count)
        ]
        known = [p.cost for p in _simple_placements(problem) if p is not None]
        self.upper = min(known + [upper], default=math.inf) * (1 + 1e-9)


class _Slack:
    """Latency bookkeeping for the label setting: whether a label can still meet the bound, and whether the
    bound can still bind it (if even the slowest completion fits, its time need not be compared)."""

    def __init__(self, problem: PlacementProblem, ends: dict):
        self.bound = problem.max_latency_s * (1 + 1e-12)
        count = max(ends) + 1
        fastest = [
            min((t for t in (b.time_on(n) for n in problem.nodes) if t is not None), default=math.inf)
            for b in problem.blocks[:count]
        ]
        slowest_hop = max(
            (
                problem.blocks[i].out_bits * link.seconds_per_bit + link.latency_s
                for i in range(count)
                for link in problem.links.values()
            ),
            default=0.0,
        )
        slowest = [
            max((t for t in (b.time_on(n) for n in problem.nodes) if t is not None), default=0.0) + slowest_hop
            for b in problem.blocks[:count]
        ]
        # after block i: the least time still needed to reach some admissible end, and the most it can take
        self.least = [
            min((sum(fastest[i + 1 : e + 1]) for e in ends if e >= i), default=math.inf) for i in range(count)
        ]
        self.most = [max((sum(slowest[i + 1 : e + 1]) for e in ends if e >= i), default=0.0) for i in range(count)]


def _room(node: Node, params: float, activation: float) -> bool:
    if node.flash_bytes is not None:
        return params <= node.flash_bytes and activation <= node.memory_bytes
    return params + activation <= node.memory_bytes


def _unwind(path) -> list[str]:
    names = []
    while path is not None:
        names.append(path[0])
        path = path[1]
    return names[::-1]


class _Front:
    """Labels not dominated in (cost, time): kept sorted by cost, so time falls along the list."""

    def __init__(self, narrow: bool = False):
        self.narrow = narrow  # keep the cheapest and the fastest only: a heuristic, for a first bound
        self.costs: list[float] = []
        self.times: list[float] = []
        self.labels: list[tuple] = []

    def add(self, cost: float, time: float, label: tuple) -> None:
        at = bisect.bisect_right(self.costs, cost)
        if at and self.times[at - 1] <= time:
            return  # a cheaper-or-equal label is no slower
        end = at
        while end < len(self.costs) and self.times[end] >= time:
            end += 1  # dearer labels that are no faster
        self.costs[at:end], self.times[at:end], self.labels[at:end] = [cost], [time], [label]
        if self.narrow and len(self.costs) > 2:
            del self.costs[1:-1], self.times[1:-1], self.labels[1:-1]

    def __iter__(self):
        return iter(self.labels)


def binding_constraint(problem: PlacementProblem) -> str:
    """Which constraint, lifted alone, makes the problem feasible: the one to name in the error."""
    relaxations = {
        "the latency bound": {"max_latency_s": float("inf")},
        "the accuracy floor": {"min_accuracy": 0.0},
    }
    for what, change in relaxations.items():
        relaxed = replace(problem, **change)
        if _any_placement(relaxed):
            bound = problem.max_latency_s if "latency" in what else problem.min_accuracy
            return f"no placement meets {what} ({bound:g}); relax it"
    roomy = replace(problem, nodes=[replace(n, memory_bytes=math.inf, flash_bytes=None) for n in problem.nodes])
    if _any_placement(roomy):
        return "no placement fits the nodes' memory; add memory or split the model into smaller blocks"
    return "no placement satisfies the constraints together (or the links do not connect the source to enough nodes)"


def _any_placement(problem: PlacementProblem) -> bool:
    return _label_setting(problem) is not None


def _simple_placements(problem: PlacementProblem) -> list[Placement | None]:
    length, terminal = _lengths(problem)[-1]
    return [placement_of(problem, [n.name] * length, terminal) for n in problem.nodes]


def baselines(problem: PlacementProblem) -> dict[str, Placement | None]:
    """Comparison points: everything on the source, everything on the highest tier it can reach, and a greedy
    heuristic that puts each block where a weighted sum of its normalised energy and latency is least."""
    names = [n.name for n in problem.nodes]
    length, terminal = _lengths(problem)[-1]
    top = max(problem.nodes, key=lambda n: (n.tier, n.macs_per_s)).name
    return {
        "all_on_source": placement_of(problem, [problem.source] * length, terminal),
        "all_on_last_tier": placement_of(problem, [top] * length, terminal),
        "weighted_sum": _weighted_sum(problem, names, length, terminal),
    }


def _weighted_sum(problem: PlacementProblem, names: list[str], length: int, terminal: int | None) -> Placement | None:
    path: list[str] = []
    for i in range(length):
        scored = []
        for name in names:
            p = placement_of(
                replace(problem, max_latency_s=float("inf"), min_accuracy=0.0, blocks=problem.blocks[: i + 1]),
                [*path, name],
            )
            if p is not None:
                scored.append((p.energy_j, p.latency_s, name))
        if not scored:
            return None
        e_max = max(s[0] for s in scored) or 1.0
        t_max = max(s[1] for s in scored) or 1.0
        path.append(min(scored, key=lambda s: 0.5 * s[0] / e_max + 0.5 * s[1] / t_max)[2])
    return placement_of(problem, path, terminal)
