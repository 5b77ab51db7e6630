"""Benchmark: throughput of the bulk feature run (every candidate point tapped, batch 1), onnxruntime vs TVM.

    python bench/features.py [--model M.onnx] [--samples 500] [--repeats 5] [--json bench/features.json]

Prints a table (median samples per second over the repeats, and the ratio) and writes JSON. This is the
measurement behind eenn_tvm.features using onnxruntime for the bulk run.
"""

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from eenn_tvm.analysis import analyze
from eenn_tvm.frontend import import_onnx
from eenn_tvm.passes import TapPoints
from eenn_tvm.targets.host import HostModule, build
from eenn_tvm.textui import format_table

HERE = Path(__file__).resolve().parent


def onnxruntime_runner(model, points):
    proto = onnx.ModelProto()
    proto.CopyFrom(model.onnx)
    infos = {v.name: v for v in proto.graph.value_info}
    proto.graph.output.extend(infos[p.name] for p in points)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})


def tvm_runner(model, points):
    module = HostModule(build(TapPoints([p.name for p in points])(model.mod)))
    return lambda x: module("main", x)


def throughput(run, x, repeats):
    run(x[:1])  # warm-up
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(len(x)):
            run(x[i : i + 1])
        rates.append(len(x) / (time.perf_counter() - start))
    return statistics.median(rates)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=HERE.parent / "examples" / "fashion_mnist" / "resnet8.onnx")
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=HERE / "features.json")
    args = parser.parse_args()

    model = import_onnx(args.model)
    points = analyze(model).exit_points
    shape = next(iter(model.input_shapes.values()))
    x = np.random.default_rng(0).random((args.samples, *shape[1:]), dtype=np.float32)
    rates = {
        "onnxruntime": throughput(onnxruntime_runner(model, points), x, args.repeats),
        "tvm (llvm, untuned)": throughput(tvm_runner(model, points), x, args.repeats),
    }
    fastest = max(rates.values())
    rows = [[engine, f"{rate:,.0f}", f"{rate / fastest:.2f}"] for engine, rate in rates.items()]
    print(f"{model.name}: {len(points)} points tapped, batch 1, {args.samples} samples x {args.repeats} repeats")
    print(format_table(["engine", "samples/s (median)", "relative"], rows))
    result = {
        "model": model.name,
        "points": len(points),
        "samples": args.samples,
        "repeats": args.repeats,
        "samples_per_second": rates,
        "machine": {"cpus": __import__("os").cpu_count(), "processor": platform.processor() or platform.machine()},
    }
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
