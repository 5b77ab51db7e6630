"""The quantisation stage: post-training int8 quantisation with onnxruntime, and the int8 early-exit network.

`quantize_static` (QDQ format) calibrates min/max ranges on a stratified sample of the data: weights int8 symmetric
per output channel, activations int8 per tensor with a zero point. Only the op types that `QDQToInteger` can make
integer are quantised (and the data movement between them); anything else stays float between a dequantize and a
quantize. A Relu or Clip after an op is removed by onnxruntime and its range becomes the op's output range, which
the pass reads back as act_min.

For an augment output, the whole early-exit network (eenn.onnx: backbone and heads) is quantised, calibrated on the
heads' training split; its thresholds are then searched again on the int8 network's own confidences over the same
validation split, so that the accuracy tolerance holds for the network that ships.
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx

from eenn_tvm import data as datasets
from eenn_tvm import onnx_runtime, stream_stage
from eenn_tvm.catalog import CALIBRATION_SAMPLES
from eenn_tvm.decision import confidence
from eenn_tvm.documents import sha256_of
from eenn_tvm.errors import EennError
from eenn_tvm.frontend import ImportedModel, import_onnx, resolve_input_shapes, simplify, to_relax
from eenn_tvm.guarantee import learn_then_test
from eenn_tvm.outputs import Output, atomic_folder, write_file_atomically
from eenn_tvm.passes import ChainExits
from eenn_tvm.plan import Evaluation, Int8Network, Plan, macs_by_exit
from eenn_tvm.quantized.network import int8_early_exit_module, op_counts
from eenn_tvm.report import write_report
from eenn_tvm.search import Exit, Option, SearchProblem, outcome_of, search
from eenn_tvm.targets.host import HostModule, build
from eenn_tvm.textui import logger_at

INT8_ONNX = "eenn_int8.onnx"
INT8_HOST_MODULE = "eenn_int8_host.so"
PER_CHANNEL_OPSET = 13  # DequantizeLinear takes an axis (per-channel scales) from opset 13 on
# What onnxruntime quantises: the ops with an integer form, the activations folded into them, data movement.
QUANTIZED_OP_TYPES = [
    "Conv", "Gemm", "MatMul", "Add", "AveragePool", "GlobalAveragePool", "ReduceMean", "MaxPool", "Concat",
    "Relu", "Clip", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze",
]  # fmt: skip


def quantize_onnx(model: onnx.ModelProto, calibration: np.ndarray) -> onnx.ModelProto:
    """The QDQ int8 form of a float model with one input, calibrated on `calibration` (N, ...) one sample at a time."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    input_name = model.graph.input[0].name
    model = _with_opset(model, PER_CHANNEL_OPSET)

    class Samples(CalibrationDataReader):
        def __init__(self):
            self._next = iter(range(len(calibration)))

        def get_next(self):
            i = next(self._next, None)
            return None if i is None else {input_name: calibration[i : i + 1]}

    # quantize_static logs a pre-processing hint on every call; the model is already simplified
    with tempfile.TemporaryDirectory() as tmp, logger_at("", logging.ERROR):
        source, target = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, str(source))
        quantize_static(
            str(source),
            str(target),
            Samples(),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=QUANTIZED_OP_TYPES,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
        return onnx.load(str(target))


def _with_opset(model: onnx.ModelProto, least: int) -> onnx.ModelProto:
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
    if opset >= least:
        return model
    try:
        return onnx.version_converter.convert_version(model, least)
    except Exception as err:  # the converter raises several types; all mean this model cannot be upgraded
        raise EennError(f"cannot convert the model from opset {opset} to {least} for quantisation: {err}") from None


def stratified_sample(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Sorted indices of about `count` samples (all when there are fewer), every class in its share."""
    if count >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    picked = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        picked.append(members[: max(1, round(count * len(members) / len(labels)))])
    return np.sort(np.concatenate(picked))


def quantize_model(
    model_path: str | Path,
    data_path: str | Path,
    target: str | Path,
    samples: int = CALIBRATION_SAMPLES,
    input_shapes: dict | None = None,
) -> dict:
    """A plain model: its QDQ int8 form written to `target` (checked with `outputs.check_output_file` first);
    returns what was quantised and how."""
    model = import_onnx(model_path, input_shapes)
    if len(model.input_shapes) != 1:
        raise EennError(
            f"{model_path}: the model has {len(model.input_shapes)} inputs: quantize takes one-input models"
        )
    shape = next(iter(model.input_shapes.values()))
    data = datasets.load_npz(data_path, tuple(shape[1:]), _classes(model.onnx))
    chosen = stratified_sample(data.y, samples, seed=0)
    int8 = quantize_onnx(model.onnx, data.x[chosen])
    ops = op_counts(imported(int8, model.name))
    write_file_atomically(Path(target), int8.SerializeToString())
    return {"model": str(model_path), "output": str(target), "calibration_samples": len(chosen), "ops": ops}


def quantize_output(
    folder: str | Path,
    data_path: str | Path,
    output: Output,
    samples: int = CALIBRATION_SAMPLES,
    log: Callable[[str], None] = lambda _m: None,
) -> Plan:
    """An augment output: the int8 network added to it (or to a copy, `output`), its plan updated. The folder's
    files are checked (inside it, unchanged) before it is copied, the data against what augment was given."""
    folder = Path(folder)
    plan = Plan.load(folder)
    plan.check_named_files(folder)
    s = plan.search
    _require_augments_file(data_path, s.data, s.data_sha256)
    if s.calibration_data is not None:
        _require_augments_file(s.calibration_data, s.calibration_data, s.calibration_sha256)
    shape = tuple(plan.model.input_shape[1:])
    data, train_idx, val_idx = datasets.load_split(
        data_path, shape, plan.model.classes, s.val_fraction, s.seed, s.calibration_data
    )
    with atomic_folder(output, log) as tmp:
        shutil.copytree(folder, tmp, symlinks=True, dirs_exist_ok=True)
        add_int8(tmp, plan, data, train_idx, val_idx, samples, log)
        write_report(tmp, plan)
        plan.record_hashes(tmp)
        plan.save(tmp)
    return plan


def _require_augments_file(path: str | Path, recorded: str, digest: str | None) -> None:
    """The thresholds are searched again on augment's validation split: only the very data file rebuilds it."""
    if Path(path).is_file() and sha256_of(Path(path)) != digest:  # a missing file: load_npz says so
        raise EennError(
            f"{path}: not the data augment was given ({recorded}: its SHA-256 differs): give the data augment was given"
        )


def add_int8(
    folder: Path,
    plan: Plan,
    data: datasets.Dataset,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    samples: int = CALIBRATION_SAMPLES,
    log: Callable[[str], None] = lambda _m: None,
) -> Int8Network:
    """Quantise eenn.onnx in `folder`, search its thresholds on the validation split, build its host module; the
    search settings (seed, tolerance, confidence) are the plan's."""
    chosen = train_idx[stratified_sample(data.y[train_idx], samples, plan.search.seed)]
    log(f"quantising the early-exit network to int8 (calibration: {len(chosen)} training samples)")
    int8 = quantize_onnx(onnx.load(str(plan.artifact(folder, "eenn_onnx"))), data.x[chosen])
    onnx.save(int8, str(folder / INT8_ONNX))
    taps = _stream_taps(folder, plan, int8, data, log)
    log(f"int8 thresholds on {len(val_idx)} validation samples (onnxruntime)")
    outputs = onnx_runtime.run_each(onnx_runtime.session(_with_outputs(int8, [n for _, n in taps])), data.x[val_idx])
    groups = None if data.groups is None else data.groups[val_idx]
    log("building the int8 host module (QDQToInteger, TVM, llvm)")
    model = imported(int8, plan.model.name)
    serial = data.is_stream
    section = int8_thresholds(plan, outputs, data.y[val_idx], groups, len(chosen), op_counts(model), serial)
    if taps:
        log(f"int8 stream rule on the {len(val_idx)} validation windows (onnxruntime, the taps' int8 codes)")
        tolerance = int8_tolerance(plan, section.model_accuracy)
        section.stream = stream_stage.certify_int8(
            plan,
            taps,
            outputs,
            data.y[val_idx],
            data.stream[val_idx],
            groups,
            section.thresholds,
            tolerance,
            plan.search.confidence,
        )
    mod = int8_early_exit_module(model, section.thresholds, plan.decision)
    HostModule(build(ChainExits()(mod))).export(folder / INT8_HOST_MODULE)
    plan.artifacts.eenn_int8_onnx, plan.artifacts.int8_host_module = INT8_ONNX, INT8_HOST_MODULE
    plan.int8 = section
    if not section.meets_tolerance:
        log(
            f"warning: the int8 model alone is at {100 * section.model_accuracy:.2f}% on validation, more than the "
            f"tolerance below the float model's {100 * plan.validation.baseline_accuracy:.2f}%; its thresholds "
            "keep the tolerance against the int8 model instead"
        )
    return section


def _stream_taps(folder: Path, plan: Plan, int8: onnx.ModelProto, data: datasets.Dataset, log) -> list:
    """The taps a stream plan's int8 rule may use (`stream_stage.int8_taps`); none for a plan without a stream
    rule, or, said in one line, when the data are not stream data."""
    if plan.stream is None:
        return []
    if not data.is_stream:
        log(
            "note: the data are not stream data (no stream and order arrays): the int8 network gets no stream rule "
            "and its firmware decides per sample; give the stream data augment --stream was given"
        )
        return []
    from eenn_tvm.analysis import analyze

    model = import_onnx(plan.artifact(folder, "model_onnx"), {plan.model.input_name: tuple(plan.model.input_shape)})
    return stream_stage.int8_taps(analyze(model), plan, int8)


def _with_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of the QDQ `model` that also returns the int8 tensors `names`."""
    if not names:
        return model
    extended = onnx.ModelProto()
    extended.CopyFrom(model)
    extended.graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.INT8, None) for n in names)
    return extended


def int8_tolerance(plan: Plan, model_accuracy: float) -> float:
    """The drop an int8 cascade may show against the int8 model on validation: the plan's tolerance narrowed by the
    float-to-int8 gap, or all of it when the int8 model alone is already below the float floor."""
    tolerance = plan.search.max_accuracy_drop
    float_floor = plan.validation.baseline_accuracy - tolerance
    return model_accuracy - float_floor if model_accuracy >= float_floor else tolerance


def int8_thresholds(
    plan: Plan,
    outputs: list[list[np.ndarray]],
    labels: np.ndarray,
    groups: np.ndarray | None,
    calibration_samples: int,
    ops: dict[str, dict[str, int]],
    serial: bool = False,
) -> Int8Network:
    """The plan's exits (points and heads fixed) with thresholds searched on the int8 network's outputs
    [final, exit_0, ...] per validation sample, with the plan's tolerance and confidence (`serial`: the samples
    are windows of streams, SearchProblem.serial). Head MACs are folded into the cost of reaching each exit, as the
    int8 network runs every head it passes, so an exit the search drops only stops firing (threshold infinity)."""
    final = np.concatenate([o[0] for o in outputs]).argmax(1)
    heads_before = np.cumsum([e.head_macs for e in plan.exits])
    options = []
    for i, e in enumerate(plan.exits):
        logits = np.concatenate([o[1 + i] for o in outputs])
        options.append(Option(i, e.head, confidence(logits, plan.decision), logits.argmax(1) == labels, 0.0))
    float_floor = plan.validation.baseline_accuracy - plan.search.max_accuracy_drop
    model_accuracy = float((final == labels).mean())
    floor = model_accuracy - int8_tolerance(plan, model_accuracy)
    problem = SearchProblem(
        options=options,
        reach_cost=[e.macs_to_reach + h for e, h in zip(plan.exits, heads_before)],
        final_cost=plan.model.total_macs + float(sum(e.head_macs for e in plan.exits)),  # a plan may have no exit
        final_correct=final == labels,
        min_accuracy=floor,
        groups=groups,
        serial=serial,
    )
    result = learn_then_test(search, problem, plan.search.confidence).result
    thresholds = [math.inf] * len(plan.exits)
    for e in result.exits:
        thresholds[e.point] = float(e.threshold)
    as_planned = [Exit(i, i, e.threshold) for i, e in enumerate(plan.exits)]
    return Int8Network(
        calibration_samples=calibration_samples,
        thresholds=thresholds,
        model_accuracy=model_accuracy,
        validation=_validation(plan, problem, result.exits),
        float_thresholds_accuracy=outcome_of(problem, as_planned).accuracy,
        accuracy_margin=result.outcome.accuracy - floor,
        meets_tolerance=bool(model_accuracy >= float_floor),
        ops=ops,
    )


def _validation(plan: Plan, problem: SearchProblem, exits: list[Exit]) -> Evaluation:
    outcome = outcome_of(problem, exits)
    slots = {e.point: k for k, e in enumerate(exits)}
    histogram = [outcome.exit_counts[slots[i]] if i in slots else 0 for i in range(len(plan.exits))]
    histogram.append(outcome.exit_counts[-1])
    costs = macs_by_exit(plan.exits, plan.model.total_macs)
    mean_macs = float(np.dot(histogram, costs)) / problem.samples
    return Evaluation(
        samples=problem.samples,
        baseline_accuracy=plan.validation.baseline_accuracy,
        accuracy=outcome.accuracy,
        mean_macs=mean_macs,
        mac_fraction=mean_macs / plan.model.total_macs,
        exit_histogram=histogram,
    )


def imported(model: onnx.ModelProto, name: str) -> ImportedModel:
    """The front end on an int8 model made here (so already checked): shapes fixed, simplified, in Relax."""
    shapes = resolve_input_shapes(model)
    simple = simplify(model, shapes)
    return ImportedModel(name=name, onnx=simple, input_shapes=shapes, mod=to_relax(simple, shapes))


def _classes(model: onnx.ModelProto) -> int:
    dims = [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    if len(dims) != 2 or dims[1] < 2:
        raise EennError(f"the model's output is {dims}: quantize needs a classifier with output (1, classes)")
    return dims[1]
