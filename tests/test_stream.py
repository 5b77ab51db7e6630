"""Stream decisions (`augment --stream`, eenn_tvm.stream): the rule as the docs state it, window by window, and
the stage that certifies it and runs stream data in order."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import zoo
from test_cli import run_cli

from eenn_tvm.data import load_npz, load_split
from eenn_tvm.plan import Plan
from eenn_tvm.stream import Rule, Windows, decide_all, grid, tap_features
from eenn_tvm.targets.host.static import REUSED, StaticEarlyExit


def reference(windows: Windows, rule: Rule) -> tuple[list[int], list[int], list[float]]:
    """The rule of docs/streams.md, one window at a time: (class, slot (-1: reused), MACs) per window."""
    answers, slots, macs = [], [], []
    exits = len(rule.thresholds)
    overhead = windows.tap_overhead[rule.tap] if rule.reuse_below > 0 else 0.0
    for i in range(len(windows.stream)):
        if i == 0 or windows.stream[i] != windows.stream[i - 1]:
            reference_features, past = None, []  # a new stream: the state is reset
        features = windows.taps[rule.tap][i]
        if reference_features is not None and apart(features, reference_features) < rule.reuse_below:
            answers.append(past[0])
            slots.append(-1)
            macs.append(windows.tap_reach[rule.tap] + overhead)
            past.insert(0, past[0])
            continue
        answer, slot = windows.final[i], exits
        for j, threshold in enumerate(rule.thresholds):
            predicted = windows.prediction[j, i]
            patient = len(past) >= rule.patience and all(a == predicted for a in past[: rule.patience])
            level = threshold * rule.patient_scale if patient else threshold
            if windows.confidence[j, i] >= np.float32(level):
                answer, slot = predicted, j
                break
        reference_features = features
        answers.append(int(answer))
        slots.append(slot)
        macs.append(windows.exit_macs[slot] + overhead)
        past.insert(0, int(answer))
    return answers, slots, macs


def apart(a: np.ndarray, b: np.ndarray) -> float:
    """docs/streams.md's distance: the mean absolute difference of channel averages, or of an int8 tap, the exact
    sum of absolute differences of its channel sums."""
    if a.dtype.kind == "i":
        return int(np.abs(a - b).sum())
    return np.abs(a - b).mean()


def random_windows(seed: int) -> Windows:
    rng = np.random.default_rng(seed)
    lengths = [7, 12, 3, 9]
    n = sum(lengths)
    classes = 3
    slow = np.cumsum(rng.normal(0, 0.2, (n, 4)), axis=0)  # features that drift, so some windows are close
    return Windows(
        stream=np.repeat(np.arange(len(lengths)), lengths),
        label=rng.integers(classes, size=n),
        final=rng.integers(classes, size=n),
        confidence=rng.uniform(0.3, 1.0, (2, n)).astype(np.float32),
        prediction=rng.integers(classes, size=(2, n)),
        exit_macs=[10.0, 30.0, 100.0],
        taps=[slow.astype(np.float32), rng.normal(size=(n, 6)).astype(np.float32)],
        tap_reach=[5.0, 8.0],
        tap_overhead=[0.5, 0.7],
    )


def test_stream_decisions_equal_the_rule_applied_window_by_window():
    windows = random_windows(0)
    rules = [
        Rule((0.9, 0.8), 0, 0.0, 1, 1.0),
        Rule((0.9, 0.8), 0, 0.15, 2, 0.6),
        Rule((np.inf, 0.7), 1, 0.9, 3, 0.5),
        Rule((0.95, np.inf), 0, 0.3, 1, 0.8),
        Rule((0.6, 0.6), 1, 0.0, 2, 0.4),
    ]
    got = decide_all(windows, rules)
    assert (got.slot == -1).any() and (got.slot >= 0).any(), "the rules must both reuse and compute"
    for row, rule in enumerate(rules):
        answers, slots, macs = reference(windows, rule)
        assert got.answer[row].tolist() == answers, rule
        assert got.slot[row].tolist() == slots, rule
        assert np.allclose(got.macs[row], macs), rule


def test_int8_taps_compare_the_exact_sums_of_their_codes():
    windows = random_windows(1)
    codes = np.random.default_rng(1).integers(-128, 128, (len(windows.stream), 4, 6), dtype=np.int64).astype(np.int8)
    codes[1:] = codes[:1]  # most windows equal the first, so the smallest bound reuses them
    windows.taps = [tap_features(codes)]
    assert windows.taps[0].dtype == np.int64 and (windows.taps[0] == codes.astype(int).sum(-1)).all()
    levels = sorted({r.reuse_below for r in grid(windows, [0.9, 0.8])})
    assert all(float(level).is_integer() for level in levels)
    rules = [Rule((0.9, 0.8), 0, below, 1, 1.0) for below in (0.0, 1.0, 400.0)]
    got = decide_all(windows, rules)
    assert (got.slot[1] == -1).any(), "equal codes are 0 apart: a bound of 1 reuses them"
    for row, rule in enumerate(rules):
        answers, slots, _ = reference(windows, rule)
        assert got.answer[row].tolist() == answers and got.slot[row].tolist() == slots, rule


def test_stream_data_with_groups_hold_out_whole_groups_and_keep_each_window_in_its_stream(tmp_path):
    rng = np.random.default_rng(0)
    n, length = 400, 20
    stream = rng.permutation(n // length).repeat(length)  # 20 streams, stored out of order
    order = np.tile(np.arange(length), n // length)
    speaker = stream // 2  # two streams per speaker
    x = (stream * 100 + order).astype(np.float32)[:, None]  # each window says where it comes from
    np.savez(tmp_path / "s.npz", x=x, y=rng.integers(2, size=n), stream=stream, order=order, groups=speaker)
    data, train, held = load_split(tmp_path / "s.npz", (1,), 2, 0.5, 0, None)
    assert set(data.groups[train]).isdisjoint(data.groups[held]), "a speaker's streams are held out together"
    assert (data.x[:, 0] == data.stream * 100 + data.order).all() and (data.groups == data.stream // 2).all()
    same_stream = np.diff(data.stream) == 0
    assert np.count_nonzero(~same_stream) == n // length - 1 and (np.diff(data.order)[same_stream] == 1).all()


@pytest.fixture(scope="module")
def mlp_streams(mlp_assets, tmp_path_factory):
    """The dense zoo model's data as 20 streams of 50 windows, each stream a slow walk so that windows repeat."""
    folder = tmp_path_factory.mktemp("streams")
    d = dict(np.load(mlp_assets / "data.npz"))
    n = len(d["y"])
    d["stream"], d["order"] = np.arange(n) // 50, np.arange(n) % 50
    np.savez(folder / "streams.npz", **d)
    return folder / "streams.npz"


@pytest.mark.slow
def test_augment_stream_is_deterministic_holds_out_half_the_streams_and_run_replays_its_decisions(
    mlp_assets, mlp_streams, tmp_path
):
    args = ["--data", mlp_streams, "--no-cache", "--max-accuracy-drop", "0.1", "--stream", "--json"]
    plans = []
    for out in ("a", "b"):
        code, stdout, stderr = run_cli("augment", mlp_assets / "model.onnx", *args, "-o", tmp_path / out)
        assert code == 0, stderr
        plans.append(json.loads(stdout))
    a, b = plans
    assert (a["stream"], a["exits"]) == (b["stream"], b["exits"])
    stream = a["stream"]
    assert stream["version"] == 1 and len(stream["thresholds"]) == len(a["exits"])
    assert a["search"]["val_fraction"] == 0.5, "streams set the thresholds on half the streams by default"
    code, stdout, stderr = run_cli("run", tmp_path / "a", "--data", mlp_streams, "--json")
    assert code == 0, stderr
    ran = json.loads(stdout)["stream"]
    assert ran["streams"] == 20 and ran["samples"] == 1000
    assert len(ran["answers"]) == 1000 and ran["reused"] == ran["slots"].count(-1)
    assert ran["accuracy_drop"] == pytest.approx(ran["baseline_accuracy"] - ran["accuracy"])


@pytest.fixture(scope="module")
def conv_stream_augment(zoo_model, tmp_path_factory):
    """The 1-D convolutional zoo model on 20 streams of 50 windows (self-labelled) and its `augment --stream`
    output: a tap whose channels the compiled rule averages."""
    folder = tmp_path_factory.mktemp("conv-streams")
    model = zoo_model("ecg", "legacy")
    x, y = zoo.self_labelled(model.path, model.input_shape, 1000)
    n = len(y)
    np.savez(folder / "streams.npz", x=x, y=y, stream=np.arange(n) // 50, order=np.arange(n) % 50)
    args = ["--data", folder / "streams.npz", "--no-cache", "--max-accuracy-drop", "0.1", "--stream"]
    code, _, stderr = run_cli("augment", model.path, *args, "-o", folder / "eenn")
    assert code == 0, stderr
    return folder


@pytest.mark.slow
def test_the_compiled_stream_rule_decides_as_the_numpy_one_on_the_host_and_in_qemu(conv_stream_augment, tmp_path):
    folder = conv_stream_augment
    plan = Plan.load(folder / "eenn")
    assert plan.stream.reuse_below > 0, "the fixture's rule must reuse answers, so that the test sees reuse"
    data = load_npz(folder / "streams.npz", tuple(plan.model.input_shape[1:]), plan.model.classes)
    code, stdout, stderr = run_cli("run", folder / "eenn", "--data", folder / "streams.npz", "--json")
    assert code == 0, stderr
    numpy_rule = json.loads(stdout)["stream"]  # eenn.onnx in onnxruntime, the rule in numpy
    assert numpy_rule["static_host_agreement"] == 1.0
    static = StaticEarlyExit(plan.artifact(folder / "eenn", "static_host_module"))
    slots, answers, previous = [], [], None
    for i in range(len(data)):
        if data.groups[i] != previous:
            static.reset_stream()
            previous = data.groups[i]
        slot, scores = static.infer_stream(data.x[i : i + 1])
        slots.append(slot)
        answers.append(int(scores.argmax()))
    assert slots == numpy_rule["slots"] and answers == numpy_rule["answers"]
    assert slots.count(REUSED) == numpy_rule["reused"] > 0

    code, _, stderr = run_cli("build", folder / "eenn", "--target", "cortex-m4", "-o", tmp_path / "fw")
    assert code == 0, stderr
    code, stdout, stderr = run_cli(
        "verify", tmp_path / "fw", "--data", folder / "streams.npz", "--n", "150", "--stream", "--json"
    )
    assert code == 0, stderr
    checked = json.loads(stdout)
    assert checked["samples"] == 150 and checked["streams"] == 3 and checked["decision_mismatches"] == 0
    assert checked["reused"] == numpy_rule["slots"][:150].count(REUSED)


def test_a_firmware_without_a_stream_rule_refuses_verify_stream(mlp_firmware, mlp_streams):
    code, _, stderr = run_cli("verify", mlp_firmware, "--data", mlp_streams, "--stream")
    assert code == 2
    assert stderr.strip().splitlines()[-1].startswith("eenn-tvm: error:") and "no stream rule" in stderr


@pytest.fixture(scope="module")
def int8_stream_output(conv_stream_augment, tmp_path_factory):
    """`quantize` of the convolutional stream plan, with its stream data: (the output, its int8 stream rule)."""
    out = tmp_path_factory.mktemp("int8-stream") / "int8"
    data = conv_stream_augment / "streams.npz"
    code, stdout, stderr = run_cli("quantize", conv_stream_augment / "eenn", "--data", data, "-o", out, "--json")
    assert code == 0, stderr
    return out, json.loads(stdout)["stream"]


@pytest.mark.slow
def test_int8_firmware_decides_streams_with_the_int8_rule_as_the_integer_host_module(
    conv_stream_augment, int8_stream_output, tmp_path
):
    data = conv_stream_augment / "streams.npz"
    out, rule = int8_stream_output
    assert rule["tap_dtype"] == "int8" and rule["tap"].endswith("_QuantizeLinear_Output")
    assert rule["reuse_below"] > 0 and float(rule["reuse_below"]).is_integer()
    code, stdout, stderr = run_cli("run", out, "--data", data, "--dtype", "int8", "--json")
    assert code == 0, stderr
    ran = json.loads(stdout)["int8"]["stream"]
    assert ran["samples"] == 1000 and ran["reused"] == ran["slots"].count(REUSED) > 0

    code, _, stderr = run_cli("build", out, "--dtype", "int8", "--target", "cortex-m4", "-o", tmp_path / "fw")
    assert code == 0, stderr
    assert "decides per sample" not in stderr
    code, stdout, stderr = run_cli("verify", tmp_path / "fw", "--data", data, "--n", "150", "--stream", "--json")
    assert code == 0, stderr
    checked = json.loads(stdout)
    assert checked["samples"] == 150 and checked["decision_mismatches"] == 0 and checked["max_abs_error"] == 0
    assert checked["reused"] > 0, "the fixture's rule must reuse answers in the firmware too"


@pytest.mark.slow
def test_an_int8_network_without_its_own_stream_rule_builds_per_sample_firmware_and_says_so(
    conv_stream_augment, int8_stream_output, tmp_path
):
    out, _ = int8_stream_output
    older = tmp_path / "older"
    shutil.copytree(out, older)
    plan = json.loads((older / "plan.json").read_text())
    del plan["int8"]["stream"]  # as quantize wrote it before the int8 stream rule
    (older / "plan.json").write_text(json.dumps(plan))
    code, _, stderr = run_cli("build", older, "--dtype", "int8", "--target", "cortex-m4", "-o", tmp_path / "fw")
    assert code == 0, stderr
    assert "this int8 firmware decides per sample; run `eenn-tvm quantize` again" in stderr
    code, _, stderr = run_cli("verify", tmp_path / "fw", "--data", conv_stream_augment / "streams.npz", "--stream")
    assert code == 2 and stderr.strip().splitlines()[-1].startswith("eenn-tvm: error:") and "no stream rule" in stderr


@pytest.mark.slow
def test_quantize_of_a_stream_plan_refuses_the_windows_without_their_streams(conv_stream_augment, tmp_path):
    windows = dict(np.load(conv_stream_augment / "streams.npz"))
    np.savez(tmp_path / "windows.npz", x=windows["x"], y=windows["y"])  # the same windows, not stream data
    code, _, stderr = run_cli("quantize", conv_stream_augment / "eenn", "--data", tmp_path / "windows.npz")
    assert code == 2
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("eenn-tvm: error:") and "not the data augment was given" in last
    assert not (conv_stream_augment / "eenn" / "eenn_int8.onnx").exists()
