"""Options that several subcommands share.

The command modules import only what their options need (click and a few constants); each command imports the
stage it runs (TVM, onnxruntime, XGBoost, ...) when it runs, so that `eenn-tvm --help` is quick.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from eenn_tvm.cache import CACHE
from eenn_tvm.catalog import OBJECTIVES, RULES
from eenn_tvm.textui import format_table

input_shape_option = click.option(
    "--input-shape",
    "input_shapes",
    multiple=True,
    metavar="NAME=1x3x32x32",
    help="Fix the shape of an input whose dims are symbolic (repeatable). A symbolic batch dim alone defaults to 1.",
)

json_option = click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON document on stdout.")

database_option = click.option(
    "--database",
    type=click.Path(file_okay=False),
    help="A tuning database from `eenn-tvm tune`: the host kernels it holds are built with its schedules.",
)


def checked_database(path: str | None) -> Path | None:
    """The database folder, checked before any work: it must be one tuned for this machine's CPU."""
    if path is None:
        return None
    from eenn_tvm.targets.host.target import host_target
    from eenn_tvm.targets.host.tune import open_database

    open_database(path, host_target())
    return Path(path)


def input_shapes_from(values: tuple[str, ...]) -> dict[str, tuple[int, ...]]:
    from eenn_tvm.frontend import parse_input_shape

    return dict(parse_input_shape(v) for v in values)


def echo_json(document) -> None:
    click.echo(json.dumps(document, indent=2))


def savings_table(original_accuracy: float, total_macs: int, rows: list[tuple[str, float, float]]) -> str:
    """The original model, then (label, accuracy, mean MACs) per early-exit network, with the MAC reduction."""
    table = [["original model", f"{100 * original_accuracy:.2f}%", f"{total_macs:,}", "-"]]
    for label, accuracy, mean_macs in rows:
        table.append(
            [label, f"{100 * accuracy:.2f}%", f"{mean_macs:,.0f}", f"{100 * (1 - mean_macs / total_macs):.1f}%"]
        )
    return format_table(["", "accuracy", "mean MACs / inference", "MAC reduction"], table)


def _stack(*decorators):
    def apply(command):
        for decorator in reversed(decorators):
            command = decorator(command)
        return command

    return apply


# What augment and compile share: the data, the search settings, the output folder and the platform cost.
augment_options = _stack(
    click.option(
        "--data",
        "data_path",
        required=True,
        type=click.Path(dir_okay=False),
        help="Labelled data (.npz with x and y) to train the exit heads and set the thresholds.",
    ),
    click.option(
        "--max-accuracy-drop",
        default=0.01,
        show_default=True,
        type=float,
        help="Accuracy the early-exit network may lose on validation, as a fraction (0.01 = 1 point).",
    ),
    click.option(
        "--confidence",
        default=0.9,
        show_default=True,
        type=float,
        help="Probability that the drop on new data of the same kind stays within the tolerance: the "
        "validation floor is raised by the statistical margin of the estimate (0.5: no margin).",
    ),
    click.option(
        "--decision",
        default="maxprob",
        show_default=True,
        type=click.Choice(RULES),
        help="Confidence rule compared with each exit's threshold.",
    ),
    click.option(
        "--val-fraction",
        default=0.2,
        show_default=True,
        type=float,
        help="Share of the data held out (stratified) to set the thresholds; the rest trains the heads.",
    ),
    click.option(
        "--calibration-data",
        "calibration_path",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Labelled data that sets the thresholds instead of a share of --data (then all of --data trains "
        "the heads); e.g. speakers or patients the heads never saw.",
    ),
    click.option("--seed", default=0, show_default=True, type=int, help="Seed of the split and of head training."),
    click.option(
        "--cache-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=CACHE,
        show_default=True,
        help="Where backbone features are cached between runs.",
    ),
    click.option("--no-cache", is_flag=True, help="Neither read nor write the feature cache."),
    click.option(
        "-o",
        "--output",
        "out",
        required=True,
        type=click.Path(file_okay=False),
        help="Folder to write (replaced as a whole when done).",
    ),
    click.option(
        "--platform",
        "platform_name",
        metavar="NAME|FILE.toml",
        help="Minimise the predicted cost on the platform's device tier instead of MACs (see `eenn-tvm profile`).",
    ),
    click.option(
        "--objective",
        default="energy",
        show_default=True,
        type=click.Choice(OBJECTIVES),
        help="With --platform: expected energy or expected latency per inference.",
    ),
    click.option(
        "--cost-model",
        "cost_model_path",
        type=click.Path(dir_okay=False, path_type=Path),
        help="With --platform: the trained cost model. Default: the one `eenn-tvm profile` saved beside the "
        "platform file (or in the cache), else one trained on its measurements, else the analytic model "
        "(MACs / throughput).",
    ),
    database_option,
)


def settings_from(
    max_accuracy_drop, confidence, decision, val_fraction, calibration_path, seed, cache_dir, no_cache, database
):
    """The augment settings of the shared options."""
    from eenn_tvm.augment import Settings

    return Settings(
        max_accuracy_drop,
        decision,
        val_fraction,
        seed,
        None if no_cache else cache_dir,
        calibration_path,
        confidence,
        database=checked_database(database),
    )
