"""`eenn-tvm device`: the deployment's microcontroller in QEMU on a stream of inputs, its hand-overs over MQTT."""

from __future__ import annotations

import click

from eenn_tvm.commands.options import broker_from, broker_options, data_option, echo_json, json_option
from eenn_tvm.textui import format_table


@click.command("device")
@click.argument("out", type=click.Path(file_okay=False))
@data_option("Labelled inputs (.npz with x and y), streamed to the board one after the other.")
@click.option("--n", "count", type=click.IntRange(min=1), help="Only the first N inputs.")
@click.option(
    "--deadline-ms",
    default=2000.0,
    show_default=True,
    type=click.FloatRange(min=1),
    help="A hand-over not answered within this is answered by the device's last exit, marked degraded.",
)
@broker_options
@json_option
def command(out, data_path, count, deadline_ms, as_json, **login):
    """Run the device tier of the deployment in OUT (from `eenn-tvm compile`): its firmware in QEMU reads each
    input over its UART and sends back the result, or the hand-over tensor when no exit fires there, which a
    gateway publishes to the next tier (started with `eenn-tvm serve`). Prints per tier what was answered
    where, how fast, and the bits on the link against the plan; --json has every image's record."""
    from eenn_tvm.data import Dataset, load_npz
    from eenn_tvm.tiers.deployment import LiveDeployment
    from eenn_tvm.tiers.device import run_device

    broker = broker_from(**login)
    deployment = LiveDeployment(out)
    model = deployment.plan.model
    data = load_npz(data_path, tuple(model.input_shape[1:]), model.classes)
    if count:
        data = Dataset(data.x[:count], data.y[:count])
    result = run_device(deployment, data, broker, deadline_ms / 1000, log=lambda m: click.echo(m, err=True))
    if as_json:
        echo_json(result)
        return
    _print(model.name, deployment.plan.deployment.platform, result)


def _print(name: str, platform: str, result: dict) -> None:
    click.echo(
        f"{name} live on {platform}, {result['samples']} inputs: accuracy {100 * result['accuracy']:.2f}%, "
        f"exits {result['exit_histogram']}, {result['degraded']} degraded (deadline {result['deadline_ms']:g} ms)"
    )

    def ms(value):
        return "-" if value is None else f"{value:.1f} ms"

    rows = [
        [
            t["tier"],
            str(t["answered"]),
            str(t["degraded"]),
            "-" if t["accuracy"] is None else f"{100 * t['accuracy']:.2f}%",
            ms(t["remote_ms_p50"]),
            ms(t["remote_ms_p99"]),
        ]
        for t in result["tiers"]
    ]
    click.echo(format_table(["tier", "answered", "degraded", "accuracy", "p50 latency", "p99 latency"], rows))
    link = result["link"]
    if link:
        click.echo(
            f"{link['from']} -> {link['to']}: {link['frames']} hand-overs, {link['payload_bits_per_frame']:,.0f} bits "
            f"of tensor each (plan: {link['plan_bits_per_frame']:,}) + a {link['header_bytes_per_frame']}-byte header; "
            f"late answers {result['late_answers']}, rejected {sum(result['rejected'].values())}"
        )
    click.echo(f"device compute {result['device_ms_mean']:.1f} ms per input on average (QEMU instruction counts)")
