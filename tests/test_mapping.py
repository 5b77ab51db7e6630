"""Placement across tiers: the solver's optimum equals brute force, the costs follow the problem's definition,
and infeasible problems name the binding constraint."""

import json
import math
import random
import subprocess
import sys
from dataclasses import replace

import pytest
from conftest import REPO
from test_cli import assert_one_line_error, run_cli

from eenn_tvm.placement.problem_file import ProblemFile
from eenn_tvm.placement.solver import Infeasible, brute_force, placement_of, runs, solve

SMALL = REPO / "examples" / "placement" / "small.json"


def random_problem(rng, blocks, nodes):
    chain, left = [], 1.0
    for i in range(blocks):
        exit_ = None
        if i == blocks - 1:
            exit_ = {"exit_fraction": left, "accuracy": rng.uniform(0.8, 0.99)}
        elif rng.random() < 0.6:
            share = rng.uniform(0, left / 2)
            left -= share
            exit_ = {"exit_fraction": share, "accuracy": rng.uniform(0.3, 0.95)}
        chain.append(
            {
                "name": f"b{i}",
                "macs": rng.uniform(1e5, 1e8),
                "param_bytes": rng.randint(1000, 200_000),
                "out_bits": rng.choice([8e3, 3e4, 1.3e5, 5e5]),
                "exit": exit_,
            }
        )
    node_list = [
        {
            "name": f"n{j}",
            "tier": j if j < 3 else rng.randint(0, 2),
            "macs_per_s": 10 ** rng.uniform(8, 13),
            "power_w": 10 ** rng.uniform(-2, 2.6),
            "memory_bytes": 10 ** rng.uniform(4.5, 7),
        }
        for j in range(nodes)
    ]
    links = [
        {
            "from": a["name"],
            "to": b["name"],
            "energy_j_per_bit": rng.uniform(1e-9, 1e-7),
            "seconds_per_bit": 10 ** rng.uniform(-9, -6),
            "latency_s": rng.uniform(0, 0.02),
        }
        for a in node_list
        for b in node_list
        if a is not b and rng.random() < 0.7
    ]
    return ProblemFile.from_json(
        {
            "source": "n0",
            "input_bits": 24576,
            "objective": rng.choice(["energy", "latency"]),
            "choose_terminal_exit": rng.random() < 0.5,
            "constraints": {"max_latency_s": 10 ** rng.uniform(-2, 1), "min_accuracy": rng.uniform(0, 0.9)},
            "blocks": chain,
            "nodes": node_list,
            "links": links,
        }
    ).problem()


def optimum_or_none(solver, problem):
    try:
        return solver(problem)
    except Infeasible:
        return None


@pytest.mark.parametrize("blocks, nodes", [(12, 2), (8, 3), (6, 4), (4, 5), (3, 6)])
def test_the_solver_finds_the_brute_force_optimum_on_random_problems(blocks, nodes):
    rng = random.Random(blocks * 100 + nodes)
    feasible = 0
    for _ in range(25):
        problem = random_problem(rng, rng.randint(1, blocks), nodes)
        exact, best = optimum_or_none(brute_force, problem), optimum_or_none(solve, problem)
        assert (exact is None) == (best is None)
        if exact is not None:
            feasible += 1
            assert math.isclose(best.cost, exact.cost, rel_tol=1e-9, abs_tol=1e-15)
            assert placement_of(problem, best.nodes, best.terminal_exit) is not None
    assert feasible >= 5  # the set exercises feasible problems, not only infeasible ones


def test_expected_energy_follows_the_definition():
    problem = ProblemFile.load(SMALL).problem()
    p = placement_of(problem, ["device", "edge", "edge"])
    # reach: 1, 0.7, 0.3; compute on each node, and the hand-over between b0 and b1 paid by the 70% that reach b1.
    compute = 770_000 / 1.1e13 * 6 + 0.7 * 38e6 / 1.534e14 * 140 + 0.3 * 150e6 / 1.534e14 * 140
    transfer = 0.7 * 131072 * 6.7e-8
    assert math.isclose(p.energy_j, compute + transfer, rel_tol=1e-12)
    worst = 770_000 / 1.1e13 + 131072 * 1e-8 + 0.002 + 38e6 / 1.534e14 + 150e6 / 1.534e14
    assert math.isclose(p.latency_s, worst, rel_tol=1e-12)
    # b2's 1.2 MB of parameters do not fit the device's 256 KiB.
    assert placement_of(problem, ["device", "device", "device"]) is None


def test_map_prints_the_placement_and_the_baselines_as_json():
    code, stdout, stderr = run_cli("map", "--problem", SMALL, "--json")
    assert code == 0, stderr
    result = json.loads(stdout)
    assert {"placement", "terminal_exit", "energy_j", "latency_s", "baselines", "saving"} <= result.keys()
    assert len(result["placement"]) == 3 and result["terminal_exit"] is None
    assert result["baselines"]["all_on_source"] is None  # infeasible: memory
    assert all(s is None or s >= -1e-12 for s in result["saving"].values())


def test_map_prints_each_node_with_the_range_of_blocks_it_runs():
    code, stdout, stderr = run_cli("map", "--problem", SMALL)
    assert code == 0, stderr
    best = solve(ProblemFile.load(SMALL).problem()).nodes
    assert runs(best) in stdout.splitlines()[2]
    assert runs(["device", "device", "edge", "cloud", "cloud"]) == "device[0-1] edge[2] cloud[3-4]"


@pytest.mark.parametrize(
    "change, fragment",
    [
        ({"constraints": {"max_latency_s": 1e-5}}, "latency bound"),
        ({"constraints": {"min_accuracy": 0.99}}, "accuracy floor"),
        ({"nodes": [{"name": "device", "tier": 0, "macs_per_s": 1e13, "power_w": 6, "memory_bytes": 1000}]}, "memory"),
    ],
)
def test_an_infeasible_problem_names_the_binding_constraint(change, fragment, tmp_path):
    doc = json.loads(SMALL.read_text())
    doc.update(change)
    if "nodes" in change:
        doc["links"] = []
    path = tmp_path / "p.json"
    path.write_text(json.dumps(doc))
    assert_one_line_error(["map", "--problem", path], fragment)


@pytest.mark.parametrize(
    "edit, fragment",
    [
        (lambda doc: doc.pop("nodes"), "nodes: missing"),
        (lambda doc: doc["blocks"][0].pop("macs"), "blocks[0].macs: missing"),
        (lambda doc: doc["blocks"][1].update(out_bits="many"), "blocks[1].out_bits"),
        (lambda doc: doc.update(objective="cost"), "objective: expected one of energy, latency, got 'cost'"),
        (lambda doc: doc.update(blocks=[]), "the chain is empty"),
        (lambda doc: doc.update(source="phone"), "source 'phone' is not a node"),
    ],
)
def test_a_malformed_problem_is_one_line_naming_the_field(tmp_path, edit, fragment):
    doc = json.loads(SMALL.read_text())
    edit(doc)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(doc))
    assert_one_line_error(["map", "--problem", path], "p.json: ", fragment)


PAPER_INSTANCES = ("b_alexnet.json", "b_resnet110.json")


def test_the_fin_instances_are_what_their_script_derives_from_branchynet(tmp_path):
    subprocess.run([sys.executable, SMALL.parent / "branchynet.py", "--out", tmp_path], check=True, capture_output=True)
    for name in PAPER_INSTANCES:
        assert (tmp_path / name).read_text() == (SMALL.parent / name).read_text(), name
    alexnet = json.loads((tmp_path / "b_alexnet.json").read_text())["blocks"]
    # conv1: 32 filters of 5x5x3 over 32x32 (padding 2).
    assert alexnet[0]["macs"] == 32 * 3 * 25 * 32 * 32
    assert sum(b["exit"]["exit_fraction"] for b in alexnet if "exit" in b) == pytest.approx(1.0)


@pytest.mark.parametrize("device_memory", [None, 2 << 20, 512 << 10])
def test_the_solver_finds_the_brute_force_optimum_on_b_alexnet(device_memory):
    problem = ProblemFile.load(SMALL.parent / "b_alexnet.json").problem()
    if device_memory:
        problem.nodes[0] = replace(problem.nodes[0], memory_bytes=device_memory)
    best, reference = solve(problem), brute_force(problem)
    assert best.cost == pytest.approx(reference.cost, rel=1e-12)
