"""Benchmark: how the augment search grows with depth, up to a ResNet-152 (the paper: under 9 h on a laptop CPU).

    python bench/scaling.py [--depths 20 56 110 152] [--samples 10000] [--json bench/scaling.json]

CIFAR-style ResNets (`examples/resnets.py`) at 3x32x32: ResNet-20/56/110 (basic blocks) and ResNet-152 (bottleneck
blocks 3-8-36-3, widths 64-512, 58 M parameters). Nobody can train a ResNet-152 on this machine's two cores, so the
networks are random convolutions whose batch-norm statistics and classifier are fitted on 1,000 Fashion-MNIST
images (padded to 32x32, grey in all three channels): the classifier is real, so the search has a real accuracy
floor, but the accuracies are those of random features, and this benchmark is about time and memory only.
Random deep features are poor, so the real search ends fast; beside it, the search is timed on a synthetic problem of
the same size (points, heads per point rounded up, calibration samples) whose exits get better with depth, as trained
ones do.
`eenn-tvm augment` then runs on 10,000 further images (no feature cache): wall time per stage (import, features,
heads, search, write: the TVM build and the outputs) and the peak resident memory of the process.
Needs the dev extra (torch) to make the models; they are kept in out/scaling/.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
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


def run_augment(model: Path, data: Path, out: Path) -> dict:
    """augment in a child process: its stage times from the plan and its own peak resident memory."""
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[20, 56, 110, 152])
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--work", type=Path, default=REPO / "out" / "scaling")
    parser.add_argument("--json", default=str(HERE / "scaling.json"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    data = args.work / f"data_{args.samples}.npz"
    if not data.exists():
        x, y = images(args.samples, FIT_SAMPLES)
        np.savez(data, x=x, y=y)
    results = []
    for depth in args.depths:
        model = args.work / f"resnet{depth}.onnx"
        if not model.exists():
            print(f"making {model.name} (random convolutions, fitted batch norm and classifier)", flush=True)
            make_model(depth, model)
        print(f"augment {model.name} on {args.samples} samples", flush=True)
        results.append({"depth": depth, **run_augment(model, data, args.work / f"eenn{depth}")})
        print(json.dumps(results[-1]), flush=True)
    print(scaling_table(results))
    Path(args.json).write_text(
        json.dumps(
            {
                "command": " ".join(["python bench/scaling.py", *sys.argv[1:]]),
                "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                "samples": args.samples,
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.json}")


def scaling_table(results: list[dict]) -> str:
    return format_table(
        ["network", "MACs", "points", "heads", *[f"{s} s" for s in STAGES], "wall s", "peak MB", "synthetic search s"],
        [
            [
                f"ResNet-{r['depth']}",
                f"{r['total_macs'] / 1e6:,.0f} M",
                str(r["candidate_points"]),
                str(r["heads_trained"]),
                *[f"{r['seconds'].get(s, 0):.1f}" for s in STAGES],
                f"{r['wall_s']:.0f}",
                f"{r['peak_rss_mb']:,}",
                f"{r['synthetic_search_s']:.1f}",
            ]
            for r in results
        ],
    )


if __name__ == "__main__":
    main()
