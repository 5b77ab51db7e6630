"""`eenn-tvm quantize`: the int8 form of an early-exit network (an augment output) or of any ONNX model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from eenn_tvm.catalog import CALIBRATION_SAMPLES
from eenn_tvm.commands.options import echo_json, input_shape_option, input_shapes_from, json_option, savings_table
from eenn_tvm.errors import EennError
from eenn_tvm.outputs import Output, check_output_file, marked_kind
from eenn_tvm.textui import threshold_text

if TYPE_CHECKING:
    from eenn_tvm.plan import Plan, StreamDecision


@click.command("quantize")
@click.argument("source", type=click.Path(exists=True))
@click.option(
    "--data",
    "data_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Labelled data (.npz with x and y). For an augment output: the data augment was given (its split is "
    "rebuilt: calibration on the heads' training part, thresholds on the validation part).",
)
@click.option(
    "--calibration-samples",
    "samples",
    default=CALIBRATION_SAMPLES,
    show_default=True,
    type=click.IntRange(min=1),
    help="Samples (stratified) that calibrate the activation ranges.",
)
@click.option(
    "-o",
    "--output",
    "out",
    type=click.Path(),
    help="For a model: the int8 .onnx to write (required). For an augment output: a folder to write the "
    "result to instead of updating SOURCE (a new folder, an empty one, or one eenn-tvm wrote).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Replace an existing -o file, or an -o folder eenn-tvm did not write (never an input of the command).",
)
@input_shape_option
@json_option
def command(source, data_path, samples, out, force, input_shapes, as_json):
    """Quantise SOURCE to int8 with onnxruntime (QDQ: int8 weights per output channel, int8 activations).

    SOURCE is an `eenn-tvm augment` output (its early-exit network with the heads; the exit thresholds are searched
    again on the int8 network's confidences, and a stream plan's rule (`augment --stream`) on its scores and its
    tap's int8 codes; adds eenn_int8.onnx and the int8 host module eenn_int8_host.so, built through QDQToInteger)
    or an ONNX model (writes its QDQ form to -o). Shows which ops TVM computes in integers.
    """
    from eenn_tvm.quantize import quantize_model, quantize_output
    from eenn_tvm.quantized.network import describe_ops

    if Path(source).is_dir():
        output = _folder_output(source, data_path, out, force)
        output.check(_log)
        plan = quantize_output(source, data_path, output, samples, log=_log)
        if as_json:
            echo_json(plan.int8.model_dump())
            return
        show_int8(plan, out or source)
        return
    if out is None:
        raise EennError(f"give -o FILE.onnx: where to write the int8 form of {source}")
    check_output_file(out, [source, data_path], force)
    summary = quantize_model(source, data_path, out, samples, input_shapes_from(input_shapes))
    if as_json:
        echo_json(summary)
        return
    click.echo(f"wrote {out} (int8 QDQ, calibrated on {summary['calibration_samples']} samples)")
    click.echo(describe_ops(summary["ops"]))


def _folder_output(source: str, data_path: str, out: str | None, force: bool) -> Output:
    """Into a copy at -o, or in place: SOURCE replaced by itself with the int8 network added, which only an
    eenn-tvm output may be."""
    kind = marked_kind(Path(source))
    if out is None:
        if kind is None:
            raise EennError(f"{source}: eenn-tvm did not write this folder: give -o a new folder for the result")
        return Output.of(source, kind, [data_path])
    return Output.of(out, kind or "augment", [source, data_path], force)


def show_int8(plan: Plan, folder: str) -> None:
    """The int8 network against the float one on the validation split, its thresholds, its integer ops."""
    from eenn_tvm.quantized.network import describe_ops

    q, v = plan.int8, plan.validation
    click.echo(
        f"\n{plan.model.name}: int8 early-exit network, calibrated on {q.calibration_samples} training samples; "
        f"on {v.samples} validation samples:"
    )
    macs = plan.model.total_macs
    click.echo(
        savings_table(
            v.baseline_accuracy,
            macs,
            [
                ("early-exit network (float)", v.model_dump()),
                ("int8 model", {"accuracy": q.model_accuracy, "mean_macs": macs}),
                ("int8 early-exit network", q.validation.model_dump()),
            ],
        )
    )
    click.echo(
        f"int8 thresholds {', '.join(map(threshold_text, q.thresholds))} "
        f"(float: {', '.join(threshold_text(e.threshold) for e in plan.exits)}; with the float "
        f"thresholds the int8 network would reach {100 * q.float_thresholds_accuracy:.2f}%)"
    )
    if not q.meets_tolerance:
        click.echo("the int8 model alone is below the tolerance: its thresholds keep it against the int8 model")
    click.echo(describe_ops(q.ops))
    if q.stream:
        show_stream(q.stream, "int8 ", "int8 model")
    files = f"{plan.artifacts.eenn_int8_onnx}, {plan.artifacts.int8_host_module}"
    click.echo(f"wrote {folder}/ ({files}); next: eenn-tvm run {folder} --data TEST.npz --dtype int8")


def show_stream(s: StreamDecision, network: str = "", baseline: str = "original") -> None:
    v = s.validation
    test = (
        f"|difference| of the channel sums of {s.tap} below {s.reuse_below:.0f}"
        if s.tap_dtype == "int8"
        else f"mean |difference| of {s.tap} below {s.reuse_below:.4g}"
    )
    click.echo(
        f"\n{network}stream decisions on {v.samples} validation windows of {v.streams} streams (p = {s.p_value:.3g}): "
        f"accuracy {100 * v.accuracy:.2f}% ({baseline} {100 * v.baseline_accuracy:.2f}%), "
        f"{100 * (1 - v.mac_fraction):.1f}% fewer MACs; {v.reused} windows reused the last answer ({test}), "
        f"patience {s.patience} at {s.patient_scale:g} x the thresholds"
    )


def _log(message: str) -> None:
    click.echo(message, err=True)
