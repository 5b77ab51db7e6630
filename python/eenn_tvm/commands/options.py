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
from eenn_tvm.errors import EennError
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


def data_option(help: str):
    """`--data D.npz`, required: labelled samples (x and y)."""
    return click.option("--data", "data_path", required=True, type=click.Path(dir_okay=False), help=help)


def input_shapes_from(values: tuple[str, ...]) -> dict[str, tuple[int, ...]]:
    from eenn_tvm.frontend import parse_input_shape

    return dict(parse_input_shape(v) for v in values)


def echo_json(document) -> None:
    click.echo(json.dumps(document, indent=2))


def savings_table(original_accuracy: float, total_macs: int, rows: list[tuple[str, dict | None]]) -> str:
    """The original model, then per early-exit network (label, figures with accuracy and mean_macs) with the MAC
    reduction; a network without figures is infeasible (a baseline no single threshold makes meet the tolerance)."""
    table = [["original model", f"{100 * original_accuracy:.2f}%", f"{total_macs:,}", "-"]]
    for label, figures in rows:
        if figures is None:
            table.append([label, "infeasible", "-", "-"])
            continue
        accuracy, mean_macs = figures["accuracy"], figures["mean_macs"]
        table.append(
            [label, f"{100 * accuracy:.2f}%", f"{mean_macs:,.0f}", f"{100 * (1 - mean_macs / total_macs):.1f}%"]
        )
    note = "\n(infeasible: no single threshold meets the tolerance)" if any(f is None for _, f in rows) else ""
    return format_table(["", "accuracy", "mean MACs / inference", "MAC reduction"], table) + note


def _stack(*decorators):
    def apply(command):
        for decorator in reversed(decorators):
            command = decorator(command)
        return command

    return apply


def output_options(what: str):
    """-o and --force: the folder a command writes (see `eenn_tvm.outputs`)."""
    return _stack(
        click.option(
            "-o",
            "--output",
            "out",
            required=True,
            type=click.Path(file_okay=False),
            help=f"{what} A new folder, an empty one, or one eenn-tvm wrote: replaced as a whole when done.",
        ),
        click.option(
            "--force",
            is_flag=True,
            help="Replace the -o folder though eenn-tvm did not write it (never the current or home folder, a "
            "parent of either, or a folder holding an input of the command).",
        ),
    )


def augment_inputs(model, data_path, settings, platform_name, cost_model_path) -> list[Path | None]:
    """What augment and compile read, so that their -o is never one of these or a folder holding one."""
    platform = Path(platform_name) if platform_name and Path(platform_name).is_file() else None
    return [Path(model), Path(data_path), settings.calibration_path, settings.cache_dir, platform, cost_model_path]


# What augment and compile share: the data, the search settings, the output folder and the platform cost.
augment_options = _stack(
    data_option("Labelled data (.npz with x and y) to train the exit heads and set the thresholds."),
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
        help="Probability that the expected accuracy drop on new data of the same kind stays within the "
        "tolerance: the thresholds pass a Learn-then-Test check on the validation split at this level.",
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
        type=float,
        help="Share of the data held out (stratified; whole groups or streams) to set the thresholds; the rest "
        "trains the heads. Default: 0.2; 0.5 with --stream (a certificate on streams counts streams, not windows).",
    ),
    click.option(
        "--calibration-data",
        "calibration_path",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Labelled data that sets the thresholds instead of a share of --data (then all of --data trains "
        "the heads); e.g. speakers or patients the heads never saw.",
    ),
    click.option(
        "--seed", default=0, show_default=True, type=int, help="Seed of the split and of head training (0 or more)."
    ),
    click.option(
        "--cache-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=CACHE,
        show_default=True,
        help="Where backbone features are cached between runs.",
    ),
    click.option("--no-cache", is_flag=True, help="Neither read nor write the feature cache."),
    click.option(
        "--batch",
        default=32,
        show_default=True,
        type=int,
        help="Samples per backbone call in the feature pass (1 where the model's batch cannot be made symbolic).",
    ),
    click.option(
        "--cluster",
        metavar="ray|ray://HOST:PORT",
        help="Run the feature pass sharded, and the exit heads' training, on a Ray cluster: `ray` joins the one "
        "RAY_ADDRESS or this machine runs (else starts one here), ray://HOST:PORT a remote one (Ray Client). Needs "
        "pip install 'eenn-tvm[cluster]'.",
    ),
    click.option(
        "--workers",
        type=int,
        help="Local processes training the exit heads (default: one per core; 1: in this process). The heads are "
        "the same whatever the number. With --cluster they run on the cluster instead.",
    ),
    output_options("Folder to write."),
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
    max_accuracy_drop,
    confidence,
    decision,
    val_fraction,
    calibration_path,
    seed,
    cache_dir,
    no_cache,
    batch,
    cluster,
    workers,
    database,
    **modes,
):
    """The augment settings of the shared options and `modes` (Settings' int8, stream), checked."""
    from eenn_tvm.augment import Settings, check_settings

    settings = Settings(
        max_accuracy_drop,
        decision,
        val_fraction,
        seed,
        None if no_cache else cache_dir,
        calibration_path,
        confidence,
        batch=batch,
        cluster=cluster,
        workers=workers,
        database=checked_database(database),
        **modes,
    )
    check_settings(settings)
    return settings


def positive(_ctx, param, value):
    """A click callback: a number that must be > 0 (a budget, a bound), named in the error."""
    if value is not None and not value > 0:
        raise EennError(f"{param.opts[0]} {value:g}: must be > 0")
    return value


# Where the broker of a live deployment is and how to log in (serve, device).
broker_options = _stack(
    click.option(
        "--broker",
        "broker_url",
        required=True,
        metavar="mqtt://HOST:PORT",
        help="The MQTT broker (mqtts:// for TLS). `eenn-tvm broker` starts a Mosquitto on this machine.",
    ),
    click.option("--username", help="Log in to the broker with this user."),
    click.option(
        "--password",
        envvar="EENN_MQTT_PASSWORD",
        help="The user's password (or the environment variable EENN_MQTT_PASSWORD, which `ps` does not show).",
    ),
    click.option("--tls-ca", type=click.Path(dir_okay=False, path_type=Path), help="CA certificate to trust (TLS)."),
    click.option("--tls-cert", type=click.Path(dir_okay=False, path_type=Path), help="Client certificate (TLS)."),
    click.option("--tls-key", type=click.Path(dir_okay=False, path_type=Path), help="Client certificate's key (TLS)."),
)


def broker_from(broker_url, username, password, tls_ca, tls_cert, tls_key):
    from eenn_tvm.tiers.mqtt import Broker

    return Broker.from_url(
        broker_url, username=username, password=password, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key
    )
