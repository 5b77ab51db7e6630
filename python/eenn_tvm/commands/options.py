"""Options that several subcommands share."""

from __future__ import annotations

import json

import click

from ..frontend import parse_input_shape

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
