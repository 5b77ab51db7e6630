"""Benchmark: how the augment search grows with depth, up to a ResNet-152 (the paper: under 9 h on a laptop CPU).

    python bench/scaling.py [--depths 20 56 110 152] [--samples 10000] [--head-workers N] [--json bench/scaling.json]

CIFAR-style ResNets (`examples/resnets.py`) at 3x32x32: ResNet-20/56/110 (basic blocks) and ResNet-152 (bottleneck
blocks 3-8-36-3, widths 64-512, 58 M parameters). Nobody can train a ResNet-152 on this machine's two cores, so the
networks are random convolutions whose batch-norm statistics and classifier are fitted on 1,000 Fashion-MNIST
images (padded to 32x32, grey in all three channels): the classifier is real, so the search has a real accuracy
floor, but the accuracies are those of random features, and this benchmark is about time and memory only.
Random deep features are poor, so the real search ends fast; beside it, the search is timed on a synthetic problem of
the same size (points, heads per point rounded up, calibration samples) whose exits get better with depth, as trained
ones do.
`eenn-tvm augment` then runs on 10,000 further images (no feature cache): wall time per stage (import, features,
heads, search, write: the TVM build and the outputs), the peak resident memory of the process, its CPU time (with
its worker processes'), and the machine's load average meanwhile (the cores are shared: with other work running,
every stage is slower).
Needs the dev extra (torch) to make the models; they are kept in out/scaling/.

    python bench/scaling.py --feature-pass [--feature-depth 20] [--feature-samples 2000] [--workers 1 2]

times the feature pass alone (no cache) of one of these networks: here at batch 1 and 32, then on local Ray clusters
of 1, 2, ... one-CPU nodes (`eenn_tvm.local_ray`) at batch 32, each checked equal to the local pass bit for bit.
Past two workers it is a model, not a measurement: T(w) = c + n * t / w, with t the time of one sample in a shard run
on one core (a shard timed here), n the samples, and c the fixed cost (joining the cluster, starting workers, loading
the model) taken from the one-worker run. It is written under "feature_pass" in the JSON.

    python bench/scaling.py --head-pass [--feature-depth 20] [--feature-samples 2000] [--workers 1 2]

times the exit heads' training alone on the same network's features: every head screened, then every head trained
fully (augment fully trains only those it keeps), in this process and by 2, ... local worker processes
(`augment --workers`), each checked equal to the in-process heads bit for bit; wall and CPU seconds (with the
workers') and the load average of each run. The same model past two workers, fitted on CPU seconds, since on a
shared machine the wall times show the contention more than the workers: t the CPU time of one head in this process,
n the heads, and c the extra CPU time of the two-worker run (starting the processes, importing, sharing the
features) over 2, as the workers pay it side by side. It models an idle machine and ignores heads of unequal length
ending unevenly. Written under "head_pass".
"""

import argparse
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO / "examples"), str(REPO / "examples" / "fashion_mnist")]

from fashion_mnist import load  # noqa: E402

from eenn_tvm.search import search, synthetic_problem  # noqa: E402
from eenn_tvm.textui import format_table  # noqa: E402

FIT_SAMPLES = 1000
STAGES = ("import", "features", "heads", "search", "write")
LOAD_SECONDS = 10


def images(count: int, skip: int) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST training images skip..skip+count at 3x32x32 (padded by 2, the grey copied to RGB)."""
    x, y = load("train")
    x = np.pad(x[skip : skip + count], ((0, 0), (0, 0), (2, 2), (2, 2)))
    return np.ascontiguousarray(np.repeat(x, 3, axis=1)), y[skip : skip + count]


def make_model(depth: int, path: Path) -> None:
    """A random ResNet with batch-norm statistics and the dense classifier fitted on FIT_SAMPLES images."""
    import torch
    from resnets import cifar_resnet
    from training import export

    torch.manual_seed(depth)
    model = cifar_resnet(depth)
    x, y = images(FIT_SAMPLES, 0)
    with torch.no_grad():
        model.train()  # batch norm in training mode collects the running statistics
        for momentum_reset in model.modules():
            if isinstance(momentum_reset, torch.nn.BatchNorm2d):
                momentum_reset.momentum = None  # cumulative average over the batches
        for i in range(0, FIT_SAMPLES, 250):
            model(torch.from_numpy(x[i : i + 250]))
        model.eval()
        pooled = torch.cat(
            [
                model.stages(model.stem(torch.from_numpy(x[i : i + 250]))).mean((2, 3))
                for i in range(0, FIT_SAMPLES, 250)
            ]
        )
    classifier = model.head[-1]
    opt = torch.optim.LBFGS(classifier.parameters(), max_iter=200, line_search_fn="strong_wolfe")
    target = torch.from_numpy(y)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(classifier(pooled), target) + 1e-3 * classifier.weight.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    export(model, (1, 3, 32, 32), "image", path)


@contextlib.contextmanager
def load_sampled() -> Iterator[dict]:
    """The machine's load average while the block runs, sampled every LOAD_SECONDS (the cores are shared: a busy
    machine slows every stage), filled in as {"mean": ..., "max": ...} when the block ends."""
    loads, summary, running = [os.getloadavg()[0]], {}, threading.Event()
    running.set()

    def sample():
        while running.is_set():
            time.sleep(LOAD_SECONDS)
            loads.append(os.getloadavg()[0])

    threading.Thread(target=sample, daemon=True).start()
    try:
        yield summary
    finally:
        running.clear()
        summary.update(mean=round(float(np.mean(loads)), 2), max=round(max(loads), 2))


def run_augment(model: Path, data: Path, out: Path, workers: int | None = None) -> dict:
    """augment in a child process: its stage times from the plan, its own peak resident memory and CPU time (with
    its worker processes': the work, whatever the load), and the machine's load average meanwhile."""
    with load_sampled() as load:
        return {**_augment(model, data, out, workers), "load_average": load}


def _augment(model: Path, data: Path, out: Path, workers: int | None) -> dict:
    start = time.perf_counter()
    child = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "eenn-tvm"),
            "augment",
            str(model),
            "--data",
            str(data),
            "--no-cache",
            "-o",
            str(out),
            "--json",
            *([] if workers is None else ["--workers", str(workers)]),
        ],
        stdout=subprocess.PIPE,
    )
    stdout = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    if status:
        raise SystemExit(f"augment failed on {model} (exit status {status >> 8})")
    plan = json.loads(stdout)
    points, heads = plan["search"]["candidate_points"], plan["search"]["heads_trained"]
    return {
        "synthetic_search_s": _synthetic_search(points, -(-heads // points), plan["search"]["validation_samples"]),
        "seconds": plan["search"]["seconds"],
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
        "cpu_s": round(usage.ru_utime + usage.ru_stime),
        "candidate_points": plan["search"]["candidate_points"],
        "heads_trained": plan["search"]["heads_trained"],
        "total_macs": plan["model"]["total_macs"],
        "exits": len(plan["exits"]),
        "accuracy": plan["validation"]["baseline_accuracy"],
        "mac_reduction": 1 - plan["validation"]["mac_fraction"],
    }


def _synthetic_search(points: int, kinds: int, samples: int) -> float:
    problem = synthetic_problem(samples=samples, points=points, kinds=kinds, drop=0.01, seed=points)
    start = time.perf_counter()
    search(problem)
    return round(time.perf_counter() - start, 2)


def feature_pass(model_path: Path, data: Path, workers: list[int]) -> dict:
    """The feature pass here at each batch size and on local Ray clusters of `workers` one-CPU nodes, and the model
    of more workers fitted on a shard's time (see the module's docstring)."""
    from eenn_tvm.analysis import analyze
    from eenn_tvm.features import BATCH, extract, tapped_backbone
    from eenn_tvm.frontend import import_onnx
    from eenn_tvm.local_ray import local_cluster

    model = import_onnx(model_path)
    points, x = analyze(model).exit_points, np.load(data)["x"]
    runs, reference = [], None
    for batch in (1, BATCH):
        seconds, features = _timed(extract, model, points, x, cache_dir=None, batch=batch)
        runs.append({"where": "here", "batch": batch, "workers": None, "seconds": seconds})
        reference = features
    for count in workers:
        with local_cluster(nodes=count, cpus_per_node=1) as cluster:
            os.environ["RAY_ADDRESS"] = cluster.gcs
            seconds, features = _timed(extract, model, points, x, cache_dir=None, batch=BATCH, cluster="ray")
            del os.environ["RAY_ADDRESS"]
        same = np.array_equal(features.final, reference.final) and all(
            np.array_equal(a, reference.pooled[p][k]) for p, kinds in features.pooled.items() for k, a in kinds.items()
        )
        runs.append({"where": "ray", "batch": BATCH, "workers": count, "seconds": seconds, "same_as_here": same})
        print(json.dumps(runs[-1]), flush=True)
    backbone = tapped_backbone(model, points, x, BATCH)
    shard = x[: min(len(x), 8 * BATCH)]
    session = backbone.session(1)
    per_sample = _timed(backbone.features, session, shard)[0] / len(shard)
    first = runs[2]  # the smallest cluster measured fixes c
    fixed = first["seconds"] - len(x) * per_sample / first["workers"]
    return {
        "model": model_path.name,
        "samples": len(x),
        "runs": runs,
        "model_of_workers": _model_of_workers(fixed, len(x), per_sample, "sample"),
    }


def head_pass(model_path: Path, data: Path, workers: list[int]) -> dict:
    """Every exit head screened, then all trained fully (augment fully trains only the ones it keeps), in this
    process and by `workers` local processes, each checked equal to the in-process heads bit for bit; and the model
    of more workers fitted on those runs (see the module's docstring)."""
    from eenn_tvm.analysis import analyze
    from eenn_tvm.augment import Settings, train_and_score
    from eenn_tvm.costs import MacCost
    from eenn_tvm.data import split
    from eenn_tvm.features import extract
    from eenn_tvm.frontend import import_onnx
    from eenn_tvm.heads import MAX_ITER
    from eenn_tvm.parallel import head_pool

    model = import_onnx(model_path)
    analysis, arrays, settings = analyze(model), np.load(data), Settings()
    x, y = arrays["x"], arrays["y"]
    train_idx, val_idx = split(y, settings.val_fraction, settings.seed)
    features = extract(model, analysis.exit_points, x, cache_dir=None)

    def train_all(count: int) -> list:
        with head_pool(count, None, None) as pool:
            trained = train_and_score(
                analysis,
                features,
                y,
                None,
                train_idx,
                val_idx,
                features.final.shape[1],
                settings,
                MacCost(analysis),
                pool,
            )
            jobs = [(o.point, o.kind) for o in trained.problem.options]
            return [head.layers for head, _ in trained.train_options(jobs, MAX_ITER)]

    run, reference = _with_cpu_and_load(train_all, 1)
    runs = [{"where": "this process", "workers": 1, **run}]
    for count in [w for w in workers if w > 1]:
        run, layers = _with_cpu_and_load(train_all, count)
        same = all(
            np.array_equal(a, b) for h, r in zip(layers, reference) for la, lr in zip(h, r) for a, b in zip(la, lr)
        )
        runs.append({"where": "local processes", "workers": count, **run, "same_as_here": same})
        print(json.dumps(runs[-1]), flush=True)
    heads = 2 * len(reference)  # each screened, then trained fully
    # CPU seconds, not wall: on a shared machine the wall times show the contention more than the workers
    first = runs[1]
    fixed = (first["cpu_s"] - runs[0]["cpu_s"]) / first["workers"]  # starting the workers, sharing the features
    return {
        "model": model_path.name,
        "samples": len(x),
        "heads": heads,
        "runs": runs,
        "model_of_workers": _model_of_workers(fixed, heads, runs[0]["cpu_s"] / heads, "head"),
    }


def _with_cpu_and_load(run, *args) -> tuple[dict, object]:
    """Wall and CPU seconds of `run` (this process's and its ended child processes'), and the load meanwhile."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = time.process_time() + children.ru_utime + children.ru_stime
    with load_sampled() as load:
        seconds, result = _timed(run, *args)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = time.process_time() + children.ru_utime + children.ru_stime - cpu
    return {"seconds": seconds, "cpu_s": round(cpu, 1), "load_average": load}, result


def _model_of_workers(fixed: float, n: int, t: float, unit: str) -> dict:
    """T(w) = c + n * t / w: n units of work of t seconds each on one core, c = `fixed` seconds."""
    return {
        "formula": "T(w) = c + n * t / w",
        f"t_s_per_{unit}_one_core": round(t, 5),
        "c_s": round(fixed, 1),
        "predicted_s": {w: round(fixed + n * t / w, 1) for w in (1, 2, 4, 8, 16, 32)},
    }


def _timed(run, *args, **kwargs):
    start = time.perf_counter()
    result = run(*args, **kwargs)
    return round(time.perf_counter() - start, 2), result


def feature_pass_table(result: dict) -> str:
    rows = [
        [r["where"], str(r["batch"]), str(r["workers"] or "-"), f"{r['seconds']:.1f}", _same(r)] for r in result["runs"]
    ]
    model = result["model_of_workers"]
    rows += [["model", "32", str(w), f"{s:.1f}", "-"] for w, s in model["predicted_s"].items()]
    table = format_table(["feature pass", "batch", "workers", "s", "same as here"], rows)
    return f"{table}\nmodel: T(w) = {model['c_s']} s + {result['samples']} x {model['t_s_per_sample_one_core']} s / w"


def head_pass_table(result: dict) -> str:
    rows = [
        [
            r["where"],
            str(r["workers"]),
            f"{r['seconds']:.1f}",
            f"{r['cpu_s']:.1f}",
            _same(r),
            f"{r['load_average']['mean']:.1f}",
        ]
        for r in result["runs"]
    ]
    model = result["model_of_workers"]
    rows += [["model", str(w), f"{s:.1f}", "-", "-", "-"] for w, s in model["predicted_s"].items()]
    table = format_table(["head training", "workers", "s", "CPU s", "same as here", "load"], rows)
    return f"{table}\nmodel: T(w) = {model['c_s']} s + {result['heads']} x {model['t_s_per_head_one_core']} s / w"


def _same(run: dict) -> str:
    return "-" if "same_as_here" not in run else "bit for bit" if run["same_as_here"] else "DIFFERENT"


def _data(work: Path, samples: int) -> Path:
    data = work / f"data_{samples}.npz"
    if not data.exists():
        x, y = images(samples, FIT_SAMPLES)
        np.savez(data, x=x, y=y)
    return data


def _model(work: Path, depth: int) -> Path:
    model = work / f"resnet{depth}.onnx"
    if not model.exists():
        print(f"making {model.name} (random convolutions, fitted batch norm and classifier)", flush=True)
        make_model(depth, model)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[20, 56, 110, 152])
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--work", type=Path, default=REPO / "out" / "scaling")
    parser.add_argument("--json", default=str(HERE / "scaling.json"))
    parser.add_argument("--feature-pass", action="store_true", help="time the feature pass alone (needs Ray)")
    parser.add_argument("--head-pass", action="store_true", help="time the head training alone")
    parser.add_argument("--feature-depth", type=int, default=20)
    parser.add_argument("--feature-samples", type=int, default=2000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--head-workers", type=int, help="augment --workers (default: augment's, one per core)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python bench/scaling.py", *sys.argv[1:]])
    if args.feature_pass or args.head_pass:
        model, data = _model(args.work, args.feature_depth), _data(args.work, args.feature_samples)
        result = (feature_pass if args.feature_pass else head_pass)(model, data, args.workers)
        print((feature_pass_table if args.feature_pass else head_pass_table)(result))
        _record(args.json, "feature_pass" if args.feature_pass else "head_pass", {"command": command, **result})
        return
    data = _data(args.work, args.samples)
    runs = {}
    for depth in args.depths:
        model = _model(args.work, depth)
        print(f"augment {model.name} on {args.samples} samples", flush=True)
        result = run_augment(model, data, args.work / f"eenn{depth}", args.head_workers)
        runs[depth] = {"depth": depth, "samples": args.samples, "command": command, **result}
        print(json.dumps(runs[depth]), flush=True)
    earlier = _recorded(args.json).get("results", [])
    runs = {r["depth"]: r for r in earlier if r["samples"] == args.samples and r["depth"] not in runs} | runs
    results = [runs[d] for d in sorted(runs)]  # a depth not run again keeps its last measurement and its command
    print(scaling_table(results))
    _record(args.json, "machine", f"{platform.machine()}, {os.cpu_count()} cores")
    _record(args.json, "results", results)


def _recorded(path: str) -> dict:
    return json.loads(Path(path).read_text()) if Path(path).exists() else {}


def _record(path: str, key: str, value) -> None:
    """One section of the JSON replaced, the others kept (read again now: other runs may have written them)."""
    document = _recorded(path)
    document[key] = value
    Path(path).write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {key} in {path}")


def scaling_table(results: list[dict]) -> str:
    return format_table(
        [
            "network",
            "MACs",
            "points",
            "heads",
            *[f"{s} s" for s in STAGES],
            "wall s",
            "peak MB",
            "load",
            "synthetic search s",
        ],
        [
            [
                f"ResNet-{r['depth']}",
                f"{r['total_macs'] / 1e6:,.0f} M",
                str(r["candidate_points"]),
                str(r["heads_trained"]),
                *[f"{r['seconds'].get(s, 0):.1f}" for s in STAGES],
                f"{r['wall_s']:.0f}",
                f"{r['peak_rss_mb']:,}",
                f"{r['load_average']['mean']:.1f}" if "load_average" in r else "-",
                f"{r['synthetic_search_s']:.1f}",
            ]
            for r in results
        ],
    )


if __name__ == "__main__":
    main()
