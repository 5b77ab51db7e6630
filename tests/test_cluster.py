"""The feature pass and the exit heads on a real Ray cluster: two nodes started with `ray start` on loopback (one CPU
each), the same features as the local pass and the same plan as one local worker bit for bit, a worker killed
mid-pass costing a retry, and bad --cluster input."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from conftest import MODEL
from test_augment import without_timings
from test_cli import assert_one_line_error, run_cli

from eenn_tvm.analysis import analyze
from eenn_tvm.errors import EennError
from eenn_tvm.features import extract
from eenn_tvm.frontend import import_onnx
from eenn_tvm.local_ray import free_port, local_cluster

SAMPLES = 1200


@pytest.fixture(scope="module")
def ray_cluster():
    """A head and a second node on this machine, one CPU each (`ray start` on loopback)."""
    pytest.importorskip("ray")
    with local_cluster(nodes=2, cpus_per_node=1) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def backbone(fashion):
    model = import_onnx(MODEL)
    x = np.load(fashion / "train.npz")["x"][:SAMPLES]
    return model, analyze(model).exit_points, x


def _assert_same(a, b):
    assert np.array_equal(a.final, b.final)
    assert a.pooled.keys() == b.pooled.keys()
    for name, kinds in a.pooled.items():
        for kind, array in kinds.items():
            assert np.array_equal(array, b.pooled[name][kind]), (name, kind)


@pytest.mark.slow
def test_the_feature_pass_on_a_two_node_cluster_equals_the_local_one_bit_for_bit(ray_cluster, backbone):
    model, points, x = backbone
    lines = []
    here = extract(model, points, x, cache_dir=None, batch=32)
    there = extract(model, points, x, cache_dir=None, batch=32, cluster=ray_cluster.client, log=lines.append)
    _assert_same(here, there)
    assert "(2 CPUs)" in lines[0]


@pytest.mark.slow
def test_a_worker_killed_mid_pass_costs_a_retry_not_the_run(ray_cluster, backbone, monkeypatch):
    model, points, x = backbone
    monkeypatch.setenv("RAY_ADDRESS", ray_cluster.gcs)
    killed, lines, stop = [], [], threading.Event()

    def kill_one_busy_worker():
        """Kills the first worker process seen running a shard (Ray titles it after the task), once."""
        while not stop.is_set() and not killed:
            for line in subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout.splitlines():
                pid, _, title = line.strip().partition(" ")
                if title.startswith("ray::_shard_features"):
                    os.kill(int(pid), signal.SIGKILL)
                    killed.append(int(pid))
                    break
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one_busy_worker)
    killer.start()
    try:
        there = extract(model, points, x, cache_dir=None, batch=32, cluster="ray", log=lines.append)
    finally:
        stop.set()
        killer.join()
    assert killed, "no worker was seen running a shard"
    shards = int(lines[0].split(": ")[1].split()[0])
    progress = lines[1:]
    assert len(progress) == shards and progress[-1].startswith(f"features: {shards}/{shards} shards")
    _assert_same(extract(model, points, x, cache_dir=None, batch=32), there)


@pytest.mark.slow
def test_heads_trained_on_the_cluster_give_the_plan_of_one_local_worker_bit_for_bit(ray_cluster, mlp_assets, tmp_path):
    data = ["--data", mlp_assets / "data.npz", "--no-cache", "--max-accuracy-drop", "0.1", "--json"]
    plans = []
    for where in (["--workers", "1"], ["--cluster", ray_cluster.client]):
        code, stdout, stderr = run_cli("augment", mlp_assets / "model.onnx", *data, *where, "-o", tmp_path / where[0])
        assert code == 0, stderr
        plans.append(without_timings(json.loads(stdout)))
    assert plans[0]["exits"] and plans[0] == plans[1]


def test_an_unreachable_cluster_is_one_line_and_exit_2(tmp_path, fashion):
    nobody = free_port()
    args = ["augment", MODEL, "--data", fashion / "train.npz", "--no-cache", "-o", tmp_path / "out"]
    assert_one_line_error([*args, "--cluster", f"ray://127.0.0.1:{nobody}"], "cannot reach the Ray cluster")
    assert_one_line_error([*args, "--cluster", "spark://x"], "--cluster spark://x")
    assert not (tmp_path / "out").exists()


def test_without_ray_installed_cluster_says_how_to_install_it(tmp_path, fashion):
    code = "import sys; sys.modules['ray'] = None; from eenn_tvm.cli import main; main()"
    args = ["augment", str(MODEL), "--data", str(fashion / "train.npz"), "-o", str(tmp_path / "out")]
    done = subprocess.run([sys.executable, "-c", code, *args, "--cluster", "ray"], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip() == "eenn-tvm: error: --cluster needs Ray: pip install 'eenn-tvm[cluster]'"


def test_a_head_that_fails_to_start_our_client_server_is_tried_again_then_named(monkeypatch):
    ray = pytest.importorskip("ray")
    from eenn_tvm import cluster

    refusal = "Initialization failure from server:\nTraceback (most recent call last):\nRuntimeError: Channel not found"
    outcomes = [ConnectionAbortedError(refusal), None]

    def init(**_):
        if outcome := outcomes.pop(0):
            raise outcome

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    monkeypatch.setattr(cluster, "CONNECT_PAUSE_SECONDS", 0)
    assert cluster.connect("ray://127.0.0.1:1") is ray  # the second start worked
    outcomes[:] = [ConnectionAbortedError(refusal)] * cluster.CONNECT_ATTEMPTS
    with pytest.raises(EennError, match=r"could not start a client: RuntimeError: Channel not found$"):
        cluster.connect("ray://127.0.0.1:1")
    assert not outcomes
