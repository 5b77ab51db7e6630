"""`eenn-tvm augment`: train exits, choose them and their thresholds, build the early-exit network."""

from __future__ import annotations

import click

from eenn_tvm.commands.options import (
    augment_inputs,
    augment_options,
    echo_json,
    input_shape_option,
    input_shapes_from,
    json_option,
    savings_table,
    settings_from,
)
from eenn_tvm.commands.quantize import show_int8, show_stream
from eenn_tvm.outputs import Output
from eenn_tvm.textui import format_table


@click.command("augment")
@click.argument("model", type=click.Path(dir_okay=False))
@augment_options
@click.option(
    "--int8",
    is_flag=True,
    help="Also quantise the early-exit network to int8 and search its thresholds again on its own confidences "
    "(as `eenn-tvm quantize OUT` does).",
)
@click.option(
    "--stream",
    is_flag=True,
    help="DATA are windows of recordings (arrays stream and order): also decisions that use the stream's past, "
    "reusing the last answer when the input barely changed and letting an exit that agrees with the last answers "
    "leave sooner, certified on whole streams (docs/streams.md).",
)
@input_shape_option
@json_option
def command(
    model,
    data_path,
    out,
    force,
    platform_name,
    objective,
    cost_model_path,
    int8,
    stream,
    input_shapes,
    as_json,
    **search,
):
    """Turn MODEL (a trained ONNX classifier) into an early-exit network within an accuracy tolerance.

    Writes OUT/plan.json, OUT/eenn.onnx (the model with exit outputs exit_0, exit_1, ...), OUT/heads/,
    the TVM host module with the exit logic compiled in, and OUT/report.md. Figures are on the validation
    split; measure held-out figures with `eenn-tvm run OUT --data TEST.npz`.
    """
    from eenn_tvm.augment import augment

    settings = settings_from(**search, int8=int8, stream=stream)
    output = Output.of(
        out, "augment", augment_inputs(model, data_path, settings, platform_name, cost_model_path), force
    )
    output.check(_log)
    cost = _predicted_cost(platform_name, objective, cost_model_path, settings.decision) if platform_name else None
    plan = augment(model, data_path, output, settings, input_shapes_from(input_shapes), cost=cost, log=_log)
    if as_json:
        echo_json(plan.to_json())
        return
    v, b = plan.validation, plan.baseline.validation
    click.echo(
        f"\n{plan.model.name}: {len(plan.exits)} exits chosen (decision: {plan.decision}); "
        f"on {v.samples} validation samples:"
    )
    click.echo(
        savings_table(
            v.baseline_accuracy,
            plan.model.total_macs,
            [("eenn-tvm", v.model_dump()), ("SDN baseline", b and b.model_dump())],
        )
    )
    if v.predicted:
        sdn = "infeasible" if b is None else f"{100 * (1 - b.predicted.fraction):.1f}% less"
        click.echo(
            f"predicted {v.predicted.cost} per inference: {v.predicted.mean:.4g} against "
            f"{v.predicted.full:.4g} for the original model ({100 * (1 - v.predicted.fraction):.1f}% less; "
            f"SDN baseline {sdn})"
        )
    click.echo()
    click.echo(
        format_table(
            ["exit", "point", "head", "threshold", "MACs to reach", "leave here"],
            [
                [str(e.index), e.point, e.head, f"{e.threshold:.4f}", f"{e.macs_to_reach:,}", str(n)]
                for e, n in zip(plan.exits, v.exit_histogram)
            ],
        )
    )
    if plan.stream:
        show_stream(plan.stream)
    if plan.int8:
        show_int8(plan, out)
        return
    click.echo(f"\nwrote {out}/ (plan.json, eenn.onnx, report.md); next: eenn-tvm run {out} --data TEST.npz")


def _predicted_cost(platform_name, objective, cost_model_path, decision):
    from eenn_tvm.costmodel.model import CostModel
    from eenn_tvm.costs import PredictedCost
    from eenn_tvm.platform import Platform

    platform = Platform.load(platform_name)
    cost_model = CostModel.for_platform(platform, cost_model_path)
    device = platform.device.name

    def cost(model, analysis):  # called once the data is checked: its errors come before any progress line
        _log(f"cost: {objective} on {device} of {platform.name} ({cost_model.sources()[device]} costs)")
        return PredictedCost(model, analysis, cost_model, device, objective, decision)

    return cost


def _log(message: str) -> None:
    click.echo(message, err=True)
