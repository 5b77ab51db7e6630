"""`eenn-tvm run`: the early-exit network on held-out data, sample by sample, against the original model."""

from __future__ import annotations

import click

from ..data import load_npz
from ..evaluate import ENGINES, run
from ..plan import Plan
from .options import echo_json, json_option, savings_table


@click.command("run")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--data", "data_path", required=True, type=click.Path(dir_okay=False),
              help="Held-out labelled data (.npz with x and y), never seen by augment.")
@click.option("--engine", default="tvm", show_default=True, type=click.Choice(ENGINES),
              help="tvm: the built host module; onnxruntime: eenn.onnx with the plan's thresholds applied in numpy.")
@json_option
def command(out, data_path, engine, as_json):
    """Run the early-exit network in OUT (from `eenn-tvm augment`) on DATA, one sample at a time."""
    plan = Plan.load(out)
    shape = plan.model["input_shape"]
    data = load_npz(data_path, tuple(shape[1:]), plan.model["classes"])
    result = run(out, plan, data, engine)
    if as_json:
        echo_json(result.to_json())
        return
    sdn = result.sdn_baseline
    click.echo(f"{plan.model['name']} on {result.samples} samples ({engine}):")
    click.echo(savings_table(
        result.baseline_accuracy,
        result.total_macs,
        [("early-exit network", result.accuracy, result.mean_macs), ("SDN baseline", sdn["accuracy"], sdn["mean_macs"])],
    ))
    labels = [f"exit {e.index}" for e in plan.exits] + ["end"]
    click.echo("exits: " + ", ".join(f"{label} {n} ({100 * n / result.samples:.1f}%)" for label, n in zip(labels, result.exit_histogram)))
