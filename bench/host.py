"""Benchmark: host inference against onnxruntime, the early-exit network in one TVM call, tuned and untuned.

    python bench/host.py [--samples 300] [--repeats 5] [--trials 512] [--minutes M] [--databases DIR]
                         [--threads 1 2] [--no-batch] [--no-kernels] [--cases NAME ...] [--json bench/host.json]

For the example ResNet-8, the keyword DS-CNN, the Fashion ResNet-20 (each with its `augment` output in out/) and
the MLPerf Tiny ResNet-8 (no early-exit network), in one run, engines interleaved, medians of the repeats:

- onnxruntime on the original model;
- TVM on the original model: the plain Relax pipeline (as eenn-tvm built before it scheduled anything), the
  default schedules, and tuned (a database `eenn-tvm tune` made in this run, timed);
- the early-exit network: TVM one call per sample (`ChainExits`, in the Relax VM), with the default schedules and
  tuned; the static C driver over the same kernels (`eenn_host_static.so`, what `run` uses at batch 1), default
  schedules and tuned; and in batches with compaction (tuned);
- onnxruntime on eenn.onnx (every exit computed, the thresholds applied in numpy), batch 1 only: its exit heads
  reshape to batch 1.

Batch 1 with 1 thread and with all threads (mean latency per sample over the same real test samples, exits
included), and batch 32 (throughput). Ratios against onnxruntime on the original model. Per kernel: TVM's
kernels (plain, default, tuned) and onnxruntime's nodes, convolution by convolution. The machine's load and its
busiest processes before and after are recorded: the timings are from a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import tvm
from tvm import relax

from eenn_tvm.decision import confidence
from eenn_tvm.frontend import import_onnx
from eenn_tvm.network import Network
from eenn_tvm.passes import ChainExits
from eenn_tvm.plan import Plan
from eenn_tvm.targets.host import BatchRunner, EarlyExitRunner, HostModule, build
from eenn_tvm.targets.host.measure import build_kernel, time_kernel
from eenn_tvm.targets.host.pipeline import fused_kernels
from eenn_tvm.targets.host.schedule import default_schedule
from eenn_tvm.targets.host.static import StaticEarlyExit, build_static
from eenn_tvm.targets.host.target import host_target, native_cpu
from eenn_tvm.targets.host.tune import tune
from eenn_tvm.textui import format_table

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = Path(os.environ.get("EENN_SHARED", REPO.parent / "shared"))
BATCH = 32
PLAIN_SAMPLES = 20  # the plain pipeline is 10-100x slower: fewer samples keep the run short


@dataclass
class Case:
    name: str
    model: Path
    eenn: Path | None  # the `augment` output folder
    data: Path  # real test samples (.npz with x)


CASES = [
    Case(
        "example ResNet-8",
        REPO / "examples/fashion_mnist/resnet8.onnx",
        REPO / "out/fashion_mnist",
        REPO / "examples/fashion_mnist/test.npz",
    ),
    Case("keyword DS-CNN", REPO / "examples/kws/dscnn.onnx", REPO / "out/kws", REPO / "examples/kws/test.npz"),
    Case(
        "Fashion ResNet-20",
        REPO / "examples/fashion_mnist/resnet20.onnx",
        REPO / "out/fashion_resnet20",
        REPO / "examples/fashion_mnist/test.npz",
    ),
    Case(
        "MLPerf Tiny ResNet-8",
        SHARED / "models/mlperf-tiny/resnet8_cifar10.onnx",
        None,
        SHARED / "models/mlperf-tiny/cifar10_20_images.npz",
    ),
]


def set_threads(count: int) -> None:
    """TVM's thread pool; onnxruntime sessions get theirs when made."""
    tvm.get_global_func("runtime.config_threadpool")(0, count)


def ort_session(model: onnx.ModelProto | Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def with_batch_dim(path: Path) -> onnx.ModelProto:
    """The model with a symbolic batch dimension, for onnxruntime at batch > 1."""
    model = onnx.load(str(path))
    for value in [*model.graph.input, *model.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    return model


def eenn_thresholds(plan: Plan):
    """The cascade on eenn.onnx's outputs [final, exit_0, ...] for a batch: (exit index, class) per sample."""

    def decide(outputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        n = len(outputs[0])
        exits, classes, alive = np.full(n, len(plan.exits)), outputs[0].argmax(1), np.ones(n, bool)
        for i, e in enumerate(plan.exits):
            leave = alive & (confidence(outputs[1 + i], plan.decision) >= np.float32(e.threshold))
            exits[leave], classes[leave] = i, outputs[1 + i][leave].argmax(1)
            alive &= ~leave
        return exits, classes

    return decide


def per_sample(run, x: np.ndarray):
    """A batch-1 engine over every sample, one call each."""
    return lambda: [run(x[i : i + 1]) for i in range(len(x))]


def in_batches(run, x: np.ndarray, batch: int):
    """An engine on batches of `batch` samples (the last one padded)."""
    padded = np.concatenate([x, np.zeros((-len(x) % batch, *x.shape[1:]), x.dtype)])
    return lambda: [run(padded[i : i + batch]) for i in range(0, len(padded), batch)]


def engines(case: Case, x: np.ndarray, threads: int, database: Path) -> dict[str, tuple]:
    """name -> (function running every sample once, samples it runs) at batch 1."""
    model = import_onnx(case.model)
    session = ort_session(case.model, threads)
    name = session.get_inputs()[0].name
    plain = HostModule(relax.build(model.mod, "llvm")).prepared
    found = {
        "onnxruntime, original": (per_sample(lambda s: session.run(None, {name: s}), x), len(x)),
        "TVM plain pipeline, original": (
            per_sample(lambda s: plain("main", s)(), x[:PLAIN_SAMPLES]),
            min(len(x), PLAIN_SAMPLES),
        ),
        "TVM default schedules, original": (per_sample(_call(HostModule(build(model.mod)), "main"), x), len(x)),
        "TVM tuned, original": (per_sample(_call(HostModule(build(model.mod, database=database)), "main"), x), len(x)),
    }
    if case.eenn:
        plan = Plan.load(case.eenn)
        chained = ChainExits()(Network.from_augment(case.eenn, plan).mod)
        untuned = EarlyExitRunner(HostModule(build(chained)))
        tuned = EarlyExitRunner(HostModule(build(chained, database=database)))
        static_untuned, static_tuned = (static_module(case, db) for db in (None, database))
        eenn = ort_session(plan.artifact(case.eenn, "eenn_onnx"), threads)
        decide = eenn_thresholds(plan)
        found["early-exit network, TVM default schedules, one call"] = (per_sample(untuned.infer, x), len(x))
        found["early-exit network, TVM tuned, one call"] = (per_sample(tuned.infer, x), len(x))
        found["early-exit network, static C driver, default schedules"] = (per_sample(static_untuned.infer, x), len(x))
        found["early-exit network, static C driver, tuned"] = (per_sample(static_tuned.infer, x), len(x))
        found["onnxruntime, eenn.onnx + thresholds"] = (
            per_sample(lambda s: decide(eenn.run(None, {name: s})), x),
            len(x),
        )
    return found


def static_module(case: Case, database: Path | None) -> StaticEarlyExit:
    """The early-exit network as `augment` saves it for batch 1: one C function over TVM's kernels."""
    plan = Plan.load(case.eenn)
    path = Path(tempfile.mkdtemp(prefix="eenn-bench-")) / "eenn_host_static.so"
    build_static(Network.from_augment(case.eenn, plan), path, database=database)
    return StaticEarlyExit(path)


def batch_engines(case: Case, x: np.ndarray, threads: int, database: Path) -> dict[str, tuple]:
    """name -> (function running every sample once in batches of BATCH, samples) for throughput."""
    session = ort_session(with_batch_dim(case.model), threads)
    name = session.get_inputs()[0].name
    batched = import_onnx(case.model, batch=BATCH)
    tvm_batched = _call(HostModule(build(batched.mod, database=database)), "main")
    found = {
        "onnxruntime, original": (in_batches(lambda s: session.run(None, {name: s}), x, BATCH), len(x)),
        "TVM tuned, original": (in_batches(tvm_batched, x, BATCH), len(x)),
    }
    if case.eenn:
        plan = Plan.load(case.eenn)
        network = Network.from_augment(case.eenn, plan, batch=BATCH)
        runner = BatchRunner(HostModule(build(network.mod, database=database, opaque_activations=True)), BATCH)
        found["early-exit network, TVM tuned, compacted batches"] = (lambda: runner.run(x), len(x))
    return found


def _call(module: HostModule, function: str):
    return lambda s: module(function, s)


def interleaved(found: dict[str, tuple], repeats: int) -> dict[str, dict]:
    """Every engine once per repeat, in turn; medians of seconds per sample (wall clock and this thread's CPU)."""
    for run, _ in found.values():
        run()  # warm-up
    wall: dict[str, list] = {k: [] for k in found}
    cpu: dict[str, list] = {k: [] for k in found}
    for _ in range(repeats):
        for key, (run, samples) in found.items():
            started, cpu_started = time.perf_counter(), time.thread_time()
            run()
            wall[key].append((time.perf_counter() - started) / samples)
            cpu[key].append((time.thread_time() - cpu_started) / samples)
    return {k: {"wall_s": statistics.median(wall[k]), "thread_cpu_s": statistics.median(cpu[k])} for k in found}


def tune_case(case: Case, folder: Path, trials: int, minutes: float | None) -> dict:
    """Tune the early-exit network and the original model into one database (each search within `minutes`); the
    time each took."""
    target = host_target()
    seconds = {}
    if case.eenn:
        started = time.perf_counter()
        tune(ChainExits()(Network.from_augment(case.eenn).mod), target, folder, trials, log=_say, minutes=minutes)
        seconds["early-exit network"] = time.perf_counter() - started
    started = time.perf_counter()
    tune(import_onnx(case.model).mod, target, folder, trials, log=_say, minutes=minutes)
    seconds["original model (kernels not already tuned)"] = time.perf_counter() - started
    return seconds


def kernel_table(case: Case, database: Path) -> list[dict]:
    """Each convolution of the original model in execution order: its TVM kernel (plain pipeline, default and
    tuned schedules, us) and the onnxruntime node at the same place (us, from its profiler), 1 thread."""
    target = host_target()
    model = import_onnx(case.model)
    kernels = fused_kernels(model.mod, target)
    timed: dict[str, dict] = {}
    rows = []
    for name, (node, ort_us) in zip(_conv_calls(model), _ort_conv_times(case.model)):
        if name not in timed:
            timed[name] = _kernel_times(kernels[name], target, database)
        rows.append({"kernel": name, **timed[name], "onnxruntime_node": node, "onnxruntime_us": ort_us})
    return rows


def _conv_calls(model) -> list[str]:
    """The convolution kernels `main` calls, in order (a kernel shared by layers of one shape appears each time)."""
    executable = build(model.mod)
    calls: list[str] = []

    def record(_function, name, before, *_):
        if before:
            calls.append(str(name))
        return 0  # run the call as usual

    vm = relax.VirtualMachine(executable, tvm.cpu())
    vm.set_instrument(record)
    shape = next(iter(model.input_shapes.values()))
    vm["main"](tvm.runtime.tensor(np.zeros(shape, np.float32)))
    return [c for c in calls if "conv" in c]


def _kernel_times(func, target, database: Path) -> dict:
    from eenn_tvm.targets.host.tune import open_database

    func = func.with_attr("global_symbol", "main")  # a kernel without one is left unlowered by the build
    args = tvm.s_tir.meta_schedule.arg_info.ArgInfo.from_prim_func(func)
    mod = tvm.IRModule({"main": func})
    tuned = open_database(database, target).query_schedule(mod, target, "main")
    default = default_schedule(func, target).mod
    return {
        "macs": int(tvm.s_tir.analysis.estimate_tir_flops(mod) // 2),
        "tvm_plain_us": 1e6 * time_kernel(build_kernel(mod, target), args),
        "tvm_default_us": 1e6 * time_kernel(build_kernel(default, target), args),
        "tvm_tuned_us": 1e6 * time_kernel(build_kernel(tuned.mod if tuned else default, target), args),
    }


def _ort_conv_times(path: Path, runs: int = 200) -> list[tuple[str, float]]:
    """(node, median us) of onnxruntime's convolution nodes in graph order, from its profiler (1 thread)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "ort")
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {i.name: np.random.rand(*i.shape).astype(np.float32) for i in session.get_inputs()}
    for _ in range(runs):
        session.run(None, feed)
    events = json.loads(Path(session.end_profiling()).read_text())
    times: dict[str, list] = {}
    order: list[str] = []
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and "Conv" in e["args"].get("op_name", ""):
            node = e["name"].removesuffix("_kernel_time")
            if node not in times:
                order.append(node)
            times.setdefault(node, []).append(e["dur"])
    return [(n, statistics.median(times[n])) for n in order]


def machine_state() -> dict:
    """Load averages and the busiest processes: what else the machine was doing."""
    top = subprocess.run(["ps", "-eo", "pcpu,comm", "--sort=-pcpu"], capture_output=True, text=True).stdout
    return {"load_average": os.getloadavg(), "busiest": [line.strip() for line in top.splitlines()[1:8]]}


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=300, help="test samples per engine and repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--trials", type=int, default=512, help="tuning trials per model (eenn-tvm tune --trials)")
    parser.add_argument("--minutes", type=float, help="bound on each tuning search (eenn-tvm tune --minutes)")
    parser.add_argument("--databases", type=Path, help="keep the tuning databases here (default: a temporary folder)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, os.cpu_count()], help="batch-1 thread counts")
    parser.add_argument("--no-batch", dest="batch", action="store_false", help=f"skip batch {BATCH} (throughput)")
    parser.add_argument("--no-kernels", dest="kernels", action="store_false", help="skip the per-kernel table")
    parser.add_argument("--cases", nargs="*", help="case names to run (default: all)")
    parser.add_argument("--json", type=Path, default=HERE / "host.json")
    args = parser.parse_args()
    databases = args.databases or Path(tempfile.mkdtemp(prefix="eenn-host-bench-"))
    # A run over some cases (--cases) replaces those in the JSON and keeps the others: each case records its own
    # command, settings and machine state.
    result = json.loads(args.json.read_text()) if args.cases and args.json.exists() else {"cases": {}}
    result.update(cpu=native_cpu(), cores=os.cpu_count())
    for case in CASES:
        if args.cases and case.name not in args.cases:
            continue
        if not case.model.exists() or (case.eenn and not (case.eenn / "plan.json").exists()):
            _say(f"skipping {case.name}: {case.model} or {case.eenn} is missing")
            continue
        before = machine_state()
        figures = run_case(case, databases / case.model.stem, args)
        figures.update(
            command=shlex.join(["python", "bench/host.py", *sys.argv[1:]]),
            date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            samples=args.samples,
            repeats=args.repeats,
            machine_before=before,
            machine_after=machine_state(),
        )
        result["cases"][case.name] = figures
        print_case(case.name, figures)
        print(
            f"load average (1, 5, 15 min) before {before['load_average']}, after "
            f"{figures['machine_after']['load_average']}; busiest processes after: "
            + "; ".join(figures["machine_after"]["busiest"][:5])
        )
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")


def run_case(case: Case, database: Path, args) -> dict:
    _say(f"{case.name}: tuning into {database}")
    tuning = tune_case(case, database, args.trials, args.minutes)
    x = np.load(case.data)["x"].astype(np.float32)
    x = np.resize(x, (args.samples, *x.shape[1:]))  # the MLPerf file holds 20 images: repeated
    figures = {"tuning_seconds": tuning}
    for threads in args.threads:
        set_threads(threads)
        _say(f"{case.name}: batch 1, {threads} thread(s)")
        figures[f"batch1_threads{threads}"] = interleaved(engines(case, x, threads, database), args.repeats)
    if args.batch:
        _say(f"{case.name}: batch {BATCH}, {os.cpu_count()} threads")
        figures[f"batch{BATCH}"] = interleaved(batch_engines(case, x, os.cpu_count(), database), args.repeats)
    set_threads(1)
    if args.kernels:
        figures["kernels"] = kernel_table(case, database)
    return figures


def case_table(figures: dict) -> str:
    """Per engine: ms per sample and the ratio to onnxruntime on the original model for each thread count, and the
    throughput at batch 32 when measured."""
    reference = "onnxruntime, original"
    tables = {k.removeprefix("batch1_threads"): v for k, v in figures.items() if k.startswith("batch1_threads")}
    batched = figures.get(f"batch{BATCH}", {})
    headers = ["engine"]
    for threads in tables:
        headers += [f"ms/sample {threads} thr", "x ort"]
    headers += [f"samples/s b{BATCH}", "x ort"] if batched else []
    rows = []
    for engine in next(iter(tables.values())):
        row = [engine]
        for table in tables.values():
            row += [
                f"{1e3 * table[engine]['wall_s']:.3f}",
                f"{table[engine]['wall_s'] / table[reference]['wall_s']:.2f}",
            ]
        match = batched.get(engine) or batched.get(engine.replace("one call", "compacted batches"))
        if batched and match:
            row += [f"{1 / match['wall_s']:,.0f}", f"{batched[reference]['wall_s'] / match['wall_s']:.2f}"]
        elif batched:
            row += ["-", "-"]
        rows.append(row)
    return format_table(headers, rows)


def tuning_line(figures: dict) -> str:
    return "tuning: " + ", ".join(f"{k} {v:.0f} s" for k, v in figures["tuning_seconds"].items())


def print_case(name: str, figures: dict) -> None:
    print(f"\n{name} ({tuning_line(figures)})")
    print(case_table(figures))
    if "kernels" not in figures:
        return
    kernel_rows = [
        [
            k["kernel"],
            f"{k['macs']:,}",
            f"{k['tvm_plain_us']:.1f}",
            f"{k['tvm_default_us']:.2f}",
            f"{k['tvm_tuned_us']:.2f}",
            f"{k.get('onnxruntime_us', float('nan')):.2f}",
        ]
        for k in figures["kernels"]
    ]
    print(format_table(["kernel", "MACs", "plain us", "default us", "tuned us", "onnxruntime us"], kernel_rows))


def markdown_section(doc: dict) -> list[str]:
    """The host section of docs/benchmarks.md (bench/paper.py renders the page) from bench/host.json."""
    lines = [
        "## Host: TVM against onnxruntime",
        "",
        f"Made by `bench/host.py` ({doc['cpu']}, {doc['cores']} cores); raw figures in `bench/host.json`. Mean "
        "wall-clock time per sample over real test samples (the MLPerf file's 20 images repeated), batch 1, one call "
        "per sample, engines interleaved, median of the repeats; x ort = the ratio to onnxruntime running the "
        "original model with the same threads (for throughput: its samples/s over onnxruntime's). The early-exit "
        "network's time includes its exits and decisions; tuning: `eenn-tvm tune` into a fresh database, timed. "
        "Other jobs shared the two cores (load averages below): absolute times are upper bounds, the ratios come "
        "from interleaved runs.",
        "",
    ]
    for name, figures in doc["cases"].items():
        before, after = figures["machine_before"]["load_average"], figures["machine_after"]["load_average"]
        lines += [
            f"**{name}**: `{figures['command']}` on {figures['date']}, {figures['samples']} samples, "
            f"{figures['repeats']} repeats; {tuning_line(figures)}; load average (1, 5, 15 min) {_load(before)} "
            f"before, {_load(after)} after.",
            "",
            "```",
            case_table(figures),
            "```",
            "",
        ]
    return lines + [line for note in doc.get("notes", []) for line in (note, "")]


def _load(values) -> str:
    return " / ".join(f"{v:.1f}" for v in values)


if __name__ == "__main__":
    main()
