"""Benchmark: what `eenn-tvm build` makes, on every emulated Cortex-M core: int8 and float32 through the kernel
library against TVM's own kernels, for the MLPerf Tiny ResNet-8 and DS-CNN and the example's early-exit network,
beside the published MLPerf Tiny figures.

    python bench/mcu.py [--eenn out/fashion_mnist --eenn-data examples/fashion_mnist/test.npz] [--cores ...]
                        [--builds int8 float32 tvm] [--json bench/mcu.json]

Per model, core and build: instructions per inference (QEMU -icount shift=0: deterministic, so one run is exact),
instructions per MAC (of the convolutions and dense layers; for the early-exit network over the samples that ran to
its end, against the MACs the plan counts to get there), flash and RAM (firmware.json), and whether every sample
matched the host (`verify`: int8 bit for bit with the int8 host module). Builds: `int8` and `float32` (`--dtype`,
the kernel library where it has the op, TVM's kernels for the rest) and `tvm` (float32, TVM's kernels only: LLVM's
Thumb objects, gcc on TVM's C on the Cortex-M0+). The int8 models: ResNet-8 quantised on its 20 real CIFAR-10 images
(also its test split), DS-CNN on random MFCC-scaled inputs (no real data: no accuracy), the example's early-exit
network as `eenn-tvm quantize` leaves it (accuracy on the test data given).

Published figures are cycles; QEMU counts instructions. On a Cortex-M4 most instructions of these kernels take one
cycle, but not all: LDM of n words takes n + 1, a load right after a load may stall, a taken branch refills the
pipeline (2-4 cycles), and flash wait states add more at clock rates above ~24 MHz. A real part therefore spends more
cycles than the instructions counted here; how many more is not measured (no hardware in this loop).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

import numpy as np
import onnx

from eenn_tvm.errors import EennError
from eenn_tvm.frontend import load_onnx, resolve_input_shapes, simplify
from eenn_tvm.macs import node_macs
from eenn_tvm.outputs import Output
from eenn_tvm.quantize import quantize_model
from eenn_tvm.targets.mcu.build import build_firmware
from eenn_tvm.targets.mcu.cores import CORES, core_named
from eenn_tvm.targets.mcu.verify import verify
from eenn_tvm.textui import format_table

HERE = Path(__file__).resolve().parent
MLPERF = Path(os.environ.get("EENN_SHARED", HERE.parents[1] / "shared")) / "models" / "mlperf-tiny"
BUILDS = {"int8": {"dtype": "int8"}, "float32": {"dtype": "float32"}, "tvm": {"dtype": "float32"}}
RAM_FOR_ALL = 1 << 20  # measure every model on every core, whatever a typical part has
TARGETS_CORTEX_M4 = {"resnet8": {"int8": 2.0, "float32": 3.5}, "dscnn": {"int8": 2.5}}  # issue 15, per MAC

# Published MLPerf Tiny figures, as cycles per MAC (ResNet-8: 12.5 M MACs). Sources as issue 15 cites them.
PUBLISHED = [
    {
        "system": "X-CUBE-AI 8.0, int8",
        "model": "MLPerf Tiny ResNet-8",
        "core": "Cortex-M4 (NUCLEO-L4R5ZI, 120 MHz)",
        "reported": "222 ms",
        "cycles_per_mac": 222e-3 * 120e6 / 12.5e6,
        "source": "MLPerf Tiny v1.0 results",
    },
    {
        "system": "microTVM, int8",
        "model": "MLPerf Tiny ResNet-8",
        "core": "Cortex-M4 (NUCLEO-L4R5ZI, 120 MHz)",
        "reported": "389 ms",
        "cycles_per_mac": 389e-3 * 120e6 / 12.5e6,
        "source": "MLPerf Tiny v1.0 results",
    },
    {
        "system": "TinyEngine, int8",
        "model": "mcunet-vww0",
        "core": "Cortex-M7",
        "reported": "~2.2 cycles/MAC",
        "cycles_per_mac": 2.2,
        "source": "TinyEngine's README",
    },
    {
        "system": "TFLite Micro + CMSIS-NN, int8",
        "model": "mcunet-vww0",
        "core": "Cortex-M7",
        "reported": "~4.2 cycles/MAC",
        "cycles_per_mac": 4.2,
        "source": "TinyEngine's README",
    },
]


def workloads(args, scratch: Path) -> list[dict]:
    """Each model: its float32 and int8 sources, the data to run, how many samples, its MACs (None: from the plan)."""
    rng = np.random.default_rng(0)
    mfcc = scratch / "mfcc.npz"
    np.savez(mfcc, x=(10 * rng.standard_normal((50, 1, 49, 10))).astype(np.float32), y=np.zeros(50, np.int64))
    cifar = MLPERF / "cifar10_20_images.npz"
    found = [
        _plain("resnet8", MLPERF / "resnet8_cifar10.onnx", cifar, 20, scratch),
        _plain("dscnn", MLPERF / "kws_dscnn.onnx", mfcc, 2, scratch, accuracy=False),
    ]
    if args.eenn:
        source = Path(args.eenn)
        found.append(
            {"name": "example", "float32": source, "int8": source, "data": Path(args.eenn_data), "samples": 200}
            | {"macs": None, "accuracy": True}
        )
    return found


def _plain(name: str, model: Path, data: Path, samples: int, scratch: Path, accuracy: bool = True) -> dict:
    int8 = scratch / f"{name}_int8.onnx"
    quantize_model(model, data, int8)
    return {"name": name, "float32": model, "int8": int8, "data": data, "samples": samples} | {
        "macs": weight_macs(model),
        "accuracy": accuracy,
    }


def weight_macs(path: Path) -> int:
    """MACs of the convolutions and dense layers (the figure MLPerf Tiny quotes: 12.5 M for ResNet-8)."""
    model = load_onnx(path)
    model = onnx.shape_inference.infer_shapes(simplify(model, resolve_input_shapes(model, None)))
    graph = model.graph
    infos = [*graph.value_info, *graph.input, *graph.output]
    shapes = {v.name: tuple(d.dim_value for d in v.type.tensor_type.shape.dim) for v in infos}
    shapes |= {t.name: tuple(t.dims) for t in graph.initializer}
    return sum(node_macs(n, shapes) for n in graph.node if n.op_type in ("Conv", "Gemm", "MatMul"))


def measure(workload: dict, core: str, build: str, scratch: Path) -> dict:
    out = scratch / f"{workload['name']}-{core}-{build}"
    kernels = core_named(core).kernels if build == "tvm" else "library"
    options = {"kernel_kind": kernels, "flash_budget": 8 << 20, "ram_budget": RAM_FOR_ALL, **BUILDS[build]}
    row = {"model": workload["name"], "core": core, "build": build}
    try:
        source = workload["int8" if build == "int8" else "float32"]
        manifest = build_firmware(source, core, Output.of(out, "firmware", [source]), **options)
    except EennError as err:
        return row | {"error": str(err)}
    result = verify(out, workload["data"], workload["samples"])
    full_pass = next(r for r in result.instructions_per_exit if r["exit"] == "end")
    macs = workload["macs"] or full_pass["plan_macs"]
    return row | {
        "instructions": result.instructions_mean,
        "instructions_full_pass": full_pass["instructions_mean"],
        "instructions_per_mac": full_pass["instructions_mean"] / macs,
        "macs": macs,
        "flash": result.flash_bytes,
        "ram": result.ram_bytes,
        "arena_at_lower_bound": manifest.memory.arena_bytes == manifest.memory.lower_bound_bytes,
        "matches": result.matches,
        "max_abs_error": result.max_abs_error,
        "onnxruntime_agreement": result.onnxruntime_agreement,
        "accuracy": result.accuracy if workload["accuracy"] else None,
        "samples": result.samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eenn", help="an `eenn-tvm augment` output folder, quantised (`eenn-tvm quantize`)")
    parser.add_argument("--eenn-data", help="held-out data for it")
    parser.add_argument("--cores", nargs="*", default=list(CORES))
    parser.add_argument("--builds", nargs="*", default=list(BUILDS), choices=list(BUILDS))
    parser.add_argument("--json", default=str(HERE / "mcu.json"))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="eenn-bench-mcu-") as scratch:
        for workload in workloads(args, Path(scratch)):
            for core in args.cores:
                for build in args.builds:
                    rows.append(measure(workload, core, build, Path(scratch)))
                    print(f"{workload['name']} {core} {build}: done", flush=True)
    report = {
        "machine": platform.node(),
        "python": platform.python_version(),
        "targets_cortex_m4": TARGETS_CORTEX_M4,
        "published": PUBLISHED,
        "results": rows,
    }
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print_tables(report)
    print(f"wrote {args.json}")


def print_tables(report: dict) -> None:
    rows = report["results"]
    builds = list(dict.fromkeys(r["build"] for r in rows))
    for model in dict.fromkeys(r["model"] for r in rows):
        table = []
        for core in dict.fromkeys(r["core"] for r in rows if r["model"] == model):
            cells = {r["build"]: r for r in rows if r["model"] == model and r["core"] == core}
            table.append(
                [core]
                + [_per_mac(cells.get(b)) for b in builds]
                + [_memory(cells.get(b)) for b in builds]
                + ["yes" if all(c.get("matches") for c in cells.values()) else "NO"]
            )
        print(f"\n{model}: instructions per MAC; flash / RAM in KiB")
        print(format_table(["core", *builds, *(f"{b} flash/RAM" for b in builds), "match"], table))
    accuracy = [
        [r["model"], r["core"], f"{100 * r['accuracy']:.2f}%", str(r["samples"])]
        for r in rows
        if r["build"] == "int8" and r.get("accuracy") is not None and r["core"] == "cortex-m4"
    ]
    if accuracy:
        print("\nint8 accuracy on the data run (Cortex-M4 firmware)")
        print(format_table(["model", "core", "accuracy", "samples"], accuracy))
    published = [[p["system"], p["model"], p["core"], p["reported"], f"{p['cycles_per_mac']:.2f}"] for p in PUBLISHED]
    print("\npublished (cycles per MAC; ours above are instructions, see the caveat in bench/mcu.py)")
    print(format_table(["system", "model", "core", "reported", "cycles / MAC"], published))


def _per_mac(row: dict | None) -> str:
    if row is None:
        return "-"
    return f"{row['instructions_per_mac']:.2f}" if "instructions_per_mac" in row else "does not build"


def _memory(row: dict | None) -> str:
    if row is None or "flash" not in row:
        return "-"
    return f"{row['flash'] / 1024:.0f} / {row['ram'] / 1024:.0f}"


if __name__ == "__main__":
    main()
