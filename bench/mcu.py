"""Benchmark: the firmware on every emulated Cortex-M core, LLVM Thumb kernels against TVM's C compiled by gcc.

    python bench/mcu.py [--eenn out/fashion_mnist --eenn-data examples/fashion_mnist/test.npz] [--json bench/mcu.json]

For each model and core: instructions per inference (QEMU -icount: deterministic, so one run is exact),
flash and RAM, for both kernel kinds, and the ratio c / llvm. This is the measurement behind the per-core
default of `eenn-tvm build --kernels auto`. Models: the MLPerf Tiny ResNet-8 (real CIFAR-10 images) and
DS-CNN (random MFCC-scaled inputs), and an `augment` output if given (its exits make the count data-dependent:
the mean over the samples is shown).
"""

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

import numpy as np

from eenn_tvm.errors import EennError
from eenn_tvm.outputs import Output
from eenn_tvm.targets.mcu.build import build_firmware
from eenn_tvm.targets.mcu.verify import verify
from eenn_tvm.textui import format_table

HERE = Path(__file__).resolve().parent
MLPERF = Path(os.environ.get("EENN_SHARED", HERE.parents[1] / "shared")) / "models" / "mlperf-tiny"
CORES = ["cortex-m0plus", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55"]
KINDS = ["llvm", "c"]
RAM_FOR_ALL = 1 << 20  # measure every model on every core, whatever a typical part has


def workloads(args, scratch: Path) -> list[tuple[str, Path, Path, int]]:
    rng = np.random.default_rng(0)
    mfcc = scratch / "mfcc.npz"
    np.savez(mfcc, x=(10 * rng.standard_normal((4, 1, 49, 10))).astype(np.float32), y=np.zeros(4, np.int64))
    found = [
        ("resnet8_cifar10 (MLPerf Tiny)", MLPERF / "resnet8_cifar10.onnx", MLPERF / "cifar10_20_images.npz", 4),
        ("kws_dscnn (MLPerf Tiny)", MLPERF / "kws_dscnn.onnx", mfcc, 2),
    ]
    if args.eenn:
        found.append((f"{Path(args.eenn).name} (early-exit)", Path(args.eenn), Path(args.eenn_data), args.eenn_samples))
    return found


def measure(source: Path, data: Path, samples: int, core: str, kind: str, scratch: Path) -> dict:
    out = scratch / f"{core}-{kind}"
    try:
        output = Output.of(out, "firmware", [source])
        build_firmware(source, core, output, kernel_kind=kind, flash_budget=8 << 20, ram_budget=RAM_FOR_ALL)
    except EennError as err:  # e.g. LLVM's soft-float helper names on Armv6-M
        return {"core": core, "kernels": kind, "error": str(err)}
    result = verify(out, data, samples)
    return {
        "core": core,
        "kernels": kind,
        "instructions": result.instructions_mean,
        "flash": result.flash_bytes,
        "ram": result.ram_bytes,
        "matches": result.within_tolerance and not result.class_mismatches,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eenn", help="an `eenn-tvm augment` output folder to include")
    parser.add_argument("--eenn-data", help="held-out data for it")
    parser.add_argument("--eenn-samples", type=int, default=50)
    parser.add_argument("--cores", nargs="*", default=CORES)
    parser.add_argument("--json", default=str(HERE / "mcu.json"))
    args = parser.parse_args()
    rows, table = [], []
    with tempfile.TemporaryDirectory() as scratch:
        for name, source, data, samples in workloads(args, Path(scratch)):
            for core in args.cores:
                runs = {kind: measure(source, data, samples, core, kind, Path(scratch)) for kind in KINDS}
                for r in runs.values():
                    rows.append({"model": name, **r})
                table.append(_row(name, core, runs))
                print(f"{name} {core}: done", flush=True)
    print(
        format_table(
            ["model", "core", "instr. llvm", "instr. c", "c / llvm", "flash (llvm)", "RAM (llvm)", "match"], table
        )
    )
    Path(args.json).write_text(
        json.dumps({"machine": platform.node(), "python": platform.python_version(), "results": rows}, indent=2) + "\n"
    )
    print(f"wrote {args.json}")


def _row(name: str, core: str, runs: dict) -> list[str]:
    llvm, c = runs["llvm"], runs["c"]
    count = lambda r: f"{r['instructions']:,.0f}" if "instructions" in r else "does not link"  # noqa: E731
    ratio = f"{c['instructions'] / llvm['instructions']:.2f}" if "instructions" in llvm and "instructions" in c else "-"
    best = llvm if "instructions" in llvm else c
    match = all(r.get("matches", True) for r in runs.values())
    return [
        name,
        core,
        count(llvm),
        count(c),
        ratio,
        f"{best.get('flash', 0):,}",
        f"{best.get('ram', 0):,}",
        "yes" if match else "NO",
    ]


if __name__ == "__main__":
    main()
