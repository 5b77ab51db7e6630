"""The feature pass on a real Ray cluster: two nodes started with `ray start` on loopback (one CPU each), the same
features as the local pass bit for bit, a worker killed mid-pass costing a retry, and bad --cluster input."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import MODEL
from test_cli import assert_one_line_error

from eenn_tvm.analysis import analyze
from eenn_tvm.features import extract
from eenn_tvm.frontend import import_onnx

RAY = Path(sys.executable).with_name("ray")
SAMPLES = 1200


@dataclass
class Cluster:
    gcs: str  # HOST:PORT, what RAY_ADDRESS names
    client: str  # ray://HOST:PORT, Ray Client


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(*args: str, temp: str) -> subprocess.Popen:
    """`ray start --block`, in its own process group, so stopping it ends exactly the processes this test started."""
    log = open(Path(temp) / f"start-{len(os.listdir(temp))}.log", "w")  # noqa: SIM115 (open for the process's life)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.Popen(
        [str(RAY), "start", "--block", "--node-ip-address", "127.0.0.1", "--num-cpus", "1", *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=env,
    )


def _wait_for_cpus(gcs: str, cpus: int, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = subprocess.run([str(RAY), "status", "--address", gcs], capture_output=True, text=True)
        if f"/{cpus}.0 CPU" in status.stdout:
            return
        time.sleep(2)
    raise TimeoutError(f"the Ray cluster at {gcs} did not reach {cpus} CPUs: {status.stdout}{status.stderr}")


@pytest.fixture(scope="module")
def ray_cluster():
    """A head and a second node on this machine, one CPU each; stopped by process group at the end."""
    pytest.importorskip("ray")
    temp = tempfile.mkdtemp(prefix="eenn-ray-", dir="/tmp")  # short: Ray's socket paths live under it
    gcs, client = _free_port(), _free_port()
    nodes = [
        _start(
            "--head",
            f"--port={gcs}",
            f"--ray-client-server-port={client}",
            "--include-dashboard=false",
            f"--temp-dir={temp}",
            "--disable-usage-stats",
            temp=temp,
        )
    ]
    try:
        _wait_for_cpus(f"127.0.0.1:{gcs}", 1)
        nodes.append(_start(f"--address=127.0.0.1:{gcs}", temp=temp))
        _wait_for_cpus(f"127.0.0.1:{gcs}", 2)
        yield Cluster(f"127.0.0.1:{gcs}", f"ray://127.0.0.1:{client}")
    finally:
        for node in reversed(nodes):
            os.killpg(node.pid, signal.SIGTERM)
            node.wait(60)
        shutil.rmtree(temp, ignore_errors=True)


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


def test_an_unreachable_cluster_is_one_line_and_exit_2(tmp_path, fashion):
    nobody = _free_port()
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
