"""`eenn-tvm verify`: run the firmware in QEMU on real inputs and compare it with the host."""

from __future__ import annotations

import sys

import click

from eenn_tvm.catalog import RUNNERS
from eenn_tvm.commands.options import data_option, echo_json, json_option
from eenn_tvm.textui import format_table


@click.command("verify")
@click.argument("firmware", type=click.Path(file_okay=False))
@data_option("Labelled inputs (.npz with x and y), scaled as the model expects.")
@click.option("--n", "count", default=100, show_default=True, type=click.IntRange(min=1), help="Samples to run.")
@click.option(
    "--on",
    "runner",
    default="qemu",
    show_default=True,
    type=click.Choice(RUNNERS),
    help="qemu: the Cortex-M firmware, emulated; host: the same C built for this computer with ASan and UBSan.",
)
@click.option(
    "--int8-input",
    is_flag=True,
    help="int8 firmware: run eenn_infer_int8 on the inputs quantised here with EENN_INPUT_SCALE and "
    "EENN_INPUT_ZERO_POINT (firmware.json's int8_input), instead of eenn_infer on float inputs.",
)
@click.option(
    "--stream",
    "stream",
    is_flag=True,
    help="Stream data (`augment --stream`): run eenn_infer_stream over the windows of each stream in order, from a "
    "reset, and compare every decision (exit, reuse, class) with the host's same rule (the static host module; for "
    "int8 firmware the integer host module's outputs, the rule in numpy).",
)
@json_option
def command(firmware, data_path, count, runner, int8_input, stream, as_json):
    """Run FIRMWARE (from `eenn-tvm build`) in qemu-system-arm and compare every sample with the host.

    The host is onnxruntime for a plain model and the TVM host module for an early-exit network. Exits
    with status 1 when a class, an exit or an output (beyond 1e-4) differs. An int8 firmware must equal its
    integer host module (its logits bit for bit, a float softmax after them to 1e-6) and take onnxruntime's
    class and exit (QDQ model) on >= 99.5% of the samples. Instruction counts come from QEMU's -icount mode and
    are deterministic. With --int8-input the same checks apply to the int8 entry point.
    """
    from eenn_tvm.targets.mcu.verify import verify, verify_stream

    log = lambda m: click.echo(m, err=True)  # noqa: E731
    if stream and int8_input:
        raise click.UsageError("--stream runs float32 windows: drop --int8-input")
    if stream:
        result = verify_stream(firmware, data_path, count, runner, log=log)
    else:
        result = verify(firmware, data_path, count, runner, log=log, int8_input=int8_input)
    if as_json:
        echo_json(result.to_json())
    elif stream:
        _print_stream(result)
    else:
        _print(result)
    if not result.matches:
        sys.exit(1)


def _print_stream(r) -> None:
    verdict = "match" if r.matches else "MISMATCH"
    where = "this host (ASan, UBSan)" if r.machine == "host" else f"QEMU {r.machine}"
    reused = "" if r.instructions_reused_mean is None else f" ({r.instructions_reused_mean:,.0f} when reused)"
    click.echo(
        f"{r.target} on {where}, {r.entry}, {r.samples} windows of {r.streams} stream(s): {verdict} with "
        f"{r.reference} (decision mismatches {r.decision_mismatches}, max abs error {r.max_abs_error:.2e}); "
        f"{r.reused} windows reused the last answer; accuracy {100 * r.accuracy:.2f}%; mean instructions per "
        f"window {r.instructions_mean:,.0f}{reused}"
    )


def _print(r) -> None:
    verdict = "match" if r.matches else "MISMATCH"
    where = "this host (ASan, UBSan)" if r.machine == "host" else f"QEMU {r.machine}"
    click.echo(
        f"{r.target} on {where}, {r.entry}, {r.samples} samples: {verdict} "
        f"(class mismatches {r.class_mismatches}, exit mismatches {r.exit_mismatches}, "
        f"max abs error {r.max_abs_error:.2e}, tolerance {r.tolerance:g}); accuracy {100 * r.accuracy:.2f}%"
    )
    if r.onnxruntime_agreement is not None:
        click.echo(f"int8: same class and exit as onnxruntime on {100 * r.onnxruntime_agreement:.2f}% of the samples")
    rows = [
        [
            str(e["exit"]),
            str(e["samples"]),
            f"{e['instructions_mean']:,.0f}",
            "-" if e["plan_macs"] is None else f"{e['plan_macs']:,}",
        ]
        for e in r.instructions_per_exit
    ]
    click.echo(format_table(["exit", "samples", "instructions / inference", "plan MACs"], rows))
    click.echo(f"mean instructions per inference: {r.instructions_mean:,.0f}")
    if r.plan_vs_measured:
        p = r.plan_vs_measured
        click.echo(
            f"cost vs a full pass: plan {100 * p['predicted_fraction']:.1f}%, measured "
            f"{100 * p['measured_fraction']:.1f}% (exit rate {100 * p['exit_rate']:.1f}%)"
        )
    click.echo(
        f"flash {r.flash_bytes:,} bytes; RAM {r.ram_bytes:,} bytes (arena {r.arena_bytes:,}, lower bound "
        f"{r.ram_lower_bound_bytes:,}; stack used {r.stack_bytes_used:,})"
    )
