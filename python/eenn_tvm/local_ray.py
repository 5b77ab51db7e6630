"""A Ray cluster of several nodes on this machine (loopback), to try `--cluster` and to test and benchmark it.

Each node is a `ray start --block` in its own process group, so stopping the cluster ends exactly the processes it
started (`ray stop` would end every Ray process of the user).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

RAY = Path(sys.executable).with_name("ray")
START_SECONDS = 180  # for the nodes to join on a busy machine


@dataclass
class LocalCluster:
    gcs: str  # HOST:PORT, what RAY_ADDRESS names (`--cluster ray`)
    client: str  # ray://HOST:PORT, Ray Client (`--cluster ray://...`)


@contextlib.contextmanager
def local_cluster(nodes: int = 2, cpus_per_node: int = 1) -> Iterator[LocalCluster]:
    temp = tempfile.mkdtemp(prefix="eenn-ray-", dir="/tmp")  # short: Ray's socket paths live under it
    gcs, client = f"127.0.0.1:{free_port()}", free_port()
    head = ["--head", f"--port={gcs.split(':')[1]}", f"--ray-client-server-port={client}", f"--temp-dir={temp}"]
    started = []
    try:
        for i in range(nodes):
            flags = [*head, "--include-dashboard=false", "--disable-usage-stats"] if i == 0 else [f"--address={gcs}"]
            started.append(_start(flags, cpus_per_node, Path(temp) / f"node{i}.log"))
            _wait_for_cpus(gcs, (i + 1) * cpus_per_node)
        yield LocalCluster(gcs, f"ray://127.0.0.1:{client}")
    finally:
        for node in reversed(started):
            os.killpg(node.pid, signal.SIGTERM)
            node.wait(60)
        shutil.rmtree(temp, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(flags: list[str], cpus: int, log: Path) -> subprocess.Popen:
    with log.open("w") as out:  # the child keeps its own descriptor
        return subprocess.Popen(
            [str(RAY), "start", "--block", "--node-ip-address=127.0.0.1", f"--num-cpus={cpus}", *flags],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # The head's client server waits this long for the server it starts per client (Ray's 30 s fail on a busy
            # 2-core machine).
            env={
                **os.environ,
                "RAY_USAGE_STATS_ENABLED": "0",
                "RAY_CLIENT_SERVER_CHECK_CHANNEL_TIMEOUT_S": str(START_SECONDS),
            },
        )


def _wait_for_cpus(gcs: str, cpus: int) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        status = subprocess.run([str(RAY), "status", f"--address={gcs}"], capture_output=True, text=True)
        if f"/{cpus}.0 CPU" in status.stdout:
            return
        time.sleep(2)
    raise TimeoutError(f"the Ray cluster at {gcs} did not reach {cpus} CPUs: {status.stdout}{status.stderr}")
