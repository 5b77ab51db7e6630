"""augment + run end to end on real data (Fashion-MNIST and the example ResNet-8), and bad data."""

import json

import numpy as np
import onnx
import pytest
import zoo
from conftest import MODEL
from test_cli import assert_one_line_error, run_cli

from eenn_tvm import augment


@pytest.mark.slow
def test_augment_writes_the_plan_and_all_artifacts(augmented):
    out, plan, _ = augmented
    for name in ["plan.json", "eenn.onnx", "eenn_host.so", "report.md", "pareto.png", "exits.png"]:
        assert (out / name).is_file(), name
    assert plan["version"] == 2 and plan["exits"]
    for e in plan["exits"]:
        assert (out / e["weights"]).is_file()
        assert {"point", "head", "threshold", "macs_to_reach"} <= e.keys()
    outputs = [o.name for o in onnx.load(str(out / "eenn.onnx")).graph.output]
    assert outputs == ["logits"] + [f"exit_{i}" for i in range(len(plan["exits"]))]


@pytest.mark.slow
def test_validation_accuracy_keeps_the_floor_and_beats_the_baseline(augmented):
    _, plan, _ = augmented
    v, b = plan["validation"], plan["baseline"]["validation"]
    assert v["accuracy"] >= v["baseline_accuracy"] - 0.01 - 1e-9
    assert b["accuracy"] >= b["baseline_accuracy"] - 0.01 - 1e-9
    assert v["mac_fraction"] < b["mac_fraction"] < 1.0
    assert v["mac_fraction"] < 0.6


@pytest.mark.slow
def test_run_on_held_out_data_and_onnxruntime_reproduces_it_exactly(augmented, fashion):
    out, _, _ = augmented
    code, stdout, stderr = run_cli("run", out, "--data", fashion / "test.npz", "--json")
    assert code == 0, stderr
    tvm = json.loads(stdout)
    code, stdout, _ = run_cli("run", out, "--data", fashion / "test.npz", "--json", "--engine", "onnxruntime")
    ort = json.loads(stdout)
    for key in ["baseline_accuracy", "accuracy", "mean_macs", "mac_reduction", "exit_histogram"]:
        assert tvm[key] == ort[key], key
    assert tvm["samples"] == 1000 and sum(tvm["exit_histogram"]) == 1000
    assert tvm["mac_reduction"] > 0.3  # a guarantee tested on 400 images: 36.9 % with the example ResNet-8
    assert tvm["baseline_accuracy"] - tvm["accuracy"] < 0.04  # 800 validation samples set the thresholds


@pytest.mark.slow
def test_data_the_model_gets_wrong_but_the_heads_learn_are_named_as_a_likely_mismatch(zoo_model, tmp_path):
    model = zoo_model("mlp", "legacy")
    x, y = zoo.self_labelled(model.path, model.input_shape, 1000)
    np.savez(tmp_path / "shifted.npz", x=x, y=(y + 1) % (y.max() + 1))  # every label one class off the model's
    args = ["--data", tmp_path / "shifted.npz", "--no-cache", "--max-accuracy-drop", "0.1", "-o", tmp_path / "eenn"]
    code, _, stderr = run_cli("augment", model.path, *args)
    assert code == 0, stderr
    assert "points more accurate than the original model" in stderr and "may not be what it was trained on" in stderr


def test_same_seed_gives_the_same_plan(augmented, fashion, tmp_path):
    _, plan, cache = augmented
    code, stdout, _ = run_cli(
        "augment", MODEL, "--data", fashion / "train.npz", "--cache-dir", cache, "-o", tmp_path / "again", "--json"
    )
    assert code == 0
    assert without_timings(json.loads(stdout)) == without_timings(plan)


def without_timings(plan: dict) -> dict:
    """The plan as JSON without what changes from run to run (its heads' weights stay in, by their hashes)."""
    plan["search"].pop("seconds")
    plan["hashes"].pop("report.md")  # it holds the timings
    return plan


def test_the_plan_is_the_same_bit_for_bit_whatever_the_number_of_workers(mlp_assets, tmp_path, monkeypatch):
    # every head screened first, so both the screening and the full training of the chosen heads run in the workers
    monkeypatch.setattr(augment, "SCREEN_ABOVE", 0)
    data = ["--data", mlp_assets / "data.npz", "--no-cache", "--max-accuracy-drop", "0.1", "--json"]
    plans = []
    for workers in (1, 2):
        code, stdout, stderr = run_cli(
            "augment", mlp_assets / "model.onnx", *data, "--workers", workers, "-o", tmp_path / f"w{workers}"
        )
        assert code == 0, stderr
        plans.append(without_timings(json.loads(stdout)))
    assert plans[0]["exits"] and plans[0] == plans[1]


def test_convolutional_and_reach_weighted_heads_train_in_the_workers_as_in_this_process(zoo_model):
    """Both rounds of head training go through the pool: a worker's convolutional head after the first point is the
    one trained here on the reach weights of the first point's heads, and every head equals the in-process one."""
    from threadpoolctl import threadpool_limits

    from eenn_tvm.analysis import analyze
    from eenn_tvm.costs import MacCost
    from eenn_tvm.data import split
    from eenn_tvm.features import extract
    from eenn_tvm.frontend import import_onnx
    from eenn_tvm.heads import MAX_ITER, train
    from eenn_tvm.parallel import head_pool

    z = zoo_model("ecg", "legacy")
    model = import_onnx(z.path)
    analysis, settings = analyze(model), augment.Settings()
    x, y = zoo.self_labelled(z.path, z.input_shape, 500)
    train_idx, val_idx = split(y, settings.val_fraction, settings.seed)
    features = extract(model, analysis.exit_points, x, cache_dir=None)
    classes = features.final.shape[1]

    def heads_by(workers: int) -> dict:
        with head_pool(workers, None, None) as pool:
            args = analysis, features, y, None, train_idx, val_idx, classes, settings, MacCost(analysis), pool
            return augment.train_and_score(*args).heads

    here, workers = heads_by(1), heads_by(2)
    assert here.keys() == workers.keys() and (1, "grid_conv") in here
    for job, head in here.items():
        assert same_weights(head, workers[job]), job
    first = {job: head for job, head in here.items() if job[0] == 0}
    points = analysis.exit_points[:2]
    weights = augment.reach_weights(first, features, points, train_idx, settings.decision)[1]
    grid = features.pooled[points[1].name]["grid"][train_idx]
    with threadpool_limits(1):
        expected = train("grid_conv", grid, y[train_idx], classes, settings.seed, MAX_ITER, weights)
    assert same_weights(expected, workers[1, "grid_conv"])


def same_weights(head, other) -> bool:
    return all(np.array_equal(a, b) for h, o in zip(head.layers, other.layers) for a, b in zip(h, o))


def bad_npz(path, **arrays):
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    "arrays,fragment",
    [
        (
            {"x": np.zeros((100, 28, 28), np.float32), "y": np.zeros(100, int)},
            "samples are 28x28 but the model takes 1x28x28",
        ),
        ({"x": np.zeros((100, 1, 28, 28), np.uint8), "y": np.zeros(100, int)}, "x is uint8"),
        (
            {"x": np.zeros((100, 1, 28, 28), np.float32), "y": np.full(100, 12)},
            "labels run from 12 to 12, but the model has 10 classes",
        ),
        ({"x": np.zeros((90, 1, 28, 28), np.float32), "y": np.arange(90) % 10}, "at least 10 per class"),
        ({"x": np.zeros((100, 1, 28, 28), np.float32), "y": np.zeros(99, int)}, "same number of samples"),
        ({"x": np.zeros((100, 1, 28, 28), np.float32)}, "has no array y"),
        ({"x": np.zeros((100, 1, 28, 28), np.float32), "y": np.zeros(100, np.float32)}, "labels must be integers"),
        (
            {"x": np.zeros((100, 1, 28, 28), np.float32), "y": np.arange(100) % 10, "groups": np.zeros(99, int)},
            "one per sample (100)",
        ),
    ],
)
def test_bad_data_is_one_line_and_writes_nothing(tmp_path, arrays, fragment):
    data = bad_npz(tmp_path / "bad.npz", **arrays)
    assert_one_line_error(["augment", MODEL, "--data", data, "-o", tmp_path / "out", "--no-cache"], fragment)
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.npz"]


def test_data_that_is_not_npz(tmp_path):
    path = tmp_path / "data.npz"
    path.write_text("x,y\n1,2\n")
    assert_one_line_error(["augment", MODEL, "--data", path, "-o", tmp_path / "out"], "is a text file, not an .npz")


def test_tolerance_out_of_range(tmp_path, fashion):
    assert_one_line_error(
        ["augment", MODEL, "--data", fashion / "train.npz", "--max-accuracy-drop", "-0.1", "-o", tmp_path / "o"],
        "--max-accuracy-drop",
    )


def test_run_needs_an_augment_folder(tmp_path):
    assert_one_line_error(["run", tmp_path, "--data", tmp_path / "x.npz"], "no plan.json")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobilenet", "mobilenet_v2", "inception", "ecg", "mlp"])
def test_augment_and_run_work_on_every_model_family(zoo_model, tmp_path, name):
    """Depthwise, inverted-residual with ReLU6, branch-and-concat, 1-D and dense-only networks go through the
    whole flow, and the TVM module and eenn.onnx agree."""
    z = zoo_model(name, "legacy")
    x, y = zoo.self_labelled(z.path, z.input_shape, 1000)
    np.savez(tmp_path / "data.npz", x=x[:800], y=y[:800])
    np.savez(tmp_path / "test.npz", x=x[800:], y=y[800:])
    out = tmp_path / "out"
    code, _, stderr = run_cli(
        "augment", z.path, "--data", tmp_path / "data.npz", "--max-accuracy-drop", "0.05", "--no-cache", "-o", out
    )
    assert code == 0, stderr
    results = []
    for engine in ("tvm", "onnxruntime"):
        code, stdout, stderr = run_cli("run", out, "--data", tmp_path / "test.npz", "--engine", engine, "--json")
        assert code == 0, stderr
        results.append(json.loads(stdout))
    for key in ["accuracy", "exit_histogram", "mean_macs"]:
        assert results[0][key] == results[1][key]


@pytest.mark.slow
def test_calibration_data_sets_the_thresholds_and_all_of_data_trains_the_heads(fashion, augmented, tmp_path):
    train = np.load(fashion / "train.npz")
    np.savez(tmp_path / "heads.npz", x=train["x"][:3000], y=train["y"][:3000])
    np.savez(tmp_path / "calibration.npz", x=train["x"][3000:], y=train["y"][3000:])
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(
        "augment",
        MODEL,
        "--data",
        tmp_path / "heads.npz",
        "--calibration-data",
        tmp_path / "calibration.npz",
        "--cache-dir",
        augmented[2],
        "-o",
        out,
        "--json",
    )
    assert code == 0, stderr
    plan = json.loads(stdout)
    assert plan["validation"]["samples"] == 1000
    assert plan["search"]["calibration_data"].endswith("calibration.npz") and plan["search"]["val_fraction"] is None
    assert plan["validation"]["accuracy"] >= plan["validation"]["baseline_accuracy"] - 0.01


def test_calibration_data_missing_a_class_is_one_line(fashion, tmp_path):
    train = np.load(fashion / "train.npz")
    keep = train["y"][:500] != 3
    np.savez(tmp_path / "calibration.npz", x=train["x"][:500][keep], y=train["y"][:500][keep])
    assert_one_line_error(
        [
            "augment",
            MODEL,
            "--data",
            fashion / "train.npz",
            "--calibration-data",
            tmp_path / "calibration.npz",
            "-o",
            tmp_path / "out",
        ],
        "calibration.npz",
        "too few samples of class 3 (0): at least 10 per class",
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_baseline_no_single_threshold_makes_meet_the_tolerance_is_reported_infeasible(fashion, tmp_path):
    """On 1,000 samples no single threshold passes the guarantee's test: the SDN baseline is then infeasible in the
    plan, the report and `run`, and augment still delivers its own network."""
    train = np.load(fashion / "train.npz")
    np.savez(tmp_path / "small.npz", x=train["x"][:1000], y=train["y"][:1000])
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(
        "augment", MODEL, "--data", tmp_path / "small.npz", "--seed", "2", "--no-cache", "-o", out, "--json"
    )
    assert code == 0, stderr
    plan = json.loads(stdout)
    assert plan["baseline"] == {"exits": [], "validation": None, "feasible": False}
    assert plan["artifacts"]["baseline_onnx"] is None and not (out / "baseline.onnx").exists()
    assert "infeasible: no single threshold meets the tolerance" in (out / "report.md").read_text()
    code, stdout, stderr = run_cli("run", out, "--data", fashion / "test.npz", "--n", "100")
    assert code == 0, stderr
    assert "SDN baseline        infeasible" in stdout
    code, stdout, _ = run_cli("run", out, "--data", fashion / "test.npz", "--n", "100", "--json")
    assert json.loads(stdout)["sdn_baseline"] is None


@pytest.mark.parametrize(
    "edit, fragment",
    [
        (
            lambda p: p["exits"][0].update(threshold=2.0),
            "plan.json: exits[0].threshold: must be a number between 0 and 1",
        ),
        (lambda p: p["model"].pop("classes"), "plan.json: model.classes: missing"),
        (lambda p: p.update(version=1), "plan.json: version: expected 2, got 1"),
    ],
)
def test_a_plan_with_a_bad_field_is_one_line_naming_the_field(augmented, fashion, tmp_path, edit, fragment):
    out = tmp_path / "eenn"
    out.mkdir()
    plan = json.loads((augmented[0] / "plan.json").read_text())
    edit(plan)
    (out / "plan.json").write_text(json.dumps(plan))
    assert_one_line_error(["run", out, "--data", fashion / "test.npz"], fragment, "run `eenn-tvm augment` again")
