"""Platforms, measurement and the cost model: TOML errors name the field, a workload is measured in QEMU and
on the host, a model learns from a dataset, and augment searches on the predicted cost."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import two_tier_platform
from test_cli import assert_one_line_error, run_cli

from eenn_tvm.catalog import preset_names
from eenn_tvm.costmodel import data
from eenn_tvm.costmodel.data import CostFiles, Measurement, write_measurements
from eenn_tvm.costmodel.features import segment_features, work_of
from eenn_tvm.costmodel.measure import measure
from eenn_tvm.costmodel.model import CostModel, cross_validate
from eenn_tvm.costmodel.workloads import layer_workloads, segment_workloads
from eenn_tvm.errors import EennError
from eenn_tvm.platform import Platform

GOOD = two_tier_platform("tiny", "mcu", "host", 262144, None, (1e6, 0.01, 1e-8, 2e-8))


def test_the_presets_load_with_the_fin_paper_figures():
    assert {"m4-edge", "m4-edge-cloud", "fin"} <= set(preset_names())
    fin = Platform.load("fin")
    assert [t.active_power_w for t in fin.targets] == [6.0, 140.0, 400.0]
    assert [t.macs_per_s for t in fin.targets] == [11e12, 153.4e12, 312e12]
    link = next(k for k in fin.links if (k.sender, k.receiver) == ("device", "edge"))
    assert math.isclose(link.energy_j_per_bit, 67e-9) and fin.feature_bits == 8
    assert Platform.load("m4-edge").device.kind == "mcu"


@pytest.mark.parametrize(
    "edit, fragment",
    [
        (lambda t: t.replace("active_power_w = 0.01\n", ""), "targets[0].active_power_w: missing"),
        (lambda t: t.replace('core = "cortex-m4"', 'core = "cortex-m99"'), "targets[0].core: expected one of"),
        (lambda t: t.replace('kind = "host"', 'kind = "gpu"'), "targets[1].kind: expected one of mcu, host"),
        (lambda t: t.replace("clock_hz = 64e6", 'clock_hz = "fast"'), "targets[0].clock_hz: expected a number"),
        (lambda t: t.replace('to = "host"', 'to = "cloud"'), "links[0].to: no target named 'cloud'"),
        (
            lambda t: t.replace("bandwidth_bps = 1e+06", "bandwidth_bps = -1.0"),
            "links[0].bandwidth_bps: must be a finite number > 0, got -1.0",
        ),
        (lambda t: t.replace("[[targets]]", "[[targets", 1), "not valid TOML"),
    ],
)
def test_a_bad_platform_file_is_one_line_naming_the_field(edit, fragment, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(edit(GOOD))
    assert_one_line_error(["profile", "--platform", path, "--workloads", "0"], "bad.toml", fragment)


def test_an_unknown_preset_lists_the_presets():
    assert_one_line_error(["profile", "--platform", "nowhere"], "m4-edge")


def test_a_small_workload_is_measured_in_qemu_and_on_the_host(tmp_path):
    platform_file = tmp_path / "tiny.toml"
    platform_file.write_text(GOOD)
    platform = Platform.load(platform_file)
    conv = layer_workloads(1)[0]
    on_mcu = measure(conv, platform.target("mcu"))
    on_host = measure(conv, platform.target("host"))
    # Instructions are exact under -icount; a convolution needs at least one per MAC.
    assert on_mcu.instructions >= math.expm1(on_mcu.features["log_conv_macs"])
    assert math.isclose(on_mcu.latency_s, on_mcu.instructions * 1.3 / 64e6)
    assert math.isclose(on_mcu.energy_j, on_mcu.latency_s * 0.01)
    assert 0 < on_host.latency_s < on_mcu.latency_s


def test_profile_grows_the_dataset_and_saves_a_model(tmp_path):
    platform_file = tmp_path / "tiny.toml"
    platform_file.write_text(GOOD)
    dataset, model = tmp_path / "d.jsonl", tmp_path / "m.json"
    args = [
        "profile",
        "--platform",
        platform_file,
        "--workloads",
        "2",
        "--dataset",
        dataset,
        "--cost-model",
        model,
        "--json",
    ]
    code, stdout, stderr = run_cli(*args)
    assert code == 0, stderr
    assert json.loads(stdout)["measurements"] == {"mcu": 2, "host": 2}
    assert len(dataset.read_text().splitlines()) == 4
    code, stdout, _ = run_cli(*args[:4], "3", *args[5:])  # one more workload: only it is measured
    assert len(dataset.read_text().splitlines()) == 6 and model.is_file()


def synthetic_rows(count, seed=0):
    """Rows whose latency is a known function of the features (a stand-in for a measured dataset)."""
    rows = []
    for w in layer_workloads(count, seed):
        f = segment_features(w.function)
        per_work = 1e-8 * (1 + 3 * f["depthwise_share"] + 0.05 * f["ops"])
        seconds = per_work * work_of(f)
        rows.append(
            Measurement(
                workload=w.key,
                name=w.name,
                kind=w.kind,
                target="mcu",
                features=f,
                work=work_of(f),
                latency_s=seconds,
                energy_j=0.01 * seconds,
            )
        )
    return rows


def test_a_model_trained_on_a_small_dataset_beats_the_mac_proxy_and_round_trips(tmp_path):
    platform_file = tmp_path / "tiny.toml"
    platform_file.write_text(GOOD)
    platform = Platform.load(platform_file)
    rows = synthetic_rows(60)
    report = cross_validate(platform, rows)["mcu"]
    assert report["mape"] < report["mac_proxy"]["mape"] and report["spearman"] > 0.9
    model = CostModel.train(platform, rows)
    model.save(tmp_path / "m.json")
    again = CostModel.load(tmp_path / "m.json", platform)
    f = rows[0].features
    assert (
        model.predict(f, "mcu").source == "model"
        and again.predict(f, "mcu").latency_s == model.predict(f, "mcu").latency_s
    )
    with pytest.raises(EennError, match="neither measurements nor macs_per_s"):
        again.predict(f, "host")  # measured_here, not measured yet, and no throughput to fall back on


def test_targets_without_measurements_use_the_analytic_model_of_the_fin_paper():
    fin = CostModel(Platform.load("fin"))
    segment = segment_workloads_of_example()[1]
    f = segment_features(segment.function)
    p = fin.predict(f, "edge")
    assert p.source == "analytic" and math.isclose(p.latency_s, work_of(f) / 153.4e12)
    assert math.isclose(p.energy_j, p.latency_s * 140.0)


def segment_workloads_of_example():
    from conftest import MODEL

    return segment_workloads(MODEL)


@pytest.mark.slow
def test_augment_with_a_platform_minimises_the_predicted_cost(augmented, fashion, tmp_path):
    out = tmp_path / "eenn"
    _, _, cache = augmented
    code, stdout, stderr = run_cli(
        "augment",
        augmented[0] / "model.onnx",
        "--data",
        fashion / "train.npz",
        "--cache-dir",
        cache,
        "--platform",
        "m4-edge",
        "--objective",
        "latency",
        "--cost-model",
        tmp_path / "none.json",
        "-o",
        out,
        "--json",
    )
    assert code == 2 and "no such cost model" in stderr
    code, stdout, stderr = run_cli(
        "augment",
        augmented[0] / "model.onnx",
        "--data",
        fashion / "train.npz",
        "--cache-dir",
        cache,
        "--platform",
        "m4-edge",
        "--objective",
        "latency",
        "-o",
        out,
        "--json",
    )
    assert code == 0, stderr
    plan = json.loads(stdout)
    predicted = plan["validation"]["predicted"]
    assert predicted["cost"] == "latency on device" and 0 < predicted["fraction"] < 1
    assert plan["search"]["cost"] == "latency on device"
    assert plan["validation"]["mean_macs"] > 0 and np.isfinite(plan["validation"]["mac_fraction"])
    # With no platform the cost stays MACs.
    assert augmented[1]["search"]["cost"] == "macs" and augmented[1]["validation"]["predicted"] is None


def test_the_cost_data_is_found_beside_the_platform_file_from_any_folder(tmp_path, monkeypatch):
    folder = tmp_path / "platforms"
    folder.mkdir()
    (folder / "tiny.toml").write_text(GOOD)
    platform = Platform.load(folder / "tiny.toml")
    files = CostFiles.home(platform)
    assert files == CostFiles(folder / "tiny.jsonl", folder / "tiny.model.json")
    write_measurements(files.measurements, synthetic_rows(20))
    monkeypatch.chdir(tmp_path)  # the working directory plays no part
    assert CostModel.for_platform(platform).sources() == {"mcu": "model", "host": "analytic"}


def test_a_platform_folder_that_cannot_be_written_keeps_its_cost_data_in_the_cache(tmp_path, monkeypatch):
    folder = tmp_path / "platforms"
    folder.mkdir()
    (folder / "tiny.toml").write_text(GOOD)
    write_measurements(folder / "tiny.jsonl", synthetic_rows(20))  # shipped with it
    platform = Platform.load(folder / "tiny.toml")
    monkeypatch.setattr(data, "CACHE", tmp_path / "cache")
    monkeypatch.setattr(data.os, "access", lambda path, mode: Path(path) != folder)
    home = CostFiles.home(platform)
    assert home.measurements == tmp_path / "cache" / "costs" / "tiny.jsonl"
    assert CostFiles.search_order(platform)[1].measurements == folder / "tiny.jsonl"
    assert CostModel.for_platform(platform).sources()["mcu"] == "model"  # trained on the shipped measurements
