"""Benchmark: does the tolerance hold on new data? Random re-splits of calibration against test (issue 17).

    python bench/guarantee.py [--tasks kws ecg fashion-resnet8 fashion-resnet20] [--splits 20] [--confidence 0.9]
    python bench/guarantee.py --tasks ecg --fresh DIR/train.npz DIR/calibration.npz DIR/test.npz

For each task the heads are trained once on the train split, as `augment` trains them; the samples that set the
thresholds in bench/paper.py (ECG: calibration.npz; Fashion-MNIST: a stratified fifth of train.npz) and the test
samples are pooled and re-split at random, --splits times, into parts of the original sizes. On each split the
thresholds are chosen on the calibration part and measured on the test part: the accuracy drop against the original
model and the MAC saving, for Learn-then-Test (eenn_tvm.guarantee, the default) and for the normal-approximation
margin eenn-tvm used before it (the floor raised by z * standard error of the chosen cascade's drop). Counts the
splits whose test drop exceeds the tolerance. Writes bench/guarantee.json and prints a table.

The guarantee bounds the expected drop, and a test part's drop scatters around it. `--fresh` measures each split's
thresholds also on samples outside the pool (for ECG, which can make any number: `examples/ecg/make_data.py --seed 7
--per-class 5000 --out DIR` makes 40,000), whose drop is close to the expected one. They are scored with the pool, so
they take part in the screening of head kinds, as the pool does.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import replace
from pathlib import Path
from statistics import NormalDist

import numpy as np

from eenn_tvm import data as datasets
from eenn_tvm import features as feature_cache
from eenn_tvm.analysis import analyze
from eenn_tvm.augment import Settings, train_and_score
from eenn_tvm.costs import MacCost
from eenn_tvm.frontend import import_onnx
from eenn_tvm.guarantee import learn_then_test
from eenn_tvm.heads import MAX_ITER
from eenn_tvm.search import SearchProblem, correct_of, outcome_of, search
from eenn_tvm.textui import format_table

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from paper import EXAMPLES, TASKS, TOLERANCE, _data_files  # noqa: E402  (the same tasks and data as paper.py)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--splits", type=int, default=20)
    parser.add_argument("--confidence", type=float, default=0.9)
    parser.add_argument("--json", type=Path, default=HERE / "guarantee.json")
    parser.add_argument("--fresh", type=Path, nargs="+", default=[], help=".npz files of new samples of the task")
    args = parser.parse_args()
    results = {name: resplits(name, args.splits, args.confidence, args.fresh) for name in args.tasks}
    document = {"command": " ".join(["python bench/guarantee.py", *sys.argv[1:]]), "tolerance": TOLERANCE}
    args.json.write_text(json.dumps({**document, "confidence": args.confidence, "results": results}, indent=2) + "\n")
    print(table(results))
    print(f"wrote {args.json}")


def resplits(name: str, splits: int, confidence: float, fresh_files: list[Path]) -> dict:
    task = TASKS[name]
    files = _data_files(task, HERE, quick=False)
    model = import_onnx(EXAMPLES / task.folder / task.model)
    analysis = analyze(model)
    shape, classes = next(iter(model.input_shapes.values()))[1:], _classes(model)
    train = datasets.load_npz(files["train"], shape, classes)
    test = datasets.load_npz(files["test"], shape, classes)
    settings = Settings(max_accuracy_drop=TOLERANCE, confidence=confidence)
    if "calibration" in files:
        calibration = datasets.load_npz(files["calibration"], shape, classes)
        head_idx = np.arange(len(train))
        held = [calibration, test]
    else:
        head_idx, val_idx = datasets.split(train.y, settings.val_fraction, settings.seed)
        held = [datasets.Dataset(train.x[val_idx], train.y[val_idx]), test]
        train = datasets.Dataset(train.x[head_idx], train.y[head_idx])
        head_idx = np.arange(len(train))
    fresh = [datasets.load_npz(f, shape, classes) for f in fresh_files]
    x = np.concatenate([train.x, *(d.x for d in held + fresh)])
    y = np.concatenate([train.y, *(d.y for d in held + fresh)])
    features = feature_cache.extract(model, analysis.exit_points, x, settings.cache_dir)
    pooled_idx = np.arange(len(train), len(y))
    trained = train_and_score(analysis, features, y, None, head_idx, pooled_idx, classes, settings, MacCost(analysis))
    for index in sorted(trained.screened):  # every head fully trained, as augment trains the ones it keeps
        option = trained.problem.options[index]
        _, trained.problem.options[index] = trained.train_option(option.point, option.kind, MAX_ITER)
    n_cal, n_pool = len(held[0]), len(held[0]) + len(held[1])
    everything = trained.problem.subset(np.arange(n_pool))
    fresh_part = trained.problem.subset(np.arange(n_pool, trained.problem.samples)) if fresh else None
    rows = []
    # Split "paper": calibration and test as bench/paper.py has them; then random re-splits of the same sizes.
    for seed in ["paper", *range(splits)]:
        order = np.arange(everything.samples)
        if seed != "paper":
            order = np.random.default_rng(1000 + seed).permutation(everything.samples)
        cal, tst = everything.subset(np.sort(order[:n_cal])), everything.subset(np.sort(order[n_cal:]))
        cal = replace(cal, min_accuracy=float(cal.final_correct.mean()) - TOLERANCE)
        row = {"split": seed}
        for method, exits in (
            ("learn_then_test", learn_then_test(search, cal, confidence).result.exits),
            ("normal_margin", normal_margin(cal, confidence)),
        ):
            row[method] = {"exits": len(exits), **_measured(tst, exits)}
            if fresh_part is not None:
                row[method]["fresh"] = _measured(fresh_part, exits)
        print(name, json.dumps(row), flush=True)
        rows.append(row)
    sizes = {"calibration_samples": n_cal, "test_samples": n_pool - n_cal}
    if fresh_part is not None:
        sizes["fresh_samples"] = fresh_part.samples
    return {**sizes, "splits": rows}


def _measured(part: SearchProblem, exits: list) -> dict:
    """The drop against the original model and the MAC saving of `exits` on `part`."""
    outcome = outcome_of(part, exits)
    return {
        "drop": float(part.final_correct.mean()) - outcome.accuracy,
        "mac_saving": 1 - outcome.mean_cost / part.final_cost,
    }


def normal_margin(problem: SearchProblem, confidence: float, rounds: int = 6):
    """The margin of eenn-tvm before Learn-then-Test: the floor raised by z times the standard error of the chosen
    cascade's per-sample drop, until the choice carries its own margin."""
    z, floor = NormalDist().inv_cdf(confidence), problem.min_accuracy
    exits = search(problem).exits
    for _ in range(rounds):
        loss = problem.final_correct.astype(float) - correct_of(problem, exits)
        needed = z * float(np.std(loss, ddof=1)) / math.sqrt(len(loss))
        if outcome_of(problem, exits).accuracy - needed >= problem.min_accuracy - 1e-9:
            break
        floor = max(floor, problem.min_accuracy + needed)
        exits = search(replace(problem, min_accuracy=floor)).exits
    return exits


def _classes(model) -> int:
    out = next(o for o in model.onnx.graph.output if o.name == model.output_names[0])
    return out.type.tensor_type.shape.dim[1].dim_value


def table(results: dict) -> str:
    rows = []
    for name, result in results.items():
        for method in ("learn_then_test", "normal_margin"):
            paper = next(s[method] for s in result["splits"] if s["split"] == "paper")
            figures = [s[method] for s in result["splits"] if s["split"] != "paper"]
            drops = np.array([f["drop"] for f in figures])
            savings = np.array([f["mac_saving"] for f in figures])
            rows.append(
                [
                    name,
                    method.replace("_", " "),
                    f"{100 * paper['drop']:.2f}",
                    f"{100 * paper['mac_saving']:.1f} %",
                    _over(drops),
                    f"{100 * drops.mean():.2f} (max {100 * drops.max():.2f})",
                    f"{100 * savings.mean():.1f} % ({100 * savings.min():.1f}-{100 * savings.max():.1f})",
                    _over(np.array([f["fresh"]["drop"] for f in figures])) if "fresh_samples" in result else "–",
                ]
            )
    header = [
        "task",
        "thresholds",
        "drop, pt",
        "MACs saved",
        "re-splits: drop > 1 pt",
        "drop, pt: mean (max)",
        "MACs saved: mean (range)",
        "fresh samples: drop > 1 pt",
    ]
    return format_table(header, rows)


def _over(drops: np.ndarray) -> str:
    return f"{int((drops > TOLERANCE + 1e-12).sum())} / {len(drops)}"


if __name__ == "__main__":
    main()
