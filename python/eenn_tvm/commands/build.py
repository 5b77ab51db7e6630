"""`eenn-tvm build`: firmware for a Cortex-M from a plain model or an early-exit network."""

from __future__ import annotations

import click

from eenn_tvm.commands.options import (
    echo_json,
    input_shape_option,
    input_shapes_from,
    json_option,
    output_options,
    positive,
)
from eenn_tvm.outputs import Output
from eenn_tvm.targets.mcu.cores import CORES, DEFAULT_STACK_BYTES, KERNEL_KINDS
from eenn_tvm.textui import format_table


@click.command("build")
@click.argument("source", type=click.Path())
@click.option("--target", "core", required=True, type=click.Choice(list(CORES)), help="The Cortex-M core to build for.")
@output_options("Folder of the firmware project.")
@click.option(
    "--kernels",
    "kernel_kind",
    default="auto",
    show_default=True,
    type=click.Choice(KERNEL_KINDS),
    help="library (= auto): eenn-tvm's kernel library for convolutions, dense layers, pools and adds, TVM's kernels "
    "for the rest; llvm: TVM's kernels only, Thumb objects from its LLVM backend; c: TVM's kernels only, its C "
    "output compiled by gcc.",
)
@click.option(
    "--flash",
    type=int,
    callback=positive,
    metavar="BYTES",
    help="Flash budget of the part (default: a typical part with this core).",
)
@click.option(
    "--ram",
    type=int,
    callback=positive,
    metavar="BYTES",
    help="RAM budget of the part (default: a typical part with this core).",
)
@click.option(
    "--stack",
    "stack_bytes",
    default=DEFAULT_STACK_BYTES,
    show_default=True,
    type=int,
    callback=positive,
    metavar="BYTES",
    help="Stack reserved for inference (verify reports what it used).",
)
@click.option(
    "--dtype",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "int8", "float32"]),
    help="int8: the augment output's int8 network (`eenn-tvm quantize`); a QDQ model is int8 either way. auto: "
    "int8 for a QDQ model, float32 otherwise.",
)
@input_shape_option
@json_option
def command(source, core, out, force, kernel_kind, flash, ram, stack_bytes, dtype, input_shapes, as_json):
    """Compile SOURCE for a Cortex-M core into a CMake firmware project in OUT.

    SOURCE is an ONNX model (compiled as it is) or an `eenn-tvm augment` output folder (the early-exit
    network, its exit decisions compiled in). OUT holds eenn_model.h (`eenn_infer`), the generated C, the
    kernels, board support for QEMU, the built firmware in OUT/bin and firmware.json. Check it with
    `eenn-tvm verify OUT --data TEST.npz`.
    """
    from eenn_tvm.targets.mcu.build import build_firmware

    manifest = build_firmware(
        source,
        core,
        Output.of(out, "firmware", [source], force),
        input_shapes_from(input_shapes),
        dtype,
        kernel_kind=kernel_kind,
        flash_budget=flash,
        ram_budget=ram,
        stack_bytes=stack_bytes,
        log=lambda m: click.echo(m, err=True),
    )
    if as_json:
        echo_json(manifest.to_json())
        return
    s, m = manifest.sizes, manifest.memory
    click.echo(
        f"\n{manifest.model} for {manifest.core} ({manifest.kind}, {manifest.segments} segment(s), "
        f"{len(manifest.exits)} exit(s), {manifest.dtype}, {manifest.kernels} kernels):"
    )
    click.echo(
        format_table(
            ["memory", "bytes", "budget"],
            [
                ["flash: code", f"{s.code:,}", ""],
                ["flash: weights", f"{s.weights:,}", ""],
                ["flash total", f"{s.flash:,}", f"{manifest.budget.flash:,}"],
                ["RAM: arena", f"{s.arena:,}", f"lower bound {m.lower_bound_bytes:,}"],
                ["RAM: workspace", f"{s.workspace:,}", ""],
                ["RAM: stack (reserved)", f"{s.stack:,}", ""],
                ["RAM total", f"{s.ram:,}", f"{manifest.budget.ram:,}"],
            ],
        )
    )
    click.echo(f"\nwrote {out}/; next: eenn-tvm verify {out} --data TEST.npz")
