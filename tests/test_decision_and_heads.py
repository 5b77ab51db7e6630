"""Exit heads and decision rules: numpy, Relax (TVM) and ONNX compute the same thing."""

import itertools

import numpy as np
import pytest
from conftest import ort_run
from tvm import relax

from eenn_tvm import heads
from eenn_tvm.catalog import RULES
from eenn_tvm.decision import confidence
from eenn_tvm.errors import EennError
from eenn_tvm.exit_functions import exit_function
from eenn_tvm.features import pooled_view
from eenn_tvm.onnx_export import with_exit_heads
from eenn_tvm.targets.host import HostModule, build


def blobs(n=600, features=12, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, features)) * 3
    y = rng.integers(0, classes, n)
    return (centres[y] + rng.standard_normal((n, features))).astype(np.float32), y


def grid_blobs(n=600, channels=6, cells=8, classes=3, seed=0):
    """Classes told apart by which grid cells light up in which channel (a pattern a 1x1 convolution sees)."""
    x, y = blobs(n, channels * cells, classes, seed)
    return x.reshape(n, channels, cells), y


@pytest.mark.parametrize("kind", list(heads.HEAD_KINDS))
def test_heads_learn_separable_classes_and_are_deterministic(kind):
    x, y = grid_blobs() if heads.HEAD_KINDS[kind].pointwise else blobs()
    first = heads.train(kind, x[:400], y[:400], 3, seed=5)
    again = heads.train(kind, x[:400], y[:400], 3, seed=5)
    assert (first.logits(x[400:]).argmax(1) == y[400:]).mean() > 0.95
    for (w1, b1), (w2, b2) in zip(first.layers, again.layers):
        np.testing.assert_array_equal(w1, w2)
        np.testing.assert_array_equal(b1, b2)


def test_head_cost_counts_pooling_dense_layers_and_relus():
    mlp = heads.Head("pool2_mlp", [(np.zeros((64, 32)), np.zeros(32)), (np.zeros((32, 10)), np.zeros(10))])
    assert mlp.macs([1, 16, 7, 7]) == 16 * 49 + 64 * 32 + 32 * 10 + 32
    assert mlp.param_bytes() == 4 * (64 * 32 + 32 + 32 * 10 + 10)
    assert heads.kinds_for([1, 64, 1, 1]) == ["gap_linear"]
    assert set(heads.kinds_for([1, 8, 5])) == set(heads.HEAD_KINDS) - {"grid_conv"}  # shorter than the grid
    assert set(heads.kinds_for([1, 8, 40])) == set(heads.HEAD_KINDS)
    assert "grid_conv" in heads.kinds_for([1, 16, 7, 7])


def test_convolutional_head_cost_counts_every_grid_cell():
    conv = heads.Head("grid_conv", [(np.zeros((16, 32)), np.zeros(32)), (np.zeros((32, 10)), np.zeros(10))])
    # pooling 16x8x8 inputs; per 4x4 cell a 16->32 1x1 convolution and 32 ReLUs; averaging 16 cells x 32; dense
    assert conv.macs([1, 16, 8, 8]) == 16 * 64 + 16 * 16 * 32 + 16 * 32 + 16 * 32 + 32 * 10
    assert conv.macs([1, 16, 100]) == 16 * 100 + 8 * 16 * 32 + 8 * 32 + 8 * 32 + 32 * 10


def test_head_weights_shift_it_toward_the_weighted_samples():
    x, y = blobs(seed=3)
    hard = y == 2
    plain = heads.train("gap_linear", x, y, 3, seed=0)
    weighted = heads.train("gap_linear", x, y, 3, seed=0, weights=np.where(hard, 10.0, 1.0))
    again = heads.train("gap_linear", x, y, 3, seed=0, weights=np.where(hard, 10.0, 1.0))
    np.testing.assert_array_equal(weighted.layers[0][0], again.layers[0][0])
    p_plain, p_weighted = (np.exp(h.logits(x[hard])) for h in (plain, weighted))
    assert (p_weighted[:, 2] / p_weighted.sum(1)).mean() > (p_plain[:, 2] / p_plain.sum(1)).mean()
    assert heads.kinds_for([1, 1024, 8, 8]) == ["gap_linear"]  # wide maps: global pooling only


def test_head_saves_and_loads(tmp_path):
    x, y = blobs()
    head = heads.train("pool2_mlp", x, y, 3, seed=0)
    head.save(tmp_path / "h.npz")
    loaded = heads.Head.load(tmp_path / "h.npz", "pool2_mlp", [1, 3, 8, 8], 3)  # 3 channels x 2x2 bins: 12 features
    assert loaded.kind == head.kind
    np.testing.assert_array_equal(loaded.logits(x), head.logits(x))


def test_convolutional_head_loads_only_where_its_channels_fit(tmp_path):
    x, y = grid_blobs(channels=6)
    head = heads.train("grid_conv", x, y, 3, seed=0, max_iter=20)
    head.save(tmp_path / "h.npz")
    loaded = heads.Head.load(tmp_path / "h.npz", "grid_conv", [1, 6, 40], 3)
    np.testing.assert_array_equal(loaded.logits(x), head.logits(x))
    with pytest.raises(EennError, match="do not fit a grid_conv head"):
        heads.Head.load(tmp_path / "h.npz", "grid_conv", [1, 48, 40], 3)  # its pooled width, not its channels
    heads.Head("grid_conv", head.layers[:1]).save(tmp_path / "one.npz")
    with pytest.raises(EennError, match="has 1 layers"):
        heads.Head.load(tmp_path / "one.npz", "grid_conv", [1, 6, 40], 3)


def test_confidence_rules_on_known_values():
    undecided = np.zeros((1, 4), np.float32)
    certain = np.array([[30.0, 0, 0, 0]], np.float32)
    for rule in RULES:
        assert confidence(certain, rule)[0] == pytest.approx(1.0, abs=1e-6)
    assert confidence(undecided, "maxprob")[0] == pytest.approx(0.25)
    assert confidence(undecided, "margin")[0] == pytest.approx(0.0)
    assert confidence(undecided, "entropy")[0] == pytest.approx(0.0, abs=1e-6)
    two_way = np.log(np.array([[0.6, 0.3, 0.1]], np.float32))
    assert confidence(two_way, "margin")[0] == pytest.approx(0.3, abs=1e-6)


def random_head(kind, shape, classes, seed):
    rng = np.random.default_rng(seed)
    features = heads.pooled_shape(shape, heads.HEAD_KINDS[kind].pooling)[0]
    dims = [features] + ([16] if heads.HEAD_KINDS[kind].hidden else []) + [classes]
    return heads.Head(
        kind,
        [
            (rng.standard_normal((i, o)).astype(np.float32), rng.standard_normal(o).astype(np.float32))
            for i, o in itertools.pairwise(dims)
        ],
    )


@pytest.mark.parametrize("shape", [[1, 6, 7, 5], [1, 4, 9], [1, 12]])
@pytest.mark.parametrize("kind", list(heads.HEAD_KINDS))
@pytest.mark.parametrize("rule", RULES)
def test_compiled_exit_matches_numpy_head_and_decision(shape, kind, rule):
    if kind not in heads.kinds_for(shape):
        pytest.skip(f"no {kind} head at a {shape} point")
    head = random_head(kind, shape, 5, seed=len(shape))
    a = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    features = pooled_view(a, head.pooling) if len(shape) > 2 else a
    logits = head.logits(features)
    conf = confidence(logits, rule)[0]
    for threshold, expected in [(conf - 1e-3, True), (conf + 1e-3, False)]:
        func = exit_function(head, relax.TensorType(shape, "float32"), rule, float(threshold))
        out_logits, out_conf, take = HostModule(build(tvm_module(func)))("exit", a)
        np.testing.assert_allclose(out_logits, logits, atol=1e-4)
        assert out_conf[0] == pytest.approx(conf, abs=1e-5)
        assert bool(take[0]) is expected


def tvm_module(func):
    import tvm

    return tvm.IRModule({"exit": func.with_attr("global_symbol", "exit")})


def test_onnx_export_computes_the_heads(zoo_model):
    from eenn_tvm.analysis import analyze
    from eenn_tvm.frontend import import_onnx

    model = import_onnx(zoo_model("ecg", "dynamo").path)
    points = analyze(model).exit_points[:3]
    chosen = [
        (p.name, p.shape, random_head(kind, p.shape, 5, i))
        for i, (p, kind) in enumerate(zip(points, ["grid_conv", "pool2_mlp", "gap_linear"]))
    ]
    x = np.random.default_rng(0).standard_normal(model.input_shapes["x"]).astype(np.float32)
    inner = ort_run(model.onnx, x, [p.name for p in points])
    outputs = ort_run(with_exit_heads(model.onnx, chosen), x)
    for i, (name, _, head) in enumerate(chosen):
        features = pooled_view(inner[name], head.pooling)
        np.testing.assert_allclose(outputs[f"exit_{i}"], head.logits(features), atol=1e-4)


def test_later_heads_weigh_most_the_samples_earlier_heads_are_unsure_of():
    from types import SimpleNamespace

    from eenn_tvm.augment import REACH_MIX, reach_weights
    from eenn_tvm.features import Features

    rng = np.random.default_rng(4)
    y = rng.integers(0, 3, 600)
    centres = np.array([[3.0] * 12, [-3.0] * 12, [-3.0] * 12])  # classes 1 and 2 look alike at the first point
    x = (centres[y] + rng.standard_normal((600, 12))).astype(np.float32)
    first = heads.train("gap_linear", x, y, 3, seed=0)
    points = [SimpleNamespace(name="first"), SimpleNamespace(name="second")]
    features = Features({"first": {"gap": x}, "second": {"gap": x}}, np.zeros((len(x), 3), np.float32))
    train_idx = np.arange(len(x))
    weights = reach_weights({(0, "gap_linear"): first}, features, points, train_idx, "maxprob")
    assert list(weights) == [1]  # the first point's heads see every sample alike
    w = weights[1]
    assert w.mean() == pytest.approx(1.0) and w.min() >= REACH_MIX
    assert w[y == 0].mean() < 0.5 * w[y != 0].mean()
