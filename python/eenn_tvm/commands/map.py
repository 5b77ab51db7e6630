"""`eenn-tvm map`: place the blocks of an early-exit network on device, edge and cloud, to the optimum."""

from __future__ import annotations

from pathlib import Path

import click

from eenn_tvm.catalog import OBJECTIVES
from eenn_tvm.commands.options import echo_json, json_option, positive
from eenn_tvm.errors import EennError
from eenn_tvm.outputs import check_writable_file
from eenn_tvm.placement.solver import baselines, runs, solve
from eenn_tvm.textui import format_table


@click.command("map")
@click.argument("out", required=False, type=click.Path(file_okay=False))
@click.option(
    "--problem",
    "problem_path",
    type=click.Path(dir_okay=False),
    help="Solve a standalone placement problem (JSON: blocks, nodes, links, constraints; see docs/placement.md).",
)
@click.option("--platform", "platform_name", metavar="NAME|FILE.toml", help="With OUT: the platform to place on.")
@click.option(
    "--objective",
    default="energy",
    show_default=True,
    type=click.Choice(OBJECTIVES),
    help="With OUT: minimise expected energy or expected latency per inference.",
)
@click.option(
    "--max-latency-ms",
    type=float,
    callback=positive,
    help="With OUT: bound on the latency of a sample that takes no exit.",
)
@click.option(
    "--cost-model",
    "cost_model_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="With OUT: the cost model (default: the platform's, see `eenn-tvm augment --help`).",
)
@json_option
def command(out, problem_path, platform_name, objective, max_latency_ms, cost_model_path, as_json):
    """Place each block (segment) where the expected energy (or latency) is least under the latency, accuracy
    and memory constraints, exactly, and compare with all-on-the-source, all-on-the-last-tier and a
    weighted-sum heuristic.

    Either OUT (an `eenn-tvm augment` output) with --platform: the placement is written into OUT/plan.json;
    or --problem P.json. An infeasible problem ends with one line naming the binding constraint."""
    if (out is None) == (problem_path is None):
        raise EennError("give either OUT (an augment output, with --platform) or --problem P.json")
    if problem_path:
        _solve_file(problem_path, as_json)
        return
    if not platform_name:
        raise EennError("map OUT needs --platform (a preset or a TOML file)")
    from eenn_tvm.costmodel.model import CostModel
    from eenn_tvm.network import Network
    from eenn_tvm.placement.segments import place
    from eenn_tvm.plan import Plan
    from eenn_tvm.platform import Platform

    plan = Plan.load(out)
    check_writable_file(Path(out) / "plan.json")
    platform = Platform.load(platform_name)
    placement = place(
        plan,
        Network.from_augment(out, plan),
        platform,
        CostModel.for_platform(platform, cost_model_path),
        objective,
        None if max_latency_ms is None else max_latency_ms / 1000,
    )
    plan.placement = placement
    plan.save(Path(out), log=lambda m: click.echo(m, err=True))
    if as_json:
        echo_json(placement.model_dump(by_alias=True))
        return
    _print_placement(placement)
    click.echo(f"\nwrote the placement into {out}/plan.json")


def _solve_file(problem_path, as_json):
    from eenn_tvm.placement.problem_file import ProblemFile

    problem = ProblemFile.load(problem_path).problem()
    best = solve(problem)
    others = baselines(problem)
    if as_json:
        echo_json(
            {
                **best.to_json(),
                "objective": problem.objective,
                "baselines": {k: (p.to_json() if p else None) for k, p in others.items()},
                "saving": {k: _saving(best.cost, p.cost if p else None) for k, p in others.items()},
            }
        )
        return
    unit = "J" if problem.objective == "energy" else "s"
    rows = [["optimum", runs(best.nodes), _terminal(best), f"{best.cost:.4g} {unit}", f"{best.latency_s:.4g} s", "-"]]
    for name, p in others.items():
        rows.append(
            [
                name.replace("_", " "),
                runs(p.nodes) if p else "infeasible",
                _terminal(p) if p else "-",
                f"{p.cost:.4g} {unit}" if p else "-",
                f"{p.latency_s:.4g} s" if p else "-",
                _percent(_saving(best.cost, p.cost if p else None)),
            ]
        )
    click.echo(
        format_table(
            [
                "placement",
                "nodes [blocks]",
                "terminal exit",
                f"expected {problem.objective}",
                "worst latency",
                "optimum saves",
            ],
            rows,
        )
    )


def _print_placement(placement) -> None:
    key = "energy_j" if placement.objective == "energy" else "expected_latency_s"
    unit = "J" if placement.objective == "energy" else "s"
    click.echo(format_table(["segment", "target"], [[s, t] for s, t in placement.segments.items()]))
    rows = [["optimum", f"{getattr(placement, key):.4g} {unit}", f"{placement.latency_s:.4g} s", "-"]]
    others = {**placement.baselines, **{f"original model on {t}": p for t, p in placement.original_model.items()}}
    for name, p in others.items():
        rows.append(
            [
                name.replace("_", " "),
                f"{getattr(p, key):.4g} {unit}" if p else "infeasible",
                f"{p.latency_s:.4g} s" if p else "-",
                _percent(_saving(getattr(placement, key), getattr(p, key) if p else None)),
            ]
        )
    click.echo()
    click.echo(format_table(["placement", f"expected {placement.objective}", "worst latency", "optimum saves"], rows))
    click.echo(f"costs: {', '.join(f'{t} {s}' for t, s in placement.cost_sources.items())}")


def _saving(best: float, other: float | None) -> float | None:
    return None if other is None or other == 0 else 1 - best / other


def _percent(saving: float | None) -> str:
    return "-" if saving is None else f"{100 * saving:.1f}%"


def _terminal(p) -> str:
    return "-" if p.terminal_exit is None else str(p.terminal_exit)
