"""Benchmark: the kernel library (targets/mcu/runtime/eenn_nn.h) layer by layer on the MLPerf Tiny ResNet-8 and
DS-CNN, int8 and float32, in QEMU, beside TVM's own kernels (what `eenn-tvm build --kernels llvm` uses).

    python bench/kernels.py [--cores cortex-m4 ...] [--no-tvm] [--json bench/kernels.json]

Every convolution, dense layer, pool and add of each model (shapes and float weights read from the ONNX file;
int8 weights quantised per output channel, activations random) runs as one library call in a program made by
nn_runner.py; its instructions come from SysTick under `qemu-system-arm -icount shift=0` (exact: one instruction
per tick of the virtual clock), less the harness's own. Each output is checked against the integer reference
(bit for bit) or numpy (float32, 1e-5). TVM's kernels are measured per call in the firmware `build --kernels llvm`
writes, compiled with -DEENN_PROFILE (board/profile_main.c): their convolutions include the fused bias, ReLU and
residual add. Instructions per MAC of a whole network = all its layers' instructions / its MACs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from eenn_tvm.frontend import load_onnx, resolve_input_shapes, simplify
from eenn_tvm.quantized import reference as ref
from eenn_tvm.targets.mcu import nn_library as nn
from eenn_tvm.targets.mcu.build import build_firmware
from eenn_tvm.targets.mcu.cores import CORES, core_named
from eenn_tvm.targets.mcu.float_reference import conv2d_f32
from eenn_tvm.targets.mcu.manifest import FirmwareManifest
from eenn_tvm.targets.mcu.nn_runner import Call, run_calls
from eenn_tvm.targets.mcu.qemu import qemu_command
from eenn_tvm.textui import format_table

HERE = Path(__file__).resolve().parent
MLPERF = Path(os.environ.get("EENN_SHARED", HERE.parents[1] / "shared")) / "models" / "mlperf-tiny"
MODELS = {"resnet8": MLPERF / "resnet8_cifar10.onnx", "dscnn": MLPERF / "kws_dscnn.onnx"}
TARGETS = {"resnet8": {"int8": 2.0, "float32": 3.5}, "dscnn": {"int8": 2.5}}  # issue 15: instructions per MAC on M4
MIN_REGION = 300_000  # instructions per timed region: the counter steps by a few dozen


@dataclass
class Layer:
    name: str
    op: str  # conv, depthwise, pointwise, dense, add, avg_pool, max_pool
    shape: str  # input -> output, NCHW as the model has it
    macs: int
    weight_shape: tuple[int, ...] | None  # OIHW or [out, in]: how TVM's call for it is recognised
    output_shape: tuple[int, ...]
    calls: dict[str, Call] = field(default_factory=dict)  # dtype -> the library call
    expected: dict[str, np.ndarray] = field(default_factory=dict)


def layers_of(path: Path, rng: np.random.Generator) -> list[Layer]:
    """The model's layers in ONNX order, each with an int8 and a float32 call on random activations."""
    model = load_onnx(path)
    model = onnx.shape_inference.infer_shapes(simplify(model, resolve_input_shapes(model, None)))
    graph = model.graph
    shapes = {v.name: tuple(d.dim_value for d in v.type.tensor_type.shape.dim) for v in graph.value_info}
    shapes |= {v.name: tuple(d.dim_value for d in v.type.tensor_type.shape.dim) for v in [*graph.input, *graph.output]}
    weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    layers = []
    for node in graph.node:
        after = consumers.get(node.output[0], [])
        relu = len(after) == 1 and after[0].op_type == "Relu"
        output = after[0].output[0] if relu else node.output[0]
        make = _LAYERS.get(node.op_type)
        if make is not None:
            layers.append(make(node, shapes, weights, shapes[output], relu, rng))
    return layers


def _attributes(node) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _conv(node, shapes, weights, out_shape, relu, rng) -> Layer:
    a = _attributes(node)
    x_shape, w = shapes[node.input[0]], weights[node.input[1]]
    bias = weights[node.input[2]] if len(node.input) > 2 else np.zeros(w.shape[0], np.float32)
    group = a.get("group", 1)
    depthwise = group > 1
    if depthwise and group != x_shape[1]:
        raise ValueError(f"{node.name}: grouped convolution with {group} groups is not in the library")
    pads = tuple(a.get("pads", [0, 0, 0, 0]))
    strides, dilations = tuple(a.get("strides", [1, 1])), tuple(a.get("dilations", [1, 1]))
    kernel = w.shape[2:]
    window = nn.Window.sliding((x_shape[2], x_shape[3], x_shape[1]), kernel, w.shape[0], strides, pads, dilations)
    op = "depthwise" if depthwise else ("pointwise" if kernel == (1, 1) else "conv")
    layer = _layer(node, op, x_shape, out_shape, w.shape)
    layer.macs = window.output_size * math.prod(kernel) * (1 if depthwise else x_shape[1])
    groups = x_shape[1] if depthwise else 1
    library_layout = (lambda t: t[:, 0].transpose(1, 2, 0)) if depthwise else (lambda t: t.transpose(0, 2, 3, 1))
    geometry = {"strides": strides, "pads": pads, "dilations": dilations, "groups": groups}

    x = rng.integers(-128, 128, x_shape[1:], dtype=np.int8)
    z_in, output = -128, nn.Output(-128, -128, 127) if relu else nn.Output(int(rng.integers(-20, 20)))
    w_q, bias_q = _quantised_weights(w, bias, rng)
    terms = math.prod(kernel) * (1 if depthwise else x_shape[1])
    multipliers, shifts = _multipliers(rng, terms, w.shape[0])
    layer.calls["int8"] = Call(
        nn.ConvS8(window, z_in, library_layout(w_q), bias_q, multipliers, shifts, output, depthwise), [_hwc(x)]
    )
    layer.expected["int8"] = ref.conv(
        x[None], w_q, bias_q, multipliers, shifts, strides=strides, padding=pads, dilation=dilations, groups=groups,
        input_zero_point=z_in, **_requantized(output),
    )  # fmt: skip
    xf = rng.standard_normal(x_shape[1:]).astype(np.float32)
    lo = 0.0 if relu else -math.inf
    layer.calls["float32"] = Call(nn.ConvF32(window, library_layout(w), bias, lo, math.inf, depthwise), [_hwc(xf)])
    layer.expected["float32"] = conv2d_f32(xf[None], w, bias, lo, math.inf, **geometry)
    return layer


def _gemm(node, shapes, weights, out_shape, relu, rng) -> Layer:
    a = _attributes(node)
    w = weights[node.input[1]]
    w = w if a.get("transB", 0) else w.T
    bias = weights[node.input[2]] if len(node.input) > 2 else np.zeros(w.shape[0], np.float32)
    layer = _layer(node, "dense", shapes[node.input[0]], out_shape, w.shape)
    layer.macs = int(w.size)
    x = rng.integers(-128, 128, w.shape[1], dtype=np.int8)
    w_q, bias_q = _quantised_weights(w, bias, rng)
    multipliers, shifts = _multipliers(rng, w.shape[1], w.shape[0])
    output = nn.Output(int(rng.integers(-20, 20)))
    layer.calls["int8"] = Call(nn.DenseS8(w_q, bias_q, -128, multipliers, shifts, output), [x])
    layer.expected["int8"] = ref.dense(
        x[None], w_q, bias_q, multipliers, shifts, input_zero_point=-128, **_requantized(output)
    )
    xf = rng.standard_normal(w.shape[1]).astype(np.float32)
    layer.calls["float32"] = Call(nn.DenseF32(w, bias), [xf])
    layer.expected["float32"] = w.astype(np.float64) @ xf + bias
    return layer


def _add(node, shapes, weights, out_shape, relu, rng) -> Layer:
    shape = shapes[node.input[0]]
    size = math.prod(shape)
    layer = _layer(node, "add", shape, out_shape, None)
    a, b = rng.integers(-128, 128, (2, *shape[1:]), dtype=np.int8)
    (m_a, r_a), (m_b, r_b), (m_o, r_o) = scales = [
        ref.quantize_multiplier(m) for m in (0.05 / 0.16, 0.08 / 0.16, 0.16 / ((1 << ref.ADD_LEFT_SHIFT) * 0.1))
    ]
    output = nn.Output(-128, -128, 127) if relu else nn.Output(0)
    layer.calls["int8"] = Call(nn.AddS8(size, 3, -5, *scales, output), [_hwc(a), _hwc(b)])
    layer.expected["int8"] = ref.add(
        a, b, lhs_zero_point=3, lhs_multiplier=m_a, lhs_shift=r_a, rhs_zero_point=-5, rhs_multiplier=m_b,
        rhs_shift=r_b, output_multiplier=m_o, output_shift=r_o, left_shift=ref.ADD_LEFT_SHIFT, **_requantized(output),
    )  # fmt: skip
    af, bf = rng.standard_normal((2, *shape[1:])).astype(np.float32)
    lo = 0.0 if relu else -math.inf
    layer.calls["float32"] = Call(nn.AddF32(size, lo), [_hwc(af), _hwc(bf)])
    layer.expected["float32"] = np.maximum(af.astype(np.float64) + bf, lo)
    return layer


def _pool(node, shapes, weights, out_shape, relu, rng) -> Layer:
    a = _attributes(node)
    shape = shapes[node.input[0]]
    average = node.op_type != "MaxPool"
    kernel = tuple(a.get("kernel_shape", shape[2:]))  # ReduceMean over H and W: the whole map
    strides = tuple(a.get("strides", kernel))
    pads = tuple(a.get("pads", [0, 0, 0, 0]))
    window = nn.Window.sliding((shape[2], shape[3], shape[1]), kernel, None, strides, pads)
    layer = _layer(node, "avg_pool" if average else "max_pool", shape, out_shape, None)
    x = rng.integers(-128, 128, shape[1:], dtype=np.int8)
    xf = rng.standard_normal(shape[1:]).astype(np.float32)
    windows = np.lib.stride_tricks.sliding_window_view(xf.astype(np.float64), kernel, axis=(1, 2))
    windows = windows[:, :: strides[0], :: strides[1]]
    if average:
        scale = ref.quantize_multiplier(0.5 / math.prod(kernel))
        layer.calls["int8"] = Call(nn.AvgPoolS8(window, -128, scale, nn.Output(-128)), [_hwc(x)])
        layer.expected["int8"] = ref.avg_pool(
            x[None], pool_size=kernel, strides=strides, padding=pads, input_zero_point=-128, multiplier=scale[0],
            shift=scale[1], **_requantized(nn.Output(-128)),
        )  # fmt: skip
        layer.expected["float32"] = windows.mean(axis=(-2, -1))
    else:
        layer.calls["int8"] = Call(nn.MaxPoolS8(window), [_hwc(x)])
        layer.expected["int8"] = ref.max_pool(
            x[None], pool_size=kernel, strides=strides, padding=pads, dilation=(1, 1), input_zero_point=0,
            multiplier=1 << 30, shift=30, **_requantized(nn.Output(0)),
        )  # fmt: skip
        layer.expected["float32"] = windows.max(axis=(-2, -1))
    layer.calls["float32"] = Call(nn.PoolF32(window, average), [_hwc(xf)])
    return layer


_LAYERS = {"Conv": _conv, "Gemm": _gemm, "Add": _add, "AveragePool": _pool, "MaxPool": _pool, "ReduceMean": _pool}


def _layer(node, op, in_shape, out_shape, weight_shape) -> Layer:
    shape = f"{'x'.join(map(str, in_shape[1:]))} -> {'x'.join(map(str, out_shape[1:]))}"
    return Layer(node.name or node.output[0], op, shape, 0, weight_shape and tuple(weight_shape), tuple(out_shape))


def _requantized(output: nn.Output) -> dict:
    return {"output_zero_point": output.zero_point, "act_min": output.min, "act_max": output.max}


def _hwc(x: np.ndarray) -> np.ndarray:
    """CHW (the model's layout, batch dropped) to the library's HWC."""
    return np.ascontiguousarray(x.transpose(1, 2, 0)) if x.ndim == 3 else x


def _quantised_weights(w: np.ndarray, bias: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel symmetric int8 weights, and a bias in the accumulator's scale (s_in taken as 1/64)."""
    flat = w.reshape(w.shape[0], -1)
    scales = np.maximum(np.abs(flat).max(axis=1), 1e-12) / 127
    w_q = np.clip(np.rint(flat / scales[:, None]), -127, 127).astype(np.int8).reshape(w.shape)
    bias_q = np.clip(np.rint(bias / (scales / 64)), -(1 << 24), 1 << 24).astype(np.int32)
    return w_q, bias_q


def _multipliers(rng, terms: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Requantisation that puts outputs a few dozen steps from zero (the counts do not depend on it)."""
    reals = 40 / (math.sqrt(terms) * 1.2e4) * 2.0 ** rng.uniform(-1, 1, channels)
    pairs = [ref.quantize_multiplier(r) for r in reals]
    return np.array([m for m, _ in pairs], np.int32), np.array([s for _, s in pairs], np.int32)


def measure_library(layers: list[Layer], core: str) -> dict[str, list[dict]]:
    """Per dtype, per layer: instructions and whether the output matched the reference."""
    measured: dict[str, list[dict]] = {}
    for dtype in ("int8", "float32"):
        calls = []
        for layer in layers:
            call = layer.calls[dtype]
            estimate = 3 * max(layer.macs, call.kernel.output_spec()[1])
            calls.append(Call(call.kernel, call.inputs, repeats=max(1, -(-MIN_REGION // estimate))))
        results = run_calls(calls, core)
        measured[dtype] = [
            {"instructions": r.instructions, "matches": _matches(r.output, layer.expected[dtype], dtype)}
            for layer, r in zip(layers, results)
        ]
    return measured


def _matches(output: np.ndarray, expected: np.ndarray, dtype: str) -> bool:
    expected = expected[0] if expected.ndim == 4 or expected.ndim == 2 else expected
    expected = _hwc(expected).reshape(-1)
    if dtype == "int8":
        return bool(np.array_equal(output, expected))
    tolerance = 1e-5 * max(float(np.abs(expected).max()), 1.0)
    return bool(np.allclose(output, expected, rtol=1e-5, atol=tolerance))


def measure_tvm(model: Path, layers: list[Layer], core: str, scratch: Path) -> tuple[list[float | None], float]:
    """TVM's kernels as `build` makes them, per call: instructions of the call matched to each layer (None for
    layers TVM fused into another call), and of everything else (reshapes, softmax)."""
    folder = scratch / f"tvm-{model.stem}-{core}"
    tvm_only = core_named(core).kernels  # TVM's kernels for every layer, compiled as the core builds them best
    manifest = build_firmware(model, core, folder, kernel_kind=tvm_only, flash_budget=8 << 20, ram_budget=1 << 20)
    calls = _tvm_calls(folder)
    counts = _profile(folder, manifest, core)
    per_layer: list[float | None] = [None] * len(layers)
    other = 0.0
    for (kernel, weight_shape, output_shape), count in zip(calls, counts):
        index = next(
            (
                i
                for i, layer in enumerate(layers)
                if per_layer[i] is None and _is_call_of(kernel, weight_shape, output_shape, layer)
            ),
            None,
        )
        if index is None:
            other += count
        else:
            per_layer[index] = count
    return per_layer, other


def _is_call_of(kernel: str, weight_shape, output_shape, layer: Layer) -> bool:
    if "conv2d" in kernel:
        return layer.op in ("conv", "depthwise", "pointwise") and weight_shape == layer.weight_shape
    if "matmul" in kernel or "dense" in kernel:
        return layer.op == "dense" and output_shape == layer.output_shape
    if "pool" in kernel or "mean" in kernel:
        return layer.op.endswith("pool") and output_shape[:2] == layer.output_shape[:2]
    return layer.op == "add" and kernel.startswith("fused_add") and output_shape == layer.output_shape


def _tvm_calls(folder: Path) -> list[tuple[str, tuple, tuple]]:
    """(kernel, shape of its second argument, shape of its output) of every EENN_RUN line, in driver order."""
    source = (folder / "eenn_model.c").read_text()
    shapes = {
        m[0]: tuple(int(v) for v in m[1].split(","))
        for m in re.findall(r"int64_t (\w+)_shape\[\] = \{([^}]*)\}", source)
    }
    calls = []
    for kernel, args in re.findall(r"EENN_RUN\(EENN_ERROR_KERNEL, __tvm_ffi_(\w+), ([^)]*)\);", source):
        names = [a.strip().lstrip("&") for a in args.split(",")]
        calls.append((kernel, shapes.get(names[1]) if len(names) > 2 else None, shapes[names[-1]]))
    return calls


def _profile(folder: Path, manifest: FirmwareManifest, core: str) -> list[float]:
    """Instructions of every kernel call of the firmware in `folder`, from a -DEENN_PROFILE build."""
    target = core_named(core)
    kernels = folder / ("kernels/kernels.c" if manifest.codegen == "c" else f"kernels/kernels_{core}.o")
    sources = ["eenn_model.c", "eenn_weights.c", "runtime/eenn_runtime.c", "board/profile_main.c", "board/startup.c"]
    elf = folder / "profile.elf"
    command = [
        "arm-none-eabi-gcc",
        *target.gcc_flags,
        "-O2",
        "-std=c99",
        "-ffunction-sections",
        "-fdata-sections",
        "-Wl,--gc-sections",
        "-DEENN_PROFILE",
        *(f"-I{folder / d}" for d in (".", "runtime", "include", "board")),
        *(str(folder / s) for s in sources),
        str(folder / "board" / "board_mps.c"),
        str(kernels),
        "-nostartfiles",
        "--specs=rdimon.specs",
        f"-T{folder / 'board' / (target.board.machine + '.ld')}",
        "-lm",
        "-o",
        str(elf),
    ]
    subprocess.run(command, check=True, capture_output=True)
    out = subprocess.run(qemu_command(elf, target.board.machine), capture_output=True, text=True, timeout=900).stdout
    summary = re.search(r"calls=(\d+) milli_instructions_per_tick=(\d+) empty_ticks=(\d+) regions=(\d+)", out)
    milli, empty = int(summary.group(2)), int(summary.group(3)) / int(summary.group(4))
    return [(int(t) - empty) * milli / 1000 for t in re.findall(r"call \d+ ticks (\d+)", out)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", nargs="*", default=list(CORES))
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--no-tvm", action="store_true", help="skip TVM's kernels (the baseline)")
    parser.add_argument("--json", default=str(HERE / "kernels.json"))
    args = parser.parse_args()
    report = {"machine": platform.node(), "python": platform.python_version(), "models": {}}
    with tempfile.TemporaryDirectory(prefix="eenn-bench-kernels-") as scratch:
        for name in args.models:
            layers = layers_of(MODELS[name], np.random.default_rng(0))
            per_core = {}
            for core in args.cores:
                per_core[core] = measure_library(layers, core)
                if not args.no_tvm:
                    per_core[core]["tvm_float32"], per_core[core]["tvm_other"] = measure_tvm(
                        MODELS[name], layers, core, Path(scratch)
                    )
                print(f"{name} {core}: measured", flush=True)
            report["models"][name] = _model_report(name, layers, per_core)
    _print_tables(report)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")


def _model_report(name: str, layers: list[Layer], per_core: dict) -> dict:
    macs = sum(layer.macs for layer in layers)
    cores = {}
    for core, measured in per_core.items():
        totals = {dtype: sum(m["instructions"] for m in measured[dtype]) / macs for dtype in ("int8", "float32")}
        if "tvm_float32" in measured:
            known = [c for c in measured["tvm_float32"] if c is not None]
            totals["tvm_float32"] = (sum(known) + measured["tvm_other"]) / macs
        matches = all(m["matches"] for dtype in ("int8", "float32") for m in measured[dtype])
        cores[core] = {"instructions_per_mac": totals, "all_outputs_match": matches}
    rows = []
    for i, layer in enumerate(layers):
        row = {"layer": layer.name, "op": layer.op, "shape": layer.shape, "macs": layer.macs, "instructions": {}}
        for core, measured in per_core.items():
            row["instructions"][core] = {dtype: measured[dtype][i]["instructions"] for dtype in ("int8", "float32")}
            if "tvm_float32" in measured:
                row["instructions"][core]["tvm_float32"] = measured["tvm_float32"][i]
        rows.append(row)
    return {"macs": macs, "targets_cortex_m4": TARGETS.get(name, {}), "cores": cores, "layers": rows}


def _print_tables(report: dict) -> None:
    for name, model in report["models"].items():
        core = "cortex-m4" if "cortex-m4" in model["cores"] else next(iter(model["cores"]))
        table = []
        for row in model["layers"]:
            counts = row["instructions"][core]
            table.append(
                [
                    row["op"],
                    row["shape"],
                    f"{row['macs']:,}",
                    _per_mac(counts["int8"], row["macs"]),
                    _per_mac(counts["float32"], row["macs"]),
                    _per_mac(counts.get("tvm_float32"), row["macs"]),
                ]
            )
        totals = model["cores"][core]["instructions_per_mac"]
        table.append(
            [
                "network",
                "",
                f"{model['macs']:,}",
                f"{totals['int8']:.2f}",
                f"{totals['float32']:.2f}",
                f"{totals['tvm_float32']:.2f}" if "tvm_float32" in totals else "-",
            ]
        )
        print(f"\n{name} on {core}: instructions per MAC (per layer without MACs: instructions)")
        print(format_table(["op", "shape", "MACs", "int8", "float32", "TVM float32"], table))
        summary = [
            [
                c,
                f"{v['instructions_per_mac']['int8']:.2f}",
                f"{v['instructions_per_mac']['float32']:.2f}",
                f"{v['instructions_per_mac'].get('tvm_float32', float('nan')):.2f}",
                "yes" if v["all_outputs_match"] else "NO",
            ]
            for c, v in model["cores"].items()
        ]
        print(f"\n{name}: whole network, instructions per MAC")
        print(format_table(["core", "int8", "float32", "TVM float32", "outputs match"], summary))


def _per_mac(count: float | None, macs: int) -> str:
    """Instructions per MAC, or instructions where the layer has no MACs (pools, adds)."""
    if count is None:
        return "-"
    return f"{count / macs:.2f}" if macs else f"{count:,.0f}"


if __name__ == "__main__":
    main()
