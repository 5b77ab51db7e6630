"""The host backend as a compiler pipeline uses it: scheduled kernels compute what TVM's plain pipeline computes,
and the early-exit network in one call takes the same exits as its segments run one by one."""

import numpy as np
import pytest
import tvm
from tvm import relax

from eenn_tvm.firmware import network_from
from eenn_tvm.passes import ChainExits
from eenn_tvm.targets.host import EarlyExitRunner, HostModule, SegmentRunner, build

SAMPLES = 200


@pytest.fixture(scope="module")
def network(augmented):
    return network_from(augmented[0])


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
        np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
        exits.append(exit_index)
    assert len(set(exits)) > 1  # the images leave at different exits, so every branch was taken


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
