"""The host backend as a compiler pipeline and a user meet it: scheduled kernels compute what TVM's plain pipeline
computes, the early-exit network in one call or in compacted batches takes the same exits as its segments run one by
one, a tuning database changes speed only, and `tune` answers bad input in one line."""

import json

import numpy as np
import pytest
import tvm
from conftest import MODEL
from test_cli import assert_one_line_error, run_cli
from tvm import relax

from eenn_tvm.errors import EennError
from eenn_tvm.network import Network
from eenn_tvm.passes import ChainExits
from eenn_tvm.plan import Plan
from eenn_tvm.targets.host import BatchRunner, EarlyExitRunner, HostModule, SegmentRunner, build
from eenn_tvm.targets.host.static import StaticEarlyExit, build_static
from eenn_tvm.targets.host.target import host_target, target_cpu

SAMPLES = 200


def assert_same_logits(got, want):
    """Equal up to float32 summation order: kernels with another layout or schedule add in another order, and the
    error that leaves grows with the logits' magnitude (a 0.0355 logit beside a 15.7 one came out 1.1e-5 apart on an
    AVX2 machine), so the absolute tolerance is relative to the largest."""
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(want).max())))


@pytest.fixture(scope="module")
def network(augmented):
    return Network.open(augmented[0])


@pytest.fixture(scope="module")
def test_images(fashion):
    return np.load(fashion / "test.npz")["x"][:SAMPLES]


def segments_one_by_one(module: HostModule, x: np.ndarray) -> tuple[int, np.ndarray]:
    """The early exit as a loop over the segments: what the one-call function must reproduce."""
    runner = SegmentRunner(module)
    carry = x
    for index, name in enumerate(runner.segments):
        outputs = module(name, carry)
        if index == len(runner.segments) - 1:
            return index, outputs[0]
        activation, logits, _confidence, take = outputs
        if take.item():
            return index, logits
        carry = activation
    raise AssertionError("unreachable")


def test_one_call_takes_the_same_exits_as_the_segments_one_by_one(network, test_images):
    chained = EarlyExitRunner(HostModule(build(ChainExits()(network.mod))))
    plain = HostModule(relax.build(network.mod, "llvm"))  # TVM's own pipeline: no layout change, no schedules
    exits = []
    for i in range(len(test_images)):
        x = test_images[i : i + 1]
        expected_exit, expected = segments_one_by_one(plain, x)
        exit_index, logits = chained.infer(x)
        assert exit_index == expected_exit
        assert_same_logits(logits, expected)
        exits.append(exit_index)
    assert len(set(exits)) > 1  # the images leave at different exits, so every branch was taken


def test_the_static_module_takes_the_exits_and_logits_of_the_one_call_module(augmented, test_images):
    folder = augmented[0]
    plan = Plan.load(folder)
    static = StaticEarlyExit(plan.artifact(folder, "static_host_module"))
    chained = EarlyExitRunner(HostModule.load(plan.artifact(folder, "host_module")))
    for x in test_images:
        index, logits = static.infer(x[None])
        expected_index, expected = chained.infer(x[None])
        assert index == expected_index
        assert_same_logits(logits, expected)
    with pytest.raises(EennError, match="takes 784 values per sample, not 783"):
        static.infer(test_images[0].reshape(-1)[:-1])


def test_a_tier_hands_on_its_activation_when_none_of_its_exits_fires(network, test_images):
    whole = EarlyExitRunner(HostModule(build(ChainExits()(network.mod))))
    first_two = ChainExits()(tvm.IRModule({s: network.mod[s] for s in network.segments[:2]}))
    tier = EarlyExitRunner(HostModule(build(first_two)))
    reference = HostModule(build(network.mod))
    handed = 0
    for i in range(len(test_images)):
        x = test_images[i : i + 1]
        exit_index, out = tier.infer(x)
        if whole.infer(x)[0] < 2:
            assert exit_index == whole.infer(x)[0]
            continue
        handed += 1
        assert exit_index is None
        activation = reference("segment_1", reference("segment_0", x)[0])[0]
        np.testing.assert_allclose(out, activation, rtol=1e-5, atol=1e-5)
    assert handed > 0


def test_batches_with_compaction_take_the_same_exits_as_one_sample_at_a_time(augmented, test_images):
    folder = augmented[0]
    plan = Plan.load(folder)
    one = EarlyExitRunner(HostModule(build(ChainExits()(Network.from_augment(folder, plan).mod))))
    batched = BatchRunner(
        HostModule(build(Network.from_augment(folder, plan, batch=8).mod, opaque_activations=True)), 8
    )
    exits, logits = batched.run(test_images)
    for i in range(len(test_images)):
        exit_index, expected = one.infer(test_images[i : i + 1])
        assert exits[i] == exit_index
        assert_same_logits(logits[i], expected[0])


def test_run_in_batches_reports_the_same_exits_and_its_throughput(augmented, fashion):
    figures = {}
    for batch in (1, 16):
        code, stdout, stderr = run_cli(
            "run", augmented[0], "--data", fashion / "test.npz", "--n", SAMPLES, "--batch", batch, "--json"
        )
        assert code == 0, stderr
        figures[batch] = json.loads(stdout)
    assert figures[16]["exit_histogram"] == figures[1]["exit_histogram"]
    assert figures[16]["accuracy"] == figures[1]["accuracy"]
    assert figures[16]["batch"] == 16 and figures[16]["samples_per_second"] > 0


@pytest.mark.slow
def test_a_tuned_network_gives_the_outputs_and_exits_of_the_untuned_one(augmented, test_images, fashion, tmp_path):
    database = tmp_path / "db"
    code, stdout, stderr = run_cli("tune", augmented[0], "--database", database, "--trials", 8, "--json")
    assert code == 0, stderr
    report = json.loads(stdout)
    assert report["trials"] > 0 and all(k["best_us"] for k in report["kernels"] if k["trials"])
    code, stdout, _ = run_cli("tune", augmented[0], "--database", database, "--trials", 8, "--json")
    again = json.loads(stdout)
    assert again["trials"] == 0 and all(k["already_tuned"] for k in again["kernels"])  # nothing tuned twice

    folder = augmented[0]
    chained = ChainExits()(Network.from_augment(folder).mod)
    untuned = EarlyExitRunner(HostModule(build(chained)))
    tuned = EarlyExitRunner(HostModule(build(chained, database=database)))
    for i in range(len(test_images)):
        x = test_images[i : i + 1]
        (exit_tuned, logits_tuned), (exit_untuned, logits_untuned) = tuned.infer(x), untuned.infer(x)
        assert exit_tuned == exit_untuned
        assert_same_logits(logits_tuned, logits_untuned)
    runs = []
    for extra in ([], ["--database", database]):  # the saved static module, then one built with the tuned kernels
        code, stdout, stderr = run_cli("run", folder, "--data", fashion / "test.npz", "--n", 200, "--json", *extra)
        assert code == 0, stderr
        runs.append(json.loads(stdout))
    assert runs[0]["exit_histogram"] == runs[1]["exit_histogram"]
    assert all("static host module" in r["runner"] for r in runs)


def test_tune_on_bad_input_is_one_line(tmp_path, augmented):
    (tmp_path / "a_file").write_text("")
    other = tmp_path / "other_cpu"
    other.mkdir()
    (other / "eenn-database.json").write_text(json.dumps({"cpu": "znver4"}))
    assert_one_line_error(["tune", tmp_path / "missing.onnx", "--database", tmp_path / "db"], "no such file")
    assert_one_line_error(["tune", MODEL, "--database", tmp_path / "a_file" / "db"], "cannot write")
    assert_one_line_error(["tune", MODEL, "--database", other], "tuned for the CPU 'znver4'")
    assert_one_line_error(["tune", MODEL, "--database", tmp_path / "db", "--target", "no-such-cpu"], "no-such-cpu")
    assert_one_line_error(["run", augmented[0], "--data", MODEL, "--database", other], "tuned for the CPU")
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "eenn-database.json").write_text(json.dumps({"cpu": target_cpu(host_target())}))
    (damaged / "database_workload.json").write_text("")
    (damaged / "database_tuning_record.json").write_text('{"not": "a record"}\n')  # crashes TVM's own reader
    assert_one_line_error(["run", augmented[0], "--data", MODEL, "--database", damaged], "records cannot be read")
    assert not (tmp_path / "db").exists()


def test_a_decision_over_a_few_logits_runs_without_the_thread_pool():
    """A 12-class softmax is a handful of loop iterations: a thread-pool launch would cost 20x the loops."""
    bb = relax.BlockBuilder()
    logits = relax.Var("logits", relax.TensorType([1, 12], "float32"))
    with bb.function("main", [logits]):
        with bb.dataflow():
            out = bb.emit_output(relax.op.max(relax.op.nn.softmax(logits), axis=[1]))
        bb.emit_func_output(out)
    module = HostModule(build(bb.get()))
    llvm_ir = module.executable.mod.imports[0].inspect_source("ll")
    assert "TVMBackendParallelLaunch" not in llvm_ir
    x = np.random.default_rng(0).normal(size=(1, 12)).astype("float32")
    expected = np.exp(x - x.max()) / np.exp(x - x.max()).sum()
    np.testing.assert_allclose(module("main", x)[0], expected.max(axis=1), rtol=1e-6)


@pytest.mark.parametrize("name", ["resnet8_cifar10", "kws_dscnn"])
def test_the_static_module_of_a_reference_model_computes_what_the_vm_module_does(mlperf_model, name, tmp_path):
    """Models nobody here trained: the kernels of MLPerf Tiny's ResNet-8 allocate workspace inside their parallel
    loops' bodies, which the static module must provide for."""
    network = Network.open(mlperf_model(name))
    build_static(network, tmp_path / "static.so")
    static = StaticEarlyExit(tmp_path / "static.so")
    chained = EarlyExitRunner(HostModule(build(ChainExits()(network.mod))))
    for seed in range(3):
        x = np.random.default_rng(seed).normal(size=network.input_shape).astype("float32")
        assert_same_logits(static.infer(x)[1], chained.infer(x)[1])
