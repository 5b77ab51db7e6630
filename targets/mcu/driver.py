"""The static C driver: `eenn_model.h` (the API), `eenn_model.c` (tensors, segments, the exit decision) and
`eenn_weights.c` (constants and the library kernels' parameters, in flash). C99, static buffers, one line per
kernel call, no malloc, no printf.

Every activation is a named pointer into the arena; a TVM kernel takes it as a DLTensor (`<name>_dl`), a library
kernel (eenn_nn.h) as the pointer, with its parameters in a const struct (`<output>_params`)."""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass

import numpy as np

from eenn_tvm.plan import StreamDecision
from eenn_tvm.targets.mcu import nn_library as nn
from eenn_tvm.targets.mcu.lower import Constant, KernelCall, LibraryCall, Program, Segment, Tensor
from eenn_tvm.targets.mcu.memory import ALIGNMENT, MemoryPlan

# dtype -> (C element type, DLPack type code)
_C_TYPES = {
    "float32": ("float", "kDLFloat"),
    "int64": ("int64_t", "kDLInt"),
    "int32": ("int32_t", "kDLInt"),
    "int8": ("int8_t", "kDLInt"),
    "uint8": ("uint8_t", "kDLUInt"),
    "bool": ("uint8_t", "kDLBool"),
}


@dataclass
class DriverSpec:
    """What the driver needs besides the lowered program."""

    model: str
    core: str
    classes: int
    device_segments: int  # the first segments run here; with fewer than all, the last hands over its activation
    total_segments: int
    output_is_probability: bool  # the model ends in a softmax: its output already is the confidence
    workspace_bytes: int
    alignment: int = ALIGNMENT  # of the arena, its tensors and the weights: what the kernels' vector loads need
    stream: StreamDecision | None = None  # `augment --stream`'s rule: eenn_infer_stream decides with it

    @property
    def hands_over(self) -> bool:
        return self.device_segments < self.total_segments

    def exits_here(self, program: Program) -> int:
        return self.device_segments - (not self.hands_over)


@dataclass
class Int8Entry:
    """An int8 network whose input is quantised by a call of its own, the first of segment 0, which alone reads the
    model input: `eenn_infer` runs that call, then the network; `eenn_infer_int8` runs the network from the caller's
    int8 buffer (in place if no later call writes the int8 input and the buffer is aligned, else from a copy)."""

    quantize: LibraryCall
    read_only: bool

    @property
    def tensor(self) -> Tensor:
        return self.quantize.output

    @property
    def scale(self) -> float:
        return self.quantize.kernel.scale

    @property
    def zero_point(self) -> int:
        return self.quantize.kernel.zero_point

    def network(self, segments: list[Segment]) -> list[Segment]:
        """The segments as the entry points share them: segment 0 starts from the int8 input."""
        first = segments[0]
        return [Segment(first.index, self.tensor, first.calls[1:], first.outputs), *segments[1:]]


def int8_entry(program: Program) -> Int8Entry | None:
    """Read from the program, not assumed: with TVM's kernels only (`--kernels llvm|c`) the input's quantisation is
    fused into TVM's first kernel, and a model may compute in float before it: no int8 entry point then."""
    model_input, calls = program.segments[0].input, [c for s in program.segments for c in s.calls]
    first = calls[0] if calls else None
    if not (isinstance(first, LibraryCall) and isinstance(first.kernel, nn.QuantizeS8) and not first.kernel.dequantize):
        return None
    if [c for c in calls if any(a is model_input for a in c.args)] != [first]:
        return None
    return Int8Entry(first, read_only=not any(c.output is first.output for c in calls[1:]))


def header(program: Program, spec: DriverSpec, memory: MemoryPlan) -> str:
    model_input = program.segments[0].input
    entry = int8_entry(program)
    return _HEADER.format(
        model=spec.model,
        core=spec.core,
        input_elements=math.prod(model_input.shape),
        input_shape="x".join(map(str, model_input.shape)),
        classes=spec.classes,
        exits=spec.exits_here(program),
        segments=spec.device_segments,
        arena=memory.arena_bytes,
        workspace=spec.workspace_bytes,
        lower_bound=memory.lower_bound_bytes,
        live_bytes=program.segments[spec.device_segments - 1].outputs[0].nbytes if spec.hands_over else 0,
        int8_input=_int8_input(entry, spec) if entry else "",
        more_entries=(_INT8_INFER if entry else "") + (_STREAM_INFER if spec.stream is not None else ""),
    )


def _int8_input(entry: Int8Entry, spec: DriverSpec) -> str:
    how = (
        f"A buffer aligned to {spec.alignment} bytes is read in place, any other one copied."
        if entry.read_only
        else "It is copied into the arena first."
    )
    return _INT8_INPUT.format(scale=nn.c_float(entry.scale), zero_point=entry.zero_point, how=how)


def source(program: Program, spec: DriverSpec, memory: MemoryPlan) -> str:
    segments = program.segments[: spec.device_segments]
    calls = [c for s in segments for c in s.calls]
    library = sum(isinstance(c, LibraryCall) for c in calls)
    entry = int8_entry(program)
    if entry:
        segments = entry.network(segments)
    model_input = segments[0].input
    parts = [
        f"/* eenn_model.c: {spec.model} on {spec.core}, generated by eenn-tvm.\n"
        f" * {len(segments)} segment(s), {len(calls)} kernel calls ({library} of the kernel library);"
        f" arena {memory.arena_bytes} bytes (the most alive at once: {memory.lower_bound_bytes}). */",
        ("#include <string.h> /* memcpy */\n\n" if entry or spec.stream is not None else "") + _INCLUDES,
        "/* Every activation lives in this arena at an offset planned across all segments. */",
        f"static uint8_t arena[EENN_ARENA_BYTES] EENN_ALIGNED({spec.alignment});",
        "static uint8_t workspace[EENN_WORKSPACE_BYTES > 0 ? EENN_WORKSPACE_BYTES : 1]"
        f" EENN_ALIGNED({spec.alignment});\n",
    ]
    if entry:
        parts += [
            "/* Activations (and the library's scratch). The network starts from its int8 input: the caller's buffer",
            " * (eenn_infer_int8), or its quantised float input in the arena (eenn_infer). */",
            f"static const int8_t *{model_input.name};",
            _pointer(Tensor(_QUANTIZED_INPUT, model_input.shape, "int8"), memory.offsets[model_input.name]),
        ]
    else:
        parts += [
            "/* Activations (and the library's scratch): the model input is the caller's buffer. */",
            f"static const {_C_TYPES[model_input.dtype][0]} *{model_input.name};",
        ]
    parts += [_pointer(t, memory.offsets[t.name]) for t in _tensors(segments) if t is not model_input]
    dl_tensors = _dl_tensors(segments, spec)
    if dl_tensors:
        parts += ["\n/* The tensors TVM's kernels take, as DLTensor. */"]
        parts += [
            _dl_tensor(t, "NULL" if t is model_input else f"arena + {memory.offsets[t.name]}") for t in dl_tensors
        ]
    constants = _constants(segments)
    if constants:
        parts += ["\n/* Their weights, in flash (eenn_weights.c). */"]
        parts += [_dl_tensor(c, f"(void *){_weight_symbol(c)}") for c in constants]
    parts += [_segment_function(s) for s in segments]
    parts += [_RESULT_HELPERS]
    if entry:
        parts += [
            "/* The network from its int8 input on, for both entry points. */",
            _infer(segments, spec, _INT8_NETWORK),
        ]
        parts += [_int8_entry_points(entry, spec)]
    else:
        parts += [_infer(segments, spec, _FLOAT_ENTRY)]
    if spec.stream is not None:
        parts += [_stream_entry(segments, spec, entry)]
    return "\n".join(parts) + "\n"


def weights_header(program: Program, spec: DriverSpec) -> str:
    segments = program.segments[: spec.device_segments]
    lines = [
        "/* eenn_weights.h: the constants of the model and the parameters of its library kernels (eenn_weights.c). */",
        "#ifndef EENN_WEIGHTS_H",
        "#define EENN_WEIGHTS_H",
        "#include <stdint.h>",
        "",
        '#include "eenn_nn.h"',
        "",
    ]
    for c in _constants(segments):
        lines.append(f"extern const {_C_TYPES[c.dtype][0]} {_weight_symbol(c)}[{max(c.value.size, 1)}];")
    for call in _library_calls(segments):
        lines.append(f"extern const {call.kernel.struct} {_params_symbol(call)};")
    return "\n".join(lines + ["", "#endif"]) + "\n"


def weights_source(program: Program, spec: DriverSpec) -> str:
    segments = program.segments[: spec.device_segments]
    parts = [
        "/* eenn_weights.c: constants of the model, generated by eenn-tvm (kept in flash). */",
        '#include <math.h>\n\n#include "eenn_runtime.h"\n#include "eenn_weights.h"\n',
    ]
    for c in _constants(segments):
        ctype = _C_TYPES[c.dtype][0]
        parts.append(f"/* {c.name}: {c.dtype} [{', '.join(map(str, c.value.shape))}] */")
        parts.append(f"const {ctype} {_weight_symbol(c)}[{max(c.value.size, 1)}] EENN_ALIGNED({spec.alignment}) = {{")
        parts.append(_values(c.value))
        parts.append("};\n")
    for call in _library_calls(segments):
        parts.append(f"/* {call.output.name}: {call.kernel.summary()} */")
        parts.append(call.kernel.declaration(_params_symbol(call), static=False) + "\n")
    return "\n".join(parts)


def library_functions(program: Program, spec: DriverSpec) -> set[str]:
    """The kernel-library functions the driver calls (their C files go into the firmware)."""
    return {call.kernel.function for call in _library_calls(program.segments[: spec.device_segments])}


def kernels_header(program: Program) -> str:
    lines = [
        "/* eenn_kernels.h: the kernels TVM compiled (packed calling convention). */",
        "#ifndef EENN_KERNELS_H",
        "#define EENN_KERNELS_H",
        "#include <stdint.h>",
        "",
    ]
    tvm_calls = [call for s in program.segments for call in s.calls if isinstance(call, KernelCall)]
    for name in sorted({call.kernel for call in tvm_calls}):
        lines.append(f"int32_t __tvm_ffi_{name}(void *self, void *args, int32_t num_args, void *result);")
    return "\n".join(lines + ["", "#endif"]) + "\n"


def _tensors(segments: list[Segment]) -> list[Tensor]:
    """The model input, then every activation in the order the calls first use it."""
    return _args_of_kind(segments, Tensor, [segments[0].input])


def _dl_tensors(segments: list[Segment], spec: DriverSpec) -> list[Tensor]:
    """The tensors TVM's kernels take, and the one handed over (its DLTensor carries the shape to the caller)."""
    tvm_calls = [Segment(s.index, s.input, [c for c in s.calls if isinstance(c, KernelCall)], []) for s in segments]
    tensors = _args_of_kind(tvm_calls, Tensor, [])
    if spec.hands_over and segments[-1].outputs[0] not in tensors:
        tensors.append(segments[-1].outputs[0])
    return tensors


def _constants(segments: list[Segment]) -> list[Constant]:
    return _args_of_kind(segments, Constant, [])


def _library_calls(segments: list[Segment]) -> list[LibraryCall]:
    return [call for s in segments for call in s.calls if isinstance(call, LibraryCall)]


def _args_of_kind(segments: list[Segment], kind: type, first: list) -> list:
    seen = {id(item): item for item in first}
    for segment in segments:
        for call in segment.calls:
            for arg in call.args:
                if isinstance(arg, kind):
                    seen.setdefault(id(arg), arg)
    return list(seen.values())


def _pointer(t: Tensor, offset: int) -> str:
    ctype = _C_TYPES[t.dtype][0]
    return f"static {ctype} *const {t.name} = ({ctype} *)(arena + {offset}); /* {_dims(t.shape)} */"


def _dl_tensor(t: Tensor | Constant, data: str) -> str:
    shape = tuple(t.shape) if isinstance(t, Tensor) else tuple(t.value.shape)
    code = _C_TYPES[t.dtype][1]
    bits = 8 if t.dtype == "bool" else np.dtype(t.dtype).itemsize * 8
    dims = ", ".join(map(str, shape)) or "1"
    name = _dl_name(t)
    # Shapes stay in flash: kernels only read them (DLTensor's field is not const, hence the cast).
    return (
        f"static const int64_t {name}_shape[] = {{{dims}}};\n"
        f"static DLTensor {name} = {{{data}, {{kDLCPU, 0}}, {len(shape)}, {{{code}, {bits}, 1}}, "
        f"(int64_t *){name}_shape, NULL, 0}};"
    )


def _dl_name(t: Tensor | Constant) -> str:
    return f"{t.name}_dl"


def _dims(shape) -> str:
    return "x".join(map(str, shape))


def _segment_function(segment: Segment) -> str:
    ins = segment.input
    outs = ", ".join(f"{t.name} [{'x'.join(map(str, t.shape))}]" for t in segment.outputs)
    lines = [
        f"\n/* Segment {segment.index}: {ins.name} [{'x'.join(map(str, ins.shape))}] -> {outs}. */",
        f"static eenn_status_t segment_{segment.index}(void) {{",
    ]
    for call in segment.calls:
        lines += _library_call(call) if isinstance(call, LibraryCall) else [f"  {_tvm_call(call)}"]
    return "\n".join(lines + ["  return EENN_OK;", "}"])


def _tvm_call(call: KernelCall) -> str:
    args = ", ".join(f"&{_dl_name(a)}" for a in call.args)
    return f"EENN_RUN(EENN_ERROR_KERNEL, __tvm_ffi_{call.kernel}, {args});"


def _library_call(call: LibraryCall) -> list[str]:
    inputs = [t.name for t in call.inputs]
    scratch = call.scratch.name if call.scratch is not None else "NULL"
    return [
        f"  /* {call.kernel.summary()} */",
        f"  {call.kernel.call(_params_symbol(call), inputs, call.output.name, scratch)}",
    ]


def _params_symbol(call: LibraryCall) -> str:
    return f"{call.output.name}_params"


_INCLUDES = (
    '#include "eenn_model.h"\n\n#include "eenn_kernels.h"\n#include "eenn_runtime.h"\n#include "eenn_weights.h"\n'
)
_FLOAT_ENTRY = "eenn_status_t eenn_infer(const float *input, eenn_result_t *out)"
_INT8_NETWORK = "static eenn_status_t infer_int8_input(const int8_t *input, eenn_result_t *out)"
_STREAM_ENTRY = "eenn_status_t eenn_infer_stream(const float *input, eenn_result_t *out)"
_STREAM_INT8_NETWORK = "static eenn_status_t infer_stream_int8_input(const int8_t *input, eenn_result_t *out)"
_QUANTIZED_INPUT = "quantized_input"  # where eenn_infer quantises, and eenn_infer_int8 copies an unaligned input


def _infer(segments: list[Segment], spec: DriverSpec, signature: str) -> str:
    """The function that runs `segments` from their input, the caller's buffer `input`."""
    lines = _prologue(segments, spec, signature)
    for segment in segments:
        lines.append(f"  if ((status = segment_{segment.index}()) != EENN_OK) return status;")
        if _has_exit(segment):
            lines.append(f"  if (*{segment.outputs[3].name})")
            lines.append(f"    return exit_taken(out, {_exit_args(segment)});")
    last = segments[-1]
    if spec.hands_over:
        lines.append(f"  return hand_over(out, &{_dl_name(last.outputs[0])}, {_exit_args(last)});")
    else:
        lines.append(f"  return exit_taken(out, EENN_EXITS, {_final_args(last, spec)});")
    return "\n".join(lines + ["}"])


def _prologue(segments: list[Segment], spec: DriverSpec, signature: str) -> list[str]:
    """An entry point's first lines: the caller's input in place, the workspace empty."""
    model_input = segments[0].input
    lines = [f"{signature} {{", "  eenn_status_t status;", f"  {model_input.name} = input;"]
    if model_input in _dl_tensors(segments, spec):
        lines.append(f"  {_dl_name(model_input)}.data = (void *)input;")
    lines.append("  eenn_workspace_reset(workspace, EENN_WORKSPACE_BYTES);")
    return lines


def _has_exit(segment: Segment) -> bool:
    """The activation, then the exit's logits, confidence and decision (and, `TapFeatures`, the tap's averages)."""
    return len(segment.outputs) >= 4


def _final_args(last: Segment, spec: DriverSpec) -> str:
    """exit_taken's scores and confidence at the end of the network."""
    scores = last.outputs[0].name
    confidence = "eenn_max" if spec.output_is_probability else "eenn_max_probability"
    return f"{scores}, {confidence}({scores}, EENN_CLASSES)"


def _stream_entry(segments: list[Segment], spec: DriverSpec, entry: Int8Entry | None) -> str:
    """eenn_infer_stream and its state: the rule of `eenn_tvm.stream.decide`, one window at a time; an int8 network
    quantises the window first, as eenn_infer does, and compares the int32 channel sums of its tap's codes."""
    rule = spec.stream
    tap = segments[0].outputs[4]
    integer = tap.dtype == "int32"
    thresholds = np.array(rule.thresholds, np.float32)
    patient = np.where(np.isinf(thresholds), thresholds, thresholds * np.float32(rule.patient_scale))
    lines = _prologue(segments, spec, _STREAM_INT8_NETWORK if entry else _STREAM_ENTRY)
    distance, below = (
        ("eenn_sum_abs_difference_s32", str(int(rule.reuse_below)))
        if integer
        else ("eenn_mean_abs_difference", nn.c_float(rule.reuse_below))
    )
    lines += [
        "  if ((status = segment_0()) != EENN_OK) return status;",
        f"  if (stream_started && {distance}({tap.name}, stream_reference, {tap.nbytes // 4}) < {below})",
        "    return stream_answer(out, EENN_STREAM_REUSED, stream_scores, 0.0f);",
        f"  memcpy(stream_reference, {tap.name}, sizeof stream_reference);",
        "  stream_started = 1;",
    ]
    for segment in segments:
        if segment.index > 0:
            lines.append(f"  if ((status = segment_{segment.index}()) != EENN_OK) return status;")
        if _has_exit(segment):
            lines.append(f"  if (stream_leaves({_exit_args(segment)}))")
            lines.append(f"    return stream_answer(out, {_exit_args(segment)});")
    lines.append(f"  return stream_answer(out, EENN_EXITS, {_final_args(segments[-1], spec)});")
    test = (
        f"the int32 channel sums of the int8 codes of its tap {tap.name} ({rule.tap}) differ from those of the last "
        f"window computed in full by less than {int(rule.reuse_below)} (sum of absolute differences: the zero point "
        "cancels, the scale folds into the bound)"
        if integer
        else f"its tap features ({tap.name}, {rule.tap} averaged per channel) differ from those of the last window "
        f"computed in full by less than {rule.reuse_below:g} (mean absolute difference)"
    )
    comment = (
        f"Stream decisions (augment --stream): a window takes the last answer when {test}; an exit whose class "
        f"equals each of the stream's last STREAM_PATIENCE answers leaves at {rule.patient_scale:g} of its "
        "threshold. The state below is the current stream's; eenn_stream_reset() starts a new one."
    )
    state = _STREAM_STATE.format(
        comment=_block_comment(comment),
        patience=rule.patience,
        no_answers=", ".join(["-1"] * rule.patience),
        tap=tap.nbytes // 4,
        tap_type=_C_TYPES[tap.dtype][0],
        thresholds=_values(thresholds),
        patient=_values(patient),
    )
    quantizing = _quantizing_entry(entry, _STREAM_ENTRY, "infer_stream_int8_input") if entry else ""
    return state + "\n".join(lines + ["}"]) + quantizing


def _block_comment(text: str) -> str:
    lines = textwrap.wrap(text, 114)
    return "/* " + "\n * ".join(lines) + " */"


def _int8_entry_points(entry: Int8Entry, spec: DriverSpec) -> str:
    """`eenn_infer` quantises, as the model's first call did, then both run the network from its int8 input."""
    copy = f"memcpy({_QUANTIZED_INPUT}, input, EENN_INPUT_ELEMENTS)"
    if entry.read_only:
        # TVM's kernels take tensors as aligned as the arena's (LLVM may load several elements at once)
        why = "The network only reads it: an aligned buffer is read in place, another\n * one from a copy."
        take = f"if ((uintptr_t)input % {spec.alignment}u != 0u) input = {copy};"
    else:
        why = "The network writes into its input tensor: it works on a copy."
        take = f"input = {copy};"
    return f"""{_quantizing_entry(entry, _FLOAT_ENTRY, "infer_int8_input")}

/* Input the caller quantised. {why} */
eenn_status_t eenn_infer_int8(const int8_t *input, eenn_result_t *out) {{
  {take}
  return infer_int8_input(input, out);
}}"""


def _quantizing_entry(entry: Int8Entry, signature: str, network: str) -> str:
    """A float entry point that quantises its input into the arena, as the model's first call did, and runs
    `network` from there."""
    quantize = entry.quantize
    return f"""
/* Float input, quantised into the arena as the model does (EENN_INPUT_SCALE, EENN_INPUT_ZERO_POINT). */
{signature} {{
  /* {quantize.kernel.summary()} */
  {quantize.kernel.call(_params_symbol(quantize), ["input"], _QUANTIZED_INPUT)}
  return {network}({_QUANTIZED_INPUT}, out);
}}"""


def _exit_args(segment: Segment) -> str:
    """exit_taken's arguments after `out` for the exit at the end of `segment`."""
    logits, confidence = segment.outputs[1:3]
    return f"{segment.index}, {logits.name}, *{confidence.name}"


def _weight_symbol(c: Constant) -> str:
    return f"weight_{c.name}"


def _values(value: np.ndarray) -> str:
    flat = value.reshape(-1)
    if flat.size == 0:
        return "  0"
    if value.dtype == np.float32:
        items = [f"{float(v):.9g}f" if np.isfinite(v) else ("INFINITY" if v > 0 else "-INFINITY") for v in flat]
        items = [i if any(ch in i for ch in ".eIN") else i.replace("f", ".0f") for i in items]
    else:
        items = [str(int(v)) for v in flat.astype(np.int64)]
    return ",\n".join("  " + ", ".join(items[i : i + 8]) for i in range(0, len(items), 8))


_STREAM_STATE = """
{comment}
#define STREAM_PATIENCE {patience}
static const float stream_threshold[EENN_EXITS > 0 ? EENN_EXITS : 1] = {{
{thresholds}
}};
static const float stream_patient_threshold[EENN_EXITS > 0 ? EENN_EXITS : 1] = {{
{patient}
}};
static {tap_type} stream_reference[{tap}];
static float stream_scores[EENN_CLASSES];
static int32_t stream_history[STREAM_PATIENCE] = {{{no_answers}}}; /* -1: no answer yet */
static int32_t stream_started;

void eenn_stream_reset(void) {{
  int32_t k;
  stream_started = 0;
  for (k = 0; k < STREAM_PATIENCE; ++k) stream_history[k] = -1;
}}

static int32_t stream_leaves(int32_t exit_index, const float *logits, float confidence) {{
  int32_t k, agrees = 1, predicted = eenn_argmax(logits, EENN_CLASSES);
  for (k = 0; k < STREAM_PATIENCE; ++k) agrees &= stream_history[k] == predicted;
  return confidence >= (agrees ? stream_patient_threshold[exit_index] : stream_threshold[exit_index]);
}}

/* The answer, kept: its scores for the windows that reuse it, its class in the stream's history. */
static eenn_status_t stream_answer(eenn_result_t *out, int32_t exit_index, const float *scores, float confidence) {{
  int32_t k;
  if (scores != stream_scores) memcpy(stream_scores, scores, sizeof stream_scores);
  (void)exit_taken(out, exit_index, stream_scores, confidence);
  for (k = STREAM_PATIENCE - 1; k > 0; --k) stream_history[k] = stream_history[k - 1];
  stream_history[0] = out->class_index;
  return EENN_OK;
}}

"""

_RESULT_HELPERS = """
static eenn_status_t exit_taken(eenn_result_t *out, int32_t exit_index, const float *scores, float confidence) {
  out->scores = scores;
  out->class_index = eenn_argmax(out->scores, EENN_CLASSES);
  out->exit_index = exit_index;
  out->confidence = confidence;
  out->live = NULL;
  out->live_bytes = 0;
  out->live_ndim = 0;
  out->live_shape = NULL;
  return EENN_OK;
}

/* No exit fired on this device: `live` goes to the next tier. The device's last exit is filled in as well: the
 * answer to fall back on (marked degraded) when the next tier does not answer in time. */
static eenn_status_t hand_over(eenn_result_t *out, const DLTensor *live, int32_t exit_index, const float *scores,
                               float confidence) {
  int32_t i;
  (void)exit_taken(out, exit_index, scores, confidence);
  out->live = live->data;
  out->live_ndim = live->ndim;
  out->live_shape = live->shape;
  out->live_bytes = (size_t)(live->dtype.bits / 8);
  for (i = 0; i < live->ndim; ++i) out->live_bytes *= (size_t)live->shape[i];
  return EENN_CONTINUE;
}
"""

_HEADER = """/* eenn_model.h: {model} on {core}, generated by eenn-tvm.
 *
 *   eenn_result_t r;
 *   if (eenn_infer(input, &r) == EENN_OK) use(r.class_index, r.exit_index, r.confidence);
 *
 * No allocation, no I/O: all memory is static (arena {arena} bytes, workspace {workspace} bytes; the most
 * alive at once is {lower_bound} bytes). Not reentrant: one inference at a time. */
#ifndef EENN_MODEL_H
#define EENN_MODEL_H

#include <stddef.h>
#include <stdint.h>

#define EENN_INPUT_ELEMENTS {input_elements} /* float32 {input_shape}, laid out as in the ONNX model */
#define EENN_CLASSES {classes}
#define EENN_EXITS {exits} /* early exits on this device; exit_index EENN_EXITS is the end of the network */
#define EENN_SEGMENTS {segments}
#define EENN_ARENA_BYTES {arena}
#define EENN_WORKSPACE_BYTES {workspace}
#define EENN_LIVE_BYTES {live_bytes} /* what EENN_CONTINUE hands to the next tier (0: the network ends here) */
{int8_input}
typedef enum {{
  EENN_OK = 0,           /* decided: class, exit and confidence are set */
  EENN_CONTINUE = 1,     /* no exit fired on this device: send `live` to the next tier; class, exit and
                            confidence are this device's last exit, the answer if the next tier does not give one */
  EENN_ERROR_KERNEL = -1 /* a kernel failed (workspace too small or a bad argument) */
}} eenn_status_t;

typedef struct {{
  int32_t class_index;
  int32_t exit_index;
  float confidence;          /* of the exit taken, by the plan's decision rule */
  const float *scores;       /* EENN_CLASSES outputs there (logits, or the model's own output at the end) */
  const void *live;          /* EENN_CONTINUE: the activation the next tier continues from, */
  size_t live_bytes;         /*   its size, */
  int32_t live_ndim;         /*   and shape; valid until the next call */
  const int64_t *live_shape;
}} eenn_result_t;

eenn_status_t eenn_infer(const float *input, eenn_result_t *out);{more_entries}

#endif /* EENN_MODEL_H */
"""

_INT8_INPUT = """
/* int8 networks: eenn_infer quantises its input as x_q = clamp(round_half_to_even(x / EENN_INPUT_SCALE) +
 * EENN_INPUT_ZERO_POINT, -128, 127), the division in float32; eenn_infer_int8 takes x_q (an int8 sensor pipeline's
 * output) and gives the same result. {how} */
#define EENN_INPUT_SCALE {scale}
#define EENN_INPUT_ZERO_POINT {zero_point}
"""

_INT8_INFER = "\neenn_status_t eenn_infer_int8(const int8_t *input, eenn_result_t *out);"

_STREAM_INFER = """

/* Streams (augment --stream): eenn_infer_stream decides a window from what the windows before it in the same stream
 * gave; eenn_stream_reset() starts a new stream (a new recording, or after a gap). A window close enough to the last
 * one computed in full takes its answer: exit_index EENN_STREAM_REUSED, scores those of that window. */
#define EENN_STREAM_REUSED (-1)
void eenn_stream_reset(void);
eenn_status_t eenn_infer_stream(const float *input, eenn_result_t *out);"""
