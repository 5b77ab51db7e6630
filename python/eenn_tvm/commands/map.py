"""`eenn-tvm map`: place the blocks of an early-exit network on device, edge and cloud, to the optimum."""

from __future__ import annotations

import click

from ..mapping import Problem, baselines, solve
from ..textui import format_table
from .options import echo_json, json_option


@click.command("map")
@click.option("--problem", "problem_path", required=True, type=click.Path(dir_okay=False),
              help="A placement problem (JSON: blocks, nodes, links, constraints; see the README).")
@json_option
def command(problem_path, as_json):
    """Find the placement of every block that minimises the expected energy (or latency) under the problem's
    latency, accuracy and memory constraints, and compare it with all-on-the-source, all-on-the-last-tier and
    a weighted-sum heuristic. An infeasible problem ends with one line naming the binding constraint."""
    problem = Problem.load(problem_path)
    best = solve(problem)
    others = baselines(problem)
    if as_json:
        echo_json({**best.to_json(), "objective": problem.objective,
                   "baselines": {k: (p.to_json() if p else None) for k, p in others.items()},
                   "saving": {k: _saving(best, p) for k, p in others.items()}})
        return
    unit = "J" if problem.objective == "energy" else "s"
    rows = [["optimum", " ".join(best.nodes), _terminal(best), f"{best.cost:.4g} {unit}", f"{best.latency_s:.4g} s", "-"]]
    for name, p in others.items():
        rows.append([name.replace("_", " "), " ".join(p.nodes) if p else "infeasible", _terminal(p) if p else "-",
                     f"{p.cost:.4g} {unit}" if p else "-", f"{p.latency_s:.4g} s" if p else "-",
                     f"{100 * _saving(best, p):.1f}%" if p else "-"])
    click.echo(format_table(["placement", "node per block", "terminal exit", f"expected {problem.objective}",
                             "worst latency", "optimum saves"], rows))


def _saving(best, other) -> float | None:
    return None if other is None or other.cost == 0 else 1 - best.cost / other.cost


def _terminal(p) -> str:
    return "-" if p.terminal_exit is None else str(p.terminal_exit)
