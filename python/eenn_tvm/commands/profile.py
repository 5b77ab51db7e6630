"""`eenn-tvm profile`: measure workloads on the platform's targets and learn the cost model from them."""

from __future__ import annotations

from pathlib import Path

import click

from eenn_tvm.catalog import preset_names
from eenn_tvm.commands.options import echo_json, json_option
from eenn_tvm.textui import format_table


@click.command("profile")
@click.option(
    "--platform",
    "platform_name",
    required=True,
    metavar="NAME|FILE.toml",
    help=f"A preset ({', '.join(preset_names())}) or a platform TOML file.",
)
@click.option(
    "--workloads",
    "count",
    default=60,
    show_default=True,
    type=click.IntRange(min=0),
    help="Generated layers (conv, depthwise, pool, dense, conv blocks of many shapes) to measure.",
)
@click.option(
    "--model",
    "models",
    multiple=True,
    type=click.Path(exists=True),
    help="Also measure this ONNX model whole and its segments between candidate exit points, or the "
    "segments of an `augment` output (exit heads included) (repeatable).",
)
@click.option(
    "--dataset",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Measurements file (JSON lines), extended by each run. Default: PLATFORM.jsonl beside the platform file "
    "(or in the cache, where that folder cannot be written).",
)
@click.option(
    "--cost-model",
    "model_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to save the trained model. Default: PLATFORM.model.json beside the measurements.",
)
@click.option(
    "--validate",
    "do_validate",
    is_flag=True,
    help="Hold out a quarter of the workloads: error and rank correlation of the model and of the MAC proxy.",
)
@click.option(
    "--seed",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Seed of the generated shapes and of the split.",
)
@json_option
def command(platform_name, count, models, dataset, model_path, do_validate, seed, as_json):
    """Measure workloads on every target of the platform this machine can measure (MCUs in QEMU, hosts marked
    `measured_here` by timing TVM modules), then train the cost model that `augment --platform` uses."""
    from eenn_tvm.costmodel.data import CostFiles
    from eenn_tvm.costmodel.measure import measure_all
    from eenn_tvm.costmodel.model import CostModel, cross_validate
    from eenn_tvm.costmodel.workloads import layer_workloads, segment_workloads
    from eenn_tvm.platform import Platform

    platform = Platform.load(platform_name)
    dataset = dataset or CostFiles.home(platform).measurements
    model_path = model_path or CostFiles.home(platform).model
    workloads = layer_workloads(count, seed) + [w for m in models for w in segment_workloads(m)]
    rows = measure_all(platform, workloads, dataset, progress=lambda m: click.echo(m, err=True))
    model = CostModel.train(platform, rows, seed)
    model.save(model_path)
    counts = {t.name: sum(r.target == t.name for r in rows) for t in platform.targets}
    report = cross_validate(platform, rows, seed) if do_validate else None
    if as_json:
        echo_json(
            {
                "platform": platform.name,
                "dataset": str(dataset),
                "cost_model": str(model_path),
                "measurements": counts,
                "sources": model.sources(),
                "validation": report,
            }
        )
        return
    click.echo(
        format_table(
            ["target", "kind", "measurements", "cost from"],
            [[t.name, t.kind, str(counts[t.name]), model.sources()[t.name]] for t in platform.targets],
        )
    )
    if report is not None:
        click.echo(
            "\nheld-out workloads (a quarter, 5 random splits, mean): "
            "absolute percentage error and Spearman's rank correlation"
        )
        click.echo(
            format_table(
                [
                    "target",
                    "held out",
                    "model MAPE",
                    "(range)",
                    "model Spearman",
                    "MAC proxy MAPE",
                    "MAC proxy Spearman",
                ],
                [
                    [
                        name,
                        str(r["held_out"]),
                        f"{100 * r['mape']:.1f}%",
                        f"{100 * r['mape_range'][0]:.0f}-{100 * r['mape_range'][1]:.0f}%",
                        f"{r['spearman']:.3f}",
                        f"{100 * r['mac_proxy']['mape']:.1f}%",
                        f"{r['mac_proxy']['spearman']:.3f}",
                    ]
                    for name, r in sorted(report.items())
                ],
            )
        )
    click.echo(f"\ndataset {dataset} ({len(rows)} rows); cost model {model_path}")
