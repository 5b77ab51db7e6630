"""`eenn-tvm run`: the early-exit network on held-out data, sample by sample, against the original model."""

from __future__ import annotations

from pathlib import Path

import click

from eenn_tvm.catalog import DTYPES, ENGINES
from eenn_tvm.commands.options import (
    checked_database,
    data_option,
    database_option,
    echo_json,
    json_option,
    savings_table,
)
from eenn_tvm.errors import EennError
from eenn_tvm.textui import format_table


@click.command("run")
@click.argument("out", type=click.Path(file_okay=False))
@data_option("Held-out labelled data (.npz with x and y), never seen by augment.")
@click.option(
    "--engine",
    default="tvm",
    show_default=True,
    type=click.Choice(ENGINES),
    help="tvm: the built host module; onnxruntime: eenn.onnx with the plan's thresholds applied in numpy.",
)
@click.option(
    "--tiers/--no-tiers",
    default=True,
    show_default=True,
    help="For a `compile` output: run the deployment tier by tier (the microcontroller in QEMU).",
)
@click.option(
    "--dtype",
    default="float32",
    show_default=True,
    type=click.Choice(DTYPES),
    help="int8: also the int8 network (from `eenn-tvm quantize`), in onnxruntime and as TVM's integer host module.",
)
@click.option("--n", "count", type=click.IntRange(min=1), help="Run only the first N samples.")
@click.option(
    "--batch",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Samples per call (tvm): the network is built for batches of B; samples that leave at an exit are "
    "dropped and the rest go on, as on a server. Reports the throughput.",
)
@database_option
@json_option
def command(out, data_path, engine, tiers, dtype, count, batch, database, as_json):
    """Run the early-exit network in OUT (from `eenn-tvm augment` or `compile`) on DATA, one sample at a time
    (or in batches: --batch)."""
    from eenn_tvm.data import load_npz
    from eenn_tvm.inference import run
    from eenn_tvm.plan import Plan

    plan = Plan.load(out)
    if (batch > 1 or database) and engine != "tvm":
        raise EennError("--batch and --database apply to --engine tvm")
    if (batch > 1 or database) and plan.deployment and tiers:
        raise EennError("--batch and --database run the host module: add --no-tiers for a compile output")
    database = checked_database(database)
    plan.check_named_files(out)  # every file, before the first progress line
    data = load_npz(data_path, tuple(plan.model.input_shape[1:]), plan.model.classes)
    if count:
        data = data.head(count)
    if plan.deployment and tiers:
        _run_tiers(out, plan, data, as_json)
        return
    result = run(out, plan, data, engine, dtype, batch, database)
    if as_json:
        echo_json(result.to_json())
        return
    click.echo(f"{plan.model.name} on {result.samples} samples ({engine}):")
    rows = [("early-exit network", result.to_json())]
    if result.int8:
        q = result.int8
        rows += [
            ("int8 model (onnxruntime)", {"accuracy": q["model_accuracy"], "mean_macs": result.total_macs}),
            ("int8 early-exit network (TVM)", q["tvm"]),
            ("int8 early-exit network (onnxruntime)", q["onnxruntime"]),
        ]
    rows.append(("SDN baseline", result.sdn_baseline))
    int8_stream = result.int8["stream"] if result.int8 else None
    if result.stream:
        rows.append((f"stream decisions ({result.stream['streams']} streams in order)", result.stream))
    if int8_stream:
        rows.append((f"int8 stream decisions ({int8_stream['streams']} streams, onnxruntime)", int8_stream))
    click.echo(savings_table(result.baseline_accuracy, result.total_macs, rows))
    labels = [f"exit {e.index}" for e in plan.exits] + ["end"]
    click.echo(
        "exits: "
        + ", ".join(f"{label} {n} ({100 * n / result.samples:.1f}%)" for label, n in zip(labels, result.exit_histogram))
    )
    if result.stream:
        _show_stream("stream decisions", result.stream, labels, "the original model")
        agreement = result.stream["static_host_agreement"]
        if agreement is not None:
            click.echo(f"the static host module's compiled rule takes the same decision on {100 * agreement:.2f}%")
    if int8_stream:
        _show_stream("int8 stream decisions", int8_stream, labels, "the int8 model")
    if result.int8:
        histogram = result.int8["tvm"]["exit_histogram"]
        click.echo("int8 exits (TVM): " + ", ".join(f"{label} {n}" for label, n in zip(labels, histogram)))
        click.echo(
            f"the int8 TVM module and onnxruntime agree on class and exit for "
            f"{100 * result.int8['agreement']:.2f}% of the samples"
        )
    click.echo(
        f"inference ({result.runner}): {result.samples_per_second:,.0f} samples/s, "
        f"{1e3 * result.inference_seconds / result.samples:.3f} ms per sample"
    )


def _show_stream(title: str, stream: dict, labels: list[str], baseline: str) -> None:
    click.echo(
        f"{title}: {stream['reused']} windows reused the last answer; the others left at "
        + ", ".join(f"{label} {n}" for label, n in zip(labels, stream["exit_histogram"]))
        + f"; accuracy drop {100 * stream['accuracy_drop']:.2f} points against {baseline}"
    )


def _run_tiers(out, plan, data, as_json) -> None:
    from eenn_tvm.deploy import run_tiers

    result = run_tiers(Path(out), plan, data, log=lambda m: click.echo(m, err=True))
    if as_json:
        echo_json(result)
        return
    click.echo(
        f"{plan.model.name} on {result['samples']} samples across {plan.deployment.platform}: "
        f"accuracy {100 * result['accuracy']:.2f}%; exits {result['exit_histogram']}"
    )
    click.echo(
        format_table(
            ["tier", "samples in", "decided here", "compute / sample", "energy / sample", "bits received"],
            [
                [
                    t["target"],
                    str(t["samples_in"]),
                    str(t["samples_decided"]),
                    f"{1000 * t['seconds_mean']:.3g} ms",
                    f"{t['energy_j_mean']:.3g} J",
                    f"{t['received_bits_mean']:,.0f}",
                ]
                for t in result["tiers"]
            ],
        )
    )
    m, p = result["measured"], result["predicted"]
    click.echo(
        f"per inference, measured (predicted): energy {m['energy_j']:.4g} J ({p['energy_j']:.4g} J), "
        f"expected latency {1000 * m['expected_latency_s']:.3g} ms ({1000 * p['expected_latency_s']:.3g} ms)"
    )
