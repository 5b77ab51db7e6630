"""`eenn-tvm compile`: model and data in; firmware, host modules and the plan that ties them together out."""

from __future__ import annotations

import click

from eenn_tvm.commands.options import (
    augment_inputs,
    augment_options,
    echo_json,
    input_shape_option,
    input_shapes_from,
    json_option,
    positive,
    settings_from,
)
from eenn_tvm.errors import EennError
from eenn_tvm.outputs import Output
from eenn_tvm.textui import format_table


@click.command("compile")
@click.argument("model", type=click.Path(dir_okay=False))
@augment_options
@click.option(
    "--max-latency-ms", type=float, callback=positive, help="Bound on the latency of a sample that takes no exit."
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
    max_latency_ms,
    input_shapes,
    as_json,
    **search,
):
    """analyze -> augment -> map -> build in one go: MODEL becomes an early-exit network searched on the
    platform's predicted cost, its segments placed on the platform's targets to the optimum, firmware built
    for the microcontroller tier (OUT/firmware) and a TVM module for each host tier (OUT/TARGET.so).
    Check it with `eenn-tvm run OUT --data TEST.npz`."""
    if not platform_name:
        raise EennError("compile needs --platform (a preset such as m4-edge, or a TOML file)")
    from eenn_tvm.deploy import compile_model

    settings = settings_from(**search)
    inputs = augment_inputs(model, data_path, settings, platform_name, cost_model_path)
    plan = compile_model(
        model,
        data_path,
        platform_name,
        Output.of(out, "compile", inputs, force),
        settings,
        objective,
        None if max_latency_ms is None else max_latency_ms / 1000,
        cost_model_path,
        input_shapes_from(input_shapes),
        log=lambda m: click.echo(m, err=True),
    )
    if as_json:
        echo_json(plan.to_json())
        return
    v = plan.validation
    click.echo(
        f"\n{plan.model.name}: {len(plan.exits)} exits; validation accuracy {100 * v.accuracy:.2f}% "
        f"(original {100 * v.baseline_accuracy:.2f}%), {100 * (1 - v.mac_fraction):.1f}% fewer MACs"
    )
    rows = [
        [
            t.target,
            t.kind,
            " ".join(t.segments),
            t.artifact,
            "-" if t.hands_over is None else f"{'x'.join(map(str, t.hands_over.shape))} ({t.hands_over.bits:,} bits)",
        ]
        for t in plan.deployment.tiers
    ]
    click.echo(format_table(["tier", "kind", "segments", "artefact", "hands over"], rows))
    p = plan.placement
    click.echo(
        f"predicted per inference: {p.energy_j:.4g} J, {1000 * p.expected_latency_s:.3g} ms expected, "
        f"{1000 * p.latency_s:.3g} ms worst case"
    )
    source = p.problem.source
    for target, ref in p.original_model.items():
        click.echo(
            f"  the original model on {target}{'' if target == source else ' (input sent)'}: "
            f"{ref.energy_j:.4g} J, {1000 * ref.latency_s:.3g} ms: "
            f"{100 * (1 - p.energy_j / ref.energy_j):.1f}% energy saved"
        )
    click.echo(f"\nwrote {out}/; next: eenn-tvm run {out} --data TEST.npz")
