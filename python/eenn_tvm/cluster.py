"""The feature pass on a Ray cluster: the data in shards, one Ray task per shard, the pooled features gathered in
shard order.

Each task runs `TappedBackbone.features` on its shard, exactly as the local pass runs it on its chunks, with its own
onnxruntime session (kept in the worker process across shards) on CPUS_PER_TASK cores. Shards are whole batches, so
the features equal the local ones bit for bit at the same batch size. A task whose worker dies is run again by Ray
(max_retries); results are kept by shard index, so a retried shard is counted once. The workers need eenn-tvm
installed (Ray imports this module there by name).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import math
import os
import socket
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from eenn_tvm.errors import EennError

if TYPE_CHECKING:  # features.extract imports this module when a cluster is given
    from eenn_tvm.features import Features, TappedBackbone

CPUS_PER_TASK = 1  # one onnxruntime thread per task: as many tasks in flight as the cluster has cores
RETRIES = 3  # runs of a shard after its worker died, before the pass fails
PROBE_SECONDS = 10  # to open a connection to the cluster's head
CONNECT_ATTEMPTS = 3  # of Ray Client, when the head fails to start its server for us
CONNECT_PAUSE_SECONDS = 5
SHARDS_PER_CPU = 4  # shards are small enough to balance the load, and to show progress


def run_on_cluster(
    backbone: TappedBackbone, x: np.ndarray, address: str, log: Callable[[str], None] = lambda _: None
) -> Features:
    """The features of all samples `x`, computed on the Ray cluster at `address` ("ray" or "ray://HOST:PORT")."""
    check(address)
    ray = connect(address)
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        shard = _shard_size(backbone, len(x), cpus)
        starts = list(range(0, len(x), shard))
        log(f"features on the Ray cluster ({cpus} CPUs): {len(starts)} shards of {shard} samples")
        model = [ray.put(backbone)]  # in a list, so a worker fetches it only when it has no session for it yet
        key = hashlib.sha256(backbone.onnx_bytes).hexdigest()
        task = ray.remote(num_cpus=CPUS_PER_TASK, max_retries=RETRIES)(_shard_features)
        shard_of = {task.remote(model, key, x[start : start + shard]): i for i, start in enumerate(starts)}
        return _gather(ray, shard_of, starts, backbone, len(x), log)
    finally:
        ray.shutdown()


def _shard_size(backbone: TappedBackbone, samples: int, cpus: int) -> int:
    """Whole batches, at most what the local pass holds at once, about SHARDS_PER_CPU shards per CPU."""
    wanted = math.ceil(samples / (SHARDS_PER_CPU * cpus) / backbone.batch) * backbone.batch
    return max(backbone.batch, min(backbone.shard, wanted))


def _gather(ray, shard_of: dict, starts: list[int], backbone: TappedBackbone, samples: int, log) -> Features:
    features = backbone.empty(samples)
    pending, done, began = list(shard_of), 0, time.perf_counter()
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        index = shard_of[ready[0]]
        try:
            part = ray.get(ready[0])
        except ray.exceptions.RayError as err:
            raise EennError(f"shard {index} of the feature pass failed on the cluster: {first_line(err)}") from None
        features.fill(starts[index], part)
        done += len(part.final)
        rate = done / (time.perf_counter() - began)
        log(
            f"features: {len(shard_of) - len(pending)}/{len(shard_of)} shards, {rate:.0f} samples/s, "
            f"{(samples - done) / rate:.0f} s left"
        )
    return features


_SESSIONS: dict[str, tuple[TappedBackbone, object]] = {}  # in a worker process: the model it ran last


def _shard_features(model: list, key: str, x: np.ndarray) -> Features:
    """A Ray task: the features of one shard."""
    if key not in _SESSIONS:
        import ray

        backbone = ray.get(model[0])
        _SESSIONS.clear()  # one model at a time: a worker does not keep the sessions of passes that ended
        _SESSIONS[key] = backbone, backbone.session(CPUS_PER_TASK)
    backbone, session = _SESSIONS[key]
    return backbone.features(session, x)


def check(address: str) -> None:
    """`--cluster` before any work: its form, Ray installed, the head listening (Ray itself waits minutes, retrying,
    for a head nobody listens at)."""
    if address != "ray" and not address.startswith("ray://"):
        raise EennError(f"--cluster {address}: give `ray` (RAY_ADDRESS, else this machine) or ray://HOST:PORT")
    if importlib.util.find_spec("ray") is None:
        raise EennError("--cluster needs Ray: pip install 'eenn-tvm[cluster]'")
    head = address.removeprefix("ray://") if address != "ray" else os.environ.get("RAY_ADDRESS", "")
    if head.count(":") == 1:
        host, port = head.split(":")
        try:
            socket.create_connection((host, int(port)), timeout=PROBE_SECONDS).close()
        except (OSError, ValueError) as err:
            raise EennError(f"--cluster {address}: cannot reach the Ray cluster at {head}: {err}") from None


def connect(address: str):
    """Ray, joined to the cluster; its own log lines quiet, its errors one line.

    Ray Client starts a server process per client on the head; on a busy head that start can fail once and work the
    next time, so a refused start is tried CONNECT_ATTEMPTS times before it is the user's problem."""
    import ray

    for attempt in range(1, CONNECT_ATTEMPTS + 1):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Ray Client warns of a timeout before it raises it
                ray.init(
                    address=None if address == "ray" else address,
                    logging_level=logging.ERROR,
                    log_to_driver=False,
                    configure_logging=True,
                )
            return ray
        except ConnectionAbortedError as err:  # the head refused to start this client's server
            ray.shutdown()  # a half-made connection would fail the next ray.init of this process
            refused = err
            if attempt < CONNECT_ATTEMPTS:
                time.sleep(attempt * CONNECT_PAUSE_SECONDS)
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as err:
            ray.shutdown()
            raise EennError(f"--cluster {address}: cannot reach the Ray cluster: {first_line(err)}") from None
    raise EennError(f"--cluster {address}: the Ray head could not start a client: {last_line(refused)}")


def first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def last_line(err: Exception) -> str:
    """The cause at the end of a traceback the server sent back."""
    return (str(err).strip().splitlines() or [type(err).__name__])[-1]
