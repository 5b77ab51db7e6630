"""`eenn-tvm augment`: train exits, choose them and their thresholds, build the early-exit network."""

from __future__ import annotations

from pathlib import Path

import click

from ..augment import Settings, augment
from ..costmodel import CostModel
from ..costs import OBJECTIVES, PredictedCost
from ..decision import RULES
from ..features import DEFAULT_CACHE
from ..platform import load_platform
from ..textui import format_table
from .options import echo_json, input_shape_option, input_shapes_from, json_option, savings_table


@click.command("augment")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--data", "data_path", required=True, type=click.Path(dir_okay=False),
              help="Labelled data (.npz with x and y) to train the exit heads and set the thresholds.")
@click.option("--max-accuracy-drop", default=0.01, show_default=True, type=float,
              help="Accuracy the early-exit network may lose on validation, as a fraction (0.01 = 1 point).")
@click.option("--decision", default="maxprob", show_default=True, type=click.Choice(RULES),
              help="Confidence rule compared with each exit's threshold.")
@click.option("--val-fraction", default=0.2, show_default=True, type=float,
              help="Share of the data held out (stratified) to set the thresholds; the rest trains the heads.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the split and of head training.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_CACHE, show_default=True,
              help="Where backbone features are cached between runs.")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the feature cache.")
@click.option("-o", "--output", "out", required=True, type=click.Path(file_okay=False),
              help="Folder to write (replaced as a whole when done).")
@click.option("--platform", "platform_name", metavar="NAME|FILE.toml",
              help="Minimise the predicted cost on the platform's device tier instead of MACs (see `eenn-tvm profile`).")
@click.option("--objective", default="energy", show_default=True, type=click.Choice(OBJECTIVES),
              help="With --platform: expected energy or expected latency per inference.")
@click.option("--cost-model", "cost_model_path", type=click.Path(dir_okay=False, path_type=Path),
              help="With --platform: the trained cost model. Default: costs/PLATFORM.model.json, else one trained "
                   "on costs/PLATFORM.jsonl, else the analytic model (MACs / throughput).")
@input_shape_option
@json_option
def command(model, data_path, max_accuracy_drop, decision, val_fraction, seed, cache_dir, no_cache, out,
            platform_name, objective, cost_model_path, input_shapes, as_json):
    """Turn MODEL (a trained ONNX classifier) into an early-exit network within an accuracy tolerance.

    Writes OUT/plan.json, OUT/eenn.onnx (the model with exit outputs exit_0, exit_1, ...), OUT/heads/,
    the TVM host module with the exit logic compiled in, and OUT/report.md. Figures are on the validation
    split; measure held-out figures with `eenn-tvm run OUT --data TEST.npz`.
    """
    settings = Settings(max_accuracy_drop, decision, val_fraction, seed, None if no_cache else cache_dir)
    cost = _predicted_cost(platform_name, objective, cost_model_path, decision) if platform_name else None
    plan = augment(model, data_path, out, settings, input_shapes_from(input_shapes), cost=cost, log=_log)
    if as_json:
        echo_json(plan.to_json())
        return
    v, b = plan.validation, plan.baseline.validation
    click.echo(f"\n{plan.model['name']}: {len(plan.exits)} exits chosen (decision: {plan.decision}); on {v.samples} validation samples:")
    click.echo(savings_table(
        v.baseline_accuracy,
        plan.model["total_macs"],
        [("eenn-tvm", v.accuracy, v.mean_macs), ("SDN baseline", b.accuracy, b.mean_macs)],
    ))
    if v.predicted:
        click.echo(f"predicted {v.predicted['cost']} per inference: {v.predicted['mean']:.4g} against "
                   f"{v.predicted['full']:.4g} for the original model ({100 * (1 - v.predicted['fraction']):.1f}% less; "
                   f"SDN baseline {100 * (1 - b.predicted['fraction']):.1f}% less)")
    click.echo()
    click.echo(format_table(
        ["exit", "point", "head", "threshold", "MACs to reach", "leave here"],
        [[str(e.index), e.point, e.head, f"{e.threshold:.4f}", f"{e.macs_to_reach:,}", str(n)]
         for e, n in zip(plan.exits, v.exit_histogram)],
    ))
    click.echo(f"\nwrote {out}/ (plan.json, eenn.onnx, report.md); next: eenn-tvm run {out} --data TEST.npz")


def _predicted_cost(platform_name, objective, cost_model_path, decision):
    platform = load_platform(platform_name)
    cost_model = CostModel.for_platform(platform, cost_model_path)
    device = platform.device.name
    _log(f"cost: {objective} on {device} of {platform.name} ({cost_model.sources()[device]} costs)")
    return lambda model, analysis: PredictedCost(model, analysis, cost_model, device, objective, decision)


def _log(message: str) -> None:
    click.echo(message, err=True)
