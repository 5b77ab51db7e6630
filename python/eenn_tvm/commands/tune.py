"""`eenn-tvm tune`: MetaSchedule over the host kernels of a model or an early-exit network, into a database folder
that `augment`, `compile` and `run` apply with `--database`."""

from __future__ import annotations

from pathlib import Path

import click

from eenn_tvm.commands.options import echo_json, input_shape_option, input_shapes_from, json_option
from eenn_tvm.errors import EennError
from eenn_tvm.textui import format_table

DEFAULT_TRIALS = 512


@click.command("tune")
@click.argument("source", type=click.Path())
@click.option(
    "--target",
    "target_name",
    metavar="TIER|CPU",
    help="A host tier of a `compile` output (its segments only), or an LLVM CPU name (default: this machine's, "
    "what -mcpu=native resolves to). Kernels are timed on this machine.",
)
@click.option(
    "--trials",
    default=DEFAULT_TRIALS,
    show_default=True,
    type=click.IntRange(min=0),
    help="Candidate schedules to measure in all (0: only measure and store the default schedules).",
)
@click.option(
    "--minutes",
    type=click.FloatRange(min=0, min_open=True),
    help="Stop the search after this long, whatever the trials (the final timing of each kernel comes on top).",
)
@click.option(
    "--database",
    required=True,
    type=click.Path(file_okay=False),
    help="The tuning database folder: made if new; kernels it already holds are not tuned again.",
)
@input_shape_option
@json_option
def command(source, target_name, trials, minutes, database, input_shapes, as_json):
    """Tune the host kernels of SOURCE (an ONNX model, or an `augment`/`compile` output: the early-exit network
    as its host module builds it) with MetaSchedule, every kernel starting from its default schedule.

    Each kernel taking at least 2 % of the time is searched (its register tile: the columns and channel vectors
    it accumulates); the database keeps the best schedule of every kernel. Builds then apply it:
    `eenn-tvm augment|compile|run ... --database DIR`.
    """
    from eenn_tvm.targets.host.tune import tune

    mod, target = _module_and_target(Path(source), target_name, input_shapes_from(input_shapes))
    report = tune(mod, target, database, trials, log=lambda m: click.echo(m, err=True), minutes=minutes)
    if as_json:
        echo_json(report.to_json())
        return
    rows = [
        [
            k.name,
            str(k.uses),
            "in database" if k.already_tuned else str(k.trials),
            _us(k.default_us),
            _us(k.best_us),
            f"{k.default_us / k.best_us:.2f}x" if k.default_us and k.best_us else "-",
        ]
        for k in sorted(report.kernels, key=lambda k: -(k.best_us or 0) * k.uses)
    ]
    click.echo(format_table(["kernel", "uses", "trials", "default", "tuned", "speed-up"], rows))
    default = sum((k.default_us or 0) * k.uses for k in report.kernels if not k.already_tuned)
    best = sum((k.best_us or 0) * k.uses for k in report.kernels if not k.already_tuned)
    click.echo(
        f"{report.trials} trials in {report.seconds:.0f} s for {report.cpu}; kernels tuned now: "
        f"{default:.1f} us -> {best:.1f} us per pass; database {report.database}"
    )


def _module_and_target(source: Path, target_name: str | None, input_shapes: dict):
    """The module the host build of SOURCE compiles, and the LLVM target to tune it for."""
    from eenn_tvm.deploy import host_tier_module
    from eenn_tvm.frontend import import_onnx
    from eenn_tvm.network import Network
    from eenn_tvm.passes import ChainExits
    from eenn_tvm.plan import Plan

    if not source.exists():
        raise EennError(f"{source}: no such file or folder: give an ONNX model or an `eenn-tvm augment` output folder")
    if source.is_file():
        return import_onnx(source, input_shapes).mod, _target(target_name)
    plan = Plan.load(source)
    network = Network.from_augment(source, plan)
    tiers = {t.target: t for t in (plan.deployment.tiers if plan.deployment else []) if t.kind == "host"}
    if target_name in tiers:  # a host tier is measured here: tuned for this machine's CPU
        return host_tier_module(network.mod, tiers[target_name].segments), _target(None)
    return ChainExits()(network.mod), _target(target_name)


def _target(cpu: str | None):
    """The LLVM target of `cpu` (None, "native": this machine's)."""
    from eenn_tvm.targets.host.target import host_target

    try:
        return host_target(None if cpu in (None, "", "native") else cpu)
    except ValueError as err:
        raise EennError(f"--target {cpu}: {err}: give a host tier of a compile output or an LLVM CPU name") from None


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} us"
