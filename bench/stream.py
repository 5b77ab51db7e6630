"""Benchmark: stream decisions against per-sample ones on the paper's stream tasks (issue 17, docs/streams.md).

    python bench/stream.py [--tasks ecg kws]

For each task: the stream data (examples/TASK/make_data.py --stream, made when missing), `eenn-tvm augment --stream`
on stream_train.npz (heads on four fifths of its streams, thresholds and the stream rule on the rest) at a 1-point
tolerance and confidence 0.9, then `eenn-tvm run --engine onnxruntime` on stream_test.npz: the per-sample cascade
(each window alone) and the stream decisions (windows in order) on the same test streams. Writes bench/stream.json
and prints a table; bench/paper.py shows it beside the per-sample figures.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

from eenn_tvm.textui import format_table

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parent / "examples"
MODELS = {"ecg": ("ecg", "ecg_cnn.onnx"), "kws": ("kws", "dscnn.onnx")}
TOLERANCE, CONFIDENCE, TARGET = 0.01, 0.9, 0.85
EENN_TVM = Path(sys.executable).parent / "eenn-tvm"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--out", type=Path, default=Path("/tmp/eenn-bench-stream"))
    parser.add_argument("--json", type=Path, default=HERE / "stream.json")
    args = parser.parse_args()
    results = [measure(name, args.out / name) for name in args.tasks]
    doc = {
        "command": " ".join(["python bench/stream.py", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "tolerance": TOLERANCE,
        "confidence": CONFIDENCE,
        "target_mac_reduction": TARGET,
        "results": results,
    }
    args.json.write_text(json.dumps(doc, indent=2) + "\n")
    print(table(results))
    print(f"wrote {args.json}")


def measure(name: str, out: Path) -> dict:
    folder, model = MODELS[name]
    data = EXAMPLES / folder
    if not (data / "stream_test.npz").exists():
        subprocess.run([sys.executable, data / "make_data.py", "--stream"], check=True)
    started = time.time()
    plan = _cli(
        "augment",
        data / model,
        "--data",
        data / "stream_train.npz",
        "--stream",
        "--max-accuracy-drop",
        TOLERANCE,
        "--confidence",
        CONFIDENCE,
        "--force",
        "-o",
        out,
    )
    seconds = time.time() - started
    run = _cli("run", out, "--data", data / "stream_test.npz", "--engine", "onnxruntime")
    stream = {k: v for k, v in run["stream"].items() if k not in ("answers", "slots")}
    return {
        "task": name,
        "test_windows": run["samples"],
        "test_streams": stream["streams"],
        "original_accuracy": run["baseline_accuracy"],
        "per_sample": {k: run[k] for k in ("accuracy", "accuracy_drop", "mac_reduction", "exit_histogram")},
        "stream": stream,
        "rule": {k: v for k, v in plan["stream"].items() if k != "validation"},
        "augment_seconds": round(seconds),
    }


def _cli(*args) -> dict:
    done = subprocess.run([EENN_TVM, *map(str, args), "--json"], check=True, capture_output=True, text=True)
    return json.loads(done.stdout)


def table(results: list[dict]) -> str:
    rows = []
    for r in results:
        p, s, rule = r["per_sample"], r["stream"], r["rule"]
        rows += [
            [r["task"], "per sample", _pct(p["mac_reduction"]), f"{100 * p['accuracy_drop']:.2f}", "-"],
            [
                "",
                f"stream (reuse < {rule['reuse_below']:.3g}, patience {rule['patience']} x{rule['patient_scale']:g})",
                _pct(s["mac_reduction"]),
                f"{100 * s['accuracy_drop']:.2f}",
                f"{s['reused']} / {s['samples']}",
            ],
        ]
    return format_table(["task", "decisions", "MACs saved", "drop (points)", "windows reused"], rows)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


if __name__ == "__main__":
    main()
