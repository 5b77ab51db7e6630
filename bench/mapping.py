"""Benchmark: the exact placement solver on long chains and 8 nodes, and the FIN paper's two networks.

    python bench/mapping.py [--blocks 200] [--nodes 8] [--instances 10] [--json bench/mapping.json]

Instances: a chain of blocks with exits (shares and accuracies drawn at random), 8 nodes on three tiers
(1 device, 3 edge, 4 cloud; FIN-like powers and throughputs with a spread), links device->edge, edge->edge,
edge->cloud and device->cloud, and a latency bound at 100 %, 80 % and 60 % of the worst-case latency of the
unbounded optimum (so that it binds).
Prints the median and worst solve time per tightness (the random test set checks optimality; here speed).

Then the FIN paper's networks (examples/placement/b_*.json, see branchynet.py there): the optimum and what it
saves against the baselines, on the `fin` preset as published and with the device's memory cut to 2 MiB and
512 KiB (a parameter study: the paper's own memory figures are not known here), and, since B-ResNet's exit shares
are an assumption, its optimal placements over a grid of them.
"""

import argparse
import json
import platform
import random
import statistics
import time
from dataclasses import replace
from pathlib import Path

from eenn_tvm.placement.problem_file import ProblemFile
from eenn_tvm.placement.solver import Infeasible, PlacementProblem, baselines, runs, solve
from eenn_tvm.textui import format_table

HERE = Path(__file__).resolve().parent
INSTANCES = HERE.parent / "examples" / "placement"
DEVICE_MEMORY = {"as published (8 GiB assumed)": None, "2 MiB": 2 << 20, "512 KiB": 512 << 10}


def instance(rng: random.Random, blocks: int, nodes: int, tightness: float) -> PlacementProblem:
    chain, left = [], 1.0
    for i in range(blocks):
        share = 0.0
        if i < blocks - 1 and rng.random() < 0.3:
            share = rng.uniform(0, left / 4)
            left -= share
        chain.append(
            {
                "name": f"b{i}",
                "macs": rng.uniform(1e6, 5e8),
                "param_bytes": rng.randint(1e4, 2e6),
                "out_bits": rng.choice([2e4, 1e5, 5e5, 2e6]),
                "exit": {"exit_fraction": share if i < blocks - 1 else left, "accuracy": 0.5 + 0.45 * i / blocks},
            }
        )
    tiers = [0] + [1] * 3 + [2] * (nodes - 4)
    base = [(6, 11e9), (140, 153.4e9), (400, 312e9)]  # FIN's powers; throughputs scaled so compute time matters
    node_list = [
        {
            "name": f"{['device', 'edge', 'cloud'][t]}{k}",
            "tier": t,
            "power_w": base[t][0] * rng.uniform(0.7, 1.3),
            "macs_per_s": base[t][1] * rng.uniform(0.5, 1.5),
            "memory_bytes": [64e6, 8e9, 1e11][t],
        }
        for k, t in enumerate(tiers)
    ]
    links = []
    for a in node_list:
        for b in node_list:
            if a is not b and (
                b["tier"] == a["tier"] + 1 or (a["tier"] == b["tier"] == 1) or (a["tier"], b["tier"]) == (0, 2)
            ):
                links.append(
                    {
                        "from": a["name"],
                        "to": b["name"],
                        "energy_j_per_bit": rng.uniform(3e-8, 7e-8),
                        "seconds_per_bit": rng.uniform(1e-9, 1e-8),
                        "latency_s": rng.uniform(1e-3, 2e-2),
                    }
                )
    problem = ProblemFile.from_json(
        {"source": node_list[0]["name"], "input_bits": 24576, "blocks": chain, "nodes": node_list, "links": links}
    ).problem()
    free = solve(problem)  # the optimum with no latency bound; the bound is then set below its worst latency
    return replace(problem, max_latency_s=free.latency_s * tightness)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=200)
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--json", default=str(HERE / "mapping.json"))
    args = parser.parse_args()
    rows, results = [], []
    for tightness in (1.0, 0.8, 0.6):
        times, feasible = [], 0
        for seed in range(args.instances):
            problem = instance(random.Random(seed), args.blocks, args.nodes, tightness)
            start = time.perf_counter()
            try:
                solve(problem)
                feasible += 1
            except Infeasible:
                pass
            times.append(time.perf_counter() - start)
        results.append(
            {
                "latency_bound": tightness,
                "median_s": statistics.median(times),
                "max_s": max(times),
                "feasible": feasible,
                "instances": args.instances,
            }
        )
        rows.append(
            [
                f"{int(100 * tightness)}% of the unbounded optimum's",
                f"{statistics.median(times):.3f} s",
                f"{max(times):.3f} s",
                f"{feasible}/{args.instances}",
            ]
        )
    print(f"{args.blocks} blocks x {args.nodes} nodes")
    print(format_table(["latency bound", "median solve", "worst solve", "feasible"], rows))
    paper = paper_instances()
    Path(args.json).write_text(
        json.dumps(
            {
                "machine": platform.node(),
                "blocks": args.blocks,
                "nodes": args.nodes,
                "results": results,
                "paper_instances": paper,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.json}")


def paper_instances() -> list[dict]:
    results, rows = [], []
    for path in sorted(INSTANCES.glob("b_*.json")):
        for memory_name, memory in DEVICE_MEMORY.items():
            problem = _device_memory(ProblemFile.load(path).problem(), memory)
            start = time.perf_counter()
            best = solve(problem)
            seconds = time.perf_counter() - start
            others = baselines(problem)
            saving = {k: (None if p is None else 1 - best.cost / p.cost) for k, p in others.items()}
            results.append(
                {
                    "instance": path.name,
                    "device_memory": memory_name,
                    "nodes": best.nodes,
                    "energy_j": best.energy_j,
                    "latency_s": best.latency_s,
                    "solve_s": seconds,
                    "baselines": {k: (None if p is None else p.energy_j) for k, p in others.items()},
                    "saving": saving,
                }
            )
            rows.append(
                [
                    path.stem,
                    memory_name,
                    runs(best.nodes),
                    f"{best.energy_j * 1e6:.1f} uJ",
                    *("infeasible" if v is None else f"{100 * v:.1f}%" for v in saving.values()),
                ]
            )
    print("\nthe FIN paper's networks on the fin preset (device memory varied)")
    print(
        format_table(
            [
                "network",
                "device memory",
                "optimum: nodes [blocks]",
                "expected energy",
                "saves vs all on device",
                "vs all on cloud",
                "vs weighted sum",
            ],
            rows,
        )
    )
    return {"instances": results, "resnet_exit_share_sweep": resnet_exit_share_sweep()}


def resnet_exit_share_sweep() -> dict:
    """B-ResNet's exit shares are an assumption: the optimal placements over a grid of them, per device memory."""
    problem = ProblemFile.load(INSTANCES / "b_resnet110.json").problem()
    exits = [i for i, b in enumerate(problem.blocks) if b.exit_fraction][:2]
    grid = [(a / 10, b / 10) for a in range(10) for b in range(10 - a)]
    sweep = {}
    for memory_name, memory in DEVICE_MEMORY.items():
        placements = set()
        for shares in grid:
            blocks = list(problem.blocks)
            for i, share in zip(exits, shares):
                blocks[i] = replace(blocks[i], exit_fraction=share)
            blocks[-1] = replace(blocks[-1], exit_fraction=1 - sum(shares))
            placements.add(runs(solve(_device_memory(replace(problem, blocks=blocks), memory)).nodes))
        sweep[memory_name] = sorted(placements)
        print(
            f"B-ResNet, device memory {memory_name}: {len(grid)} exit-share pairs (0.1 grid), optimum "
            f"{' or '.join(sorted(placements))}"
        )
    return sweep


def _device_memory(problem: PlacementProblem, memory: int | None) -> PlacementProblem:
    if memory is None:
        return problem
    nodes = [replace(n, memory_bytes=memory) if n.name == problem.source else n for n in problem.nodes]
    return replace(problem, nodes=nodes)


if __name__ == "__main__":
    main()
