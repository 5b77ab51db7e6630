"""The flow across tiers: `map OUT --platform` writes the optimum into the plan, `compile` builds firmware and
host modules for the placement, and `run` executes them tier by tier with the same exits as the host module."""

import json
import shutil

import pytest
from conftest import compile_augmented, two_tier_platform
from test_cli import assert_one_line_error, run_cli

from eenn_tvm.network import Network
from eenn_tvm.passes import TARGET_ATTR, AnnotatePartition, functions_on
from eenn_tvm.placement.problem_file import ProblemFile
from eenn_tvm.placement.solver import brute_force

pytestmark = pytest.mark.slow  # every test here needs an augment output (a few minutes), and most a compile

# A low-power Cortex-M4 and an edge host with a fast, cheap link: under a latency bound the device cannot meet
# alone, the optimum keeps the first segment (where most samples leave) on the device and hands over the rest.
SPLIT = two_tier_platform("split", "device", "edge", 1048576, 2e9, (1e8, 0.001, 5e-11, 5e-11))


@pytest.fixture(scope="session")
def split_platform(tmp_path_factory):
    path = tmp_path_factory.mktemp("platform") / "split.toml"
    path.write_text(SPLIT)
    return path


@pytest.fixture(scope="session")
def compiled(augmented, fashion, split_platform, tmp_path_factory):
    out = tmp_path_factory.mktemp("compiled") / "out"
    code, stdout, stderr = compile_augmented(augmented, fashion, split_platform, out, 300, "--json")
    assert code == 0, stderr
    return out, json.loads(stdout)


def test_annotate_partition_tags_each_segment_with_its_target(augmented):
    network = Network.from_augment(augmented[0])
    placement = {name: ("device" if i == 0 else "edge") for i, name in enumerate(network.segments)}
    mod = AnnotatePartition(placement)(network.mod)
    assert str(mod[network.segments[0]].attrs[TARGET_ATTR]) == "device"
    assert functions_on(mod, "edge") == network.segments[1:]
    with pytest.raises(Exception, match="does not have: segment_99"):
        AnnotatePartition({"segment_99": "edge"})(network.mod)


def test_map_writes_the_optimum_into_the_plan(augmented, split_platform, tmp_path):
    out = tmp_path / "eenn"
    shutil.copytree(augmented[0], out)
    code, stdout, stderr = run_cli("map", out, "--platform", split_platform, "--max-latency-ms", "300", "--json")
    assert code == 0, stderr
    placement = json.loads(stdout)
    assert json.loads((out / "plan.json").read_text())["placement"] == placement
    problem = ProblemFile.from_json(placement["problem"]).problem()
    exact = brute_force(problem)
    assert list(placement["segments"].values()) == exact.nodes
    assert exact.nodes[0] == "device" and exact.nodes[-1] == "edge"


def test_map_out_without_a_platform_is_one_line(augmented):
    assert_one_line_error(["map", augmented[0]], "--platform")


def test_compile_builds_firmware_for_the_device_and_a_module_for_the_edge(compiled):
    out, plan = compiled
    tiers = plan["deployment"]["tiers"]
    assert [t["target"] for t in tiers] == ["device", "edge"]
    device, edge = tiers
    assert device["segments"] == ["segment_0"] and device["hands_over"]["shape"] == edge["receives"]["shape"]
    firmware = json.loads((out / "firmware" / "firmware.json").read_text())
    assert firmware["device_segments"] == 1 and firmware["hand_over"]["shape"] == device["hands_over"]["shape"]
    assert firmware["hand_over"]["layout"] == "NCHW"  # the model's, whatever the kernels use inside
    assert (out / "edge.so").is_file() and (out / "platform.toml").is_file()
    assert "EENN_CONTINUE" in (out / "firmware" / "eenn_model.c").read_text()


def test_the_tiered_run_takes_the_same_exits_as_the_host_module(compiled, fashion):
    out, _ = compiled
    code, stdout, stderr = run_cli("run", out, "--data", fashion / "test.npz", "--n", "60", "--json")
    assert code == 0, stderr
    tiered = json.loads(stdout)
    code, stdout, _ = run_cli("run", out, "--data", fashion / "test.npz", "--n", "60", "--no-tiers", "--json")
    host = json.loads(stdout)
    assert tiered["exit_histogram"] == host["exit_histogram"] and tiered["accuracy"] == host["accuracy"]
    device, edge = tiered["tiers"]
    assert device["samples_in"] == 60 and edge["samples_in"] == 60 - device["samples_decided"]
    assert edge["received_bits_mean"] > 0 and tiered["measured"]["energy_j"] > 0
