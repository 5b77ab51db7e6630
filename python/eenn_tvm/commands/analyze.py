"""`eenn-tvm analyze`: the candidate exit points of a model and what reaching each costs."""

from __future__ import annotations

import click

from eenn_tvm.commands.options import echo_json, input_shape_option, input_shapes_from, json_option
from eenn_tvm.textui import format_table, human_count, shorten


@click.command("analyze")
@click.argument("model", type=click.Path(dir_okay=False))
@input_shape_option
@json_option
def command(model, input_shapes, as_json):
    """List where MODEL (ONNX) can host an early exit: every point where exactly one tensor is live."""
    from eenn_tvm.analysis import analyze
    from eenn_tvm.frontend import import_onnx

    result = analyze(import_onnx(model, input_shapes_from(input_shapes)))
    if as_json:
        echo_json(result.to_json())
        return
    click.echo(
        f"{result.model}: {human_count(result.total_macs)} MACs, "
        f"{human_count(result.total_param_bytes)}B of parameters, "
        f"{len(result.exit_points)} candidate exit points"
    )
    rows = [
        [
            str(i),
            shorten(p.name, 44),
            p.op,
            "x".join(map(str, p.shape)),
            human_count(p.macs_before),
            f"{100 * p.fraction:.1f}%",
            human_count(p.activation_bytes) + "B",
            human_count(p.param_bytes_before) + "B",
        ]
        for i, p in enumerate(result.exit_points)
    ]
    click.echo(
        format_table(["#", "point", "op", "shape", "MACs before", "of total", "activation", "params before"], rows)
    )
    if result.uncounted_ops:
        click.echo(f"note: no MAC rule for {', '.join(result.uncounted_ops)}; counted as 0")
