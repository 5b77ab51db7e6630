"""Options that several subcommands share."""

from __future__ import annotations

import json

import click

from ..frontend import parse_input_shape
from ..textui import format_table

input_shape_option = click.option(
    "--input-shape",
    "input_shapes",
    multiple=True,
    metavar="NAME=1x3x32x32",
    help="Fix the shape of an input whose dims are symbolic (repeatable). A symbolic batch dim alone defaults to 1.",
)

json_option = click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON document on stdout.")


def input_shapes_from(values: tuple[str, ...]) -> dict[str, tuple[int, ...]]:
    return dict(parse_input_shape(v) for v in values)


def echo_json(document) -> None:
    click.echo(json.dumps(document, indent=2))


def savings_table(original_accuracy: float, total_macs: int, rows: list[tuple[str, float, float]]) -> str:
    """The original model, then (label, accuracy, mean MACs) per early-exit network, with the MAC reduction."""
    table = [["original model", f"{100 * original_accuracy:.2f}%", f"{total_macs:,}", "-"]]
    for label, accuracy, mean_macs in rows:
        table.append([label, f"{100 * accuracy:.2f}%", f"{mean_macs:,.0f}", f"{100 * (1 - mean_macs / total_macs):.1f}%"])
    return format_table(["", "accuracy", "mean MACs / inference", "MAC reduction"], table)
