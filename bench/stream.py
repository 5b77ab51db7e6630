"""Benchmark: stream decisions against per-sample ones, float32 and int8, on the paper's stream tasks (issue 17).

    python bench/stream.py [--tasks ecg kws] [--windows 500]

For each task: `eenn-tvm augment --stream` on examples/TASK/stream_train.npz (1-point tolerance, confidence 0.9),
`eenn-tvm quantize` on the same file (the int8 network's own thresholds and stream rule), then `eenn-tvm run --dtype
int8 --engine onnxruntime` on stream_test.npz: per sample and in stream mode, float32 and int8, on the same test
streams. Where the plans have exits, the Cortex-M4 firmware of both (`build`, `build --dtype int8`) runs the first
`--windows` test windows in QEMU: `verify` (per sample) and `verify --stream` (every decision against the host's),
with instructions per window from QEMU's -icount. Writes bench/stream.json and prints a table; bench/paper.py shows
it beside the per-sample figures.
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
TOLERANCE, CONFIDENCE, CORE, TARGET = 0.01, 0.9, "cortex-m4", 0.85
EENN_TVM = Path(sys.executable).parent / "eenn-tvm"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--windows", type=int, default=500, help="test windows run in QEMU")
    parser.add_argument("--out", type=Path, default=Path("/tmp/eenn-bench-stream"))
    parser.add_argument("--json", type=Path, default=HERE / "stream.json")
    args = parser.parse_args()
    results = [measure(name, args.out / name, args.windows) for name in args.tasks]
    machine = f"{platform.machine()}, {platform.python_version()}"
    extra = {"machine": machine, "core": CORE, "target_mac_reduction": TARGET}
    write(args.json, "bench/stream.py", extra, results, table(results))


def write(path: Path, script: str, extra: dict, results: list[dict], table_text: str) -> None:
    """The benchmark's JSON (the command, the date, the tolerance and confidence, `extra`, the results) and table."""
    head = {"command": " ".join([f"python {script}", *sys.argv[1:]]), "date": time.strftime("%Y-%m-%d")}
    doc = {**head, "tolerance": TOLERANCE, "confidence": CONFIDENCE, **extra, "results": results}
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print(table_text)
    print(f"wrote {path}")


def measure(name: str, out: Path, windows: int) -> dict:
    folder, model = MODELS[name]
    data = EXAMPLES / folder
    train, test = data / "stream_train.npz", data / "stream_test.npz"
    if not test.exists():
        subprocess.run([sys.executable, data / "make_data.py", "--stream"], check=True)
    eenn = out / "eenn"
    settings = ("--max-accuracy-drop", TOLERANCE, "--confidence", CONFIDENCE)
    plan = _cli("augment", data / model, "--data", train, "--stream", *settings, "--force", "-o", eenn)
    int8 = _cli("quantize", eenn, "--data", train)
    run = _cli("run", eenn, "--data", test, "--dtype", "int8", "--engine", "onnxruntime")
    return {
        "task": name,
        "test_windows": run["samples"],
        "test_streams": run["stream"]["streams"],
        "original_accuracy": run["baseline_accuracy"],
        "int8_model_accuracy": run["int8"]["model_accuracy"],
        "exits": len(plan["exits"]),
        "float32": {"per_sample": _figures(run), "stream": _figures(run["stream"]), "rule": _rule(plan["stream"])},
        "int8": {
            "per_sample": _figures(run["int8"]["onnxruntime"], run["baseline_accuracy"]),
            "stream": _figures(run["int8"]["stream"], run["baseline_accuracy"]),
            "rule": _rule(int8["stream"]),
        },
        "firmware": _firmware(eenn, test, out, windows) if plan["exits"] else None,
    }


def _firmware(eenn: Path, test: Path, out: Path, windows: int) -> dict:
    """Per dtype: flash and RAM, and the first `windows` test windows per sample and in stream mode in QEMU."""
    measured = {}
    for dtype in ("float32", "int8"):
        firmware = out / f"fw_{dtype}"
        built = _cli("build", eenn, "--dtype", dtype, "--target", CORE, "--force", "-o", firmware)
        per_sample = _cli("verify", firmware, "--data", test, "--n", windows, check=False)
        stream = _cli("verify", firmware, "--data", test, "--n", windows, "--stream", check=False)
        measured[dtype] = {
            "flash_bytes": built["sizes"]["flash"],
            "ram_bytes": built["sizes"]["ram"],
            "per_sample_instructions_mean": per_sample["instructions_mean"],
            "per_sample_matches": per_sample["class_mismatches"] == 0 and per_sample["within_tolerance"],
            "stream": {k: stream[k] for k in ("samples", "streams", "decision_mismatches", "reused", "max_abs_error")}
            | {k: stream[k] for k in ("instructions_mean", "instructions_reused_mean", "accuracy", "reference")},
        }
    return measured


def _figures(result: dict, baseline: float | None = None) -> dict:
    """Accuracy, drop (against the float original: the result's own, or from `baseline`), MACs saved; windows
    reused."""
    drop = result["accuracy_drop"] if baseline is None else baseline - result["accuracy"]
    figures = {"accuracy": result["accuracy"], "accuracy_drop": drop, "mac_reduction": result["mac_reduction"]}
    return figures | ({"reused": result["reused"]} if "reused" in result else {})


def _rule(stream: dict) -> dict:
    keys = ("tap", "tap_dtype", "reuse_below", "patience", "patient_scale", "p_value")
    return {k: stream[k] for k in keys} | {"validation_mac_reduction": 1 - stream["validation"]["mac_fraction"]}


def _cli(*args, check: bool = True) -> dict:
    done = subprocess.run([EENN_TVM, *map(str, args), "--json"], capture_output=True, text=True)
    if (check and done.returncode != 0) or not done.stdout:
        raise SystemExit(f"eenn-tvm {' '.join(map(str, args))} failed: {done.stderr.strip()}")
    return json.loads(done.stdout)


def table(results: list[dict]) -> str:
    rows = []
    for r in results:
        for dtype in ("float32", "int8"):
            d, fw = r[dtype], (r["firmware"] or {}).get(dtype)
            stream = fw["stream"] if fw else None
            rows.append(
                [
                    r["task"] if dtype == "float32" else "",
                    dtype,
                    f"{_pct(d['per_sample']['mac_reduction'])} ({100 * d['per_sample']['accuracy_drop']:.2f})",
                    f"{_pct(d['stream']['mac_reduction'])} ({100 * d['stream']['accuracy_drop']:.2f})",
                    f"{d['stream']['reused']} / {r['test_windows']}",
                    f"{fw['per_sample_instructions_mean']:,.0f}" if fw else "-",
                    f"{stream['instructions_mean']:,.0f}" if fw else "-",
                    f"{stream['samples'] - stream['decision_mismatches']} / {stream['samples']}" if fw else "-",
                ]
            )
    headers = [
        "task",
        "network",
        "per sample: saved (drop)",
        "stream: saved (drop)",
        "reused",
        "instr./window, per sample",
        "instr./window, stream",
        "same decision as host",
    ]
    return format_table(headers, rows)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


if __name__ == "__main__":
    main()
