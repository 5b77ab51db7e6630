"""report.md in the output folder: what was chosen, what it saves, against what, with two plots."""

from __future__ import annotations

from pathlib import Path

from eenn_tvm.plan import Plan, SearchRecord
from eenn_tvm.quantized.network import describe_ops
from eenn_tvm.textui import threshold_text


def write_report(folder: Path, plan: Plan) -> None:
    _plot_pareto(folder / "pareto.png", plan)
    _plot_exits(folder / "exits.png", plan)
    v = plan.validation
    s = plan.search
    lines = [
        f"# Early-exit plan for {plan.model.name}",
        "",
        f"Decision rule: **{plan.decision}**; tolerance: {100 * s.max_accuracy_drop:.2f} points of accuracy"
        f"{_margin(s)}; "
        f"{s.validation_samples} validation samples (seed {s.seed}), never used to train the heads. "
        "Figures below are on that validation split: run `eenn-tvm run OUT --data TEST.npz` for held-out test figures.",
        "",
        "| | accuracy | mean MACs / inference | MAC reduction |",
        "|---|---|---|---|",
        f"| original model | {100 * v.baseline_accuracy:.2f} % | {plan.model.total_macs:,} | – |",
        f"| **eenn-tvm** ({len(plan.exits)} exits) | {100 * v.accuracy:.2f} % | {v.mean_macs:,.0f} | "
        f"{100 * (1 - v.mac_fraction):.1f} % |",
        _baseline_row(plan),
        "",
        "## Exits",
        "",
        "| exit | point | shape | head | threshold | MACs to reach | head MACs | leave here (validation) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e, count in zip(plan.exits, v.exit_histogram):
        lines.append(
            f"| {e.index} | `{e.point}` | {'x'.join(map(str, e.shape))} | {e.head} | {e.threshold:.4f} | "
            f"{e.macs_to_reach:,} | {e.head_macs:,} | {count} ({100 * count / v.samples:.1f} %) |"
        )
    lines += [
        f"| end | (the model's output) | | | | {plan.model.total_macs:,} | | {v.exit_histogram[-1]} "
        f"({100 * v.exit_histogram[-1] / v.samples:.1f} %) |",
        "",
        "![accuracy vs MACs](pareto.png)",
        "",
        "![exits](exits.png)",
        "",
        f"Search: {s.candidate_points} candidate points, {s.heads_trained} heads trained; seconds: "
        + ", ".join(f"{k} {v:.1f}" for k, v in s.seconds.items()),
        "",
        *_int8_lines(plan),
    ]
    (folder / "report.md").write_text("\n".join(lines))


def _baseline_row(plan: Plan) -> str:
    b = plan.baseline.validation
    if b is None:
        return "| SDN-style baseline (one threshold) | infeasible: no single threshold meets the tolerance | – | – |"
    return (
        f"| SDN-style baseline ({len(plan.baseline.exits)} exits, one threshold) | {100 * b.accuracy:.2f} % | "
        f"{b.mean_macs:,.0f} | {100 * (1 - b.mac_fraction):.1f} % |"
    )


def _int8_lines(plan: Plan) -> list[str]:
    """The int8 network (`eenn-tvm quantize`): its figures beside the float ones, on the same validation split."""
    q = plan.int8
    if q is None:
        return []
    v, total = q.validation, plan.model.total_macs
    thresholds = ", ".join(map(threshold_text, q.thresholds))
    return [
        "## int8",
        "",
        f"`{plan.artifacts.eenn_int8_onnx}` (QDQ, calibrated on {q.calibration_samples} training samples), built by "
        f"`QDQToInteger` into `{plan.artifacts.int8_host_module}`; thresholds searched again on its own validation "
        "confidences "
        f"({thresholds}). See docs/int8.md.",
        "",
        "| | accuracy | mean MACs / inference | MAC reduction |",
        "|---|---|---|---|",
        f"| int8 model | {100 * q.model_accuracy:.2f} % | {total:,} | – |",
        f"| **int8 early-exit network** | {100 * v.accuracy:.2f} % | {v.mean_macs:,.0f} | "
        f"{100 * (1 - v.mac_fraction):.1f} % |",
        f"| the same with the float thresholds | {100 * q.float_thresholds_accuracy:.2f} % | | |",
        "",
        describe_ops(q.ops) + ".",
        "",
    ]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_pareto(path: Path, plan: Plan) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    front = plan.pareto
    ax.step([100 * c for c, _ in front], [100 * a for _, a in front], where="post", label="eenn-tvm Pareto front")
    base = plan.search.baseline_pareto
    ax.step([100 * c for c, _ in base], [100 * a for _, a in base], where="post", label="SDN baseline", alpha=0.7)
    v, b = plan.validation, plan.baseline.validation
    ax.scatter([100 * v.mac_fraction], [100 * v.accuracy], marker="*", s=160, zorder=3, label="chosen")
    if b is not None:
        ax.scatter([100 * b.mac_fraction], [100 * b.accuracy], marker="o", s=60, zorder=3, label="baseline chosen")
    ax.axhline(
        100 * (v.baseline_accuracy - plan.search.max_accuracy_drop), ls="--", c="gray", lw=1, label="accuracy floor"
    )
    ax.set_xlabel("mean MACs per inference (% of the original model)")
    ax.set_ylabel("validation accuracy (%)")
    low = 100 * (v.baseline_accuracy - 3 * max(plan.search.max_accuracy_drop, 0.01))
    if b is not None:
        low = min(low, 100 * b.accuracy)
    ax.set_ylim(low, 100 * v.baseline_accuracy + 0.5)
    ax.set_xlim(0, 105)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_exits(path: Path, plan: Plan) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3))
    labels = [f"exit {e.index}\n{100 * e.macs_to_reach / plan.model.total_macs:.0f} % MACs" for e in plan.exits] + [
        "end"
    ]
    ax.bar(labels, plan.validation.exit_histogram)
    ax.set_ylabel("validation samples")
    ax.set_title("where samples leave")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _margin(search: SearchRecord) -> str:
    return (
        f" on new data of the same kind with probability {search.confidence:.2f} (Learn-then-Test; validation "
        f"accuracy {100 * search.accuracy_margin.get('eenn', 0.0):.2f} points above the floor)"
    )
