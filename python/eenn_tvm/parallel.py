"""Exit heads trained in parallel: screening and training spread over local processes, or over Ray tasks when a
cluster is given.

Every head is trained by `train_head`, wherever it runs, on one BLAS thread and with the seed of the settings (never
anything about the worker), and results are gathered in job order: the heads are the same bit for bit whatever the
number of workers. A worker receives the pooled features of its head's point only (and, for a head trained on the
samples likely to reach it, their weights), shared once per array by the parent (a .npy file that local workers
memory-map, an object in Ray's store) and picks the training rows itself.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from eenn_tvm import heads as exit_heads
from eenn_tvm.errors import EennError
from eenn_tvm.textui import progress

# One call of `train_head`: (pooled features as shared, training rows, their labels, kind, classes, seed, iterations,
# a loss weight per training row as shared or None)
HeadCall = tuple


def train_head(
    pooled, rows, labels, kind: str, classes: int, seed: int, iterations: int, weights=None
) -> exit_heads.Head:
    """A head of `kind` on rows `rows` of one point's pooled features, each row's loss weighted by `weights` when
    given (each an array, or the .npy file holding it). One BLAS thread: workers side by side do not oversubscribe
    the cores, and the sums are the same in every worker."""
    x = _opened(pooled)
    with threadpool_limits(1):
        return exit_heads.train(kind, x[rows], labels, classes, seed, iterations, _opened(weights))


def _opened(shared):
    """An array as a local worker receives it: a .npy file is memory-mapped (Ray hands over the array itself)."""
    return np.load(shared, mmap_mode="r") if isinstance(shared, Path) else shared


class InProcess:
    """`--workers 1`: the heads one after the other in this process."""

    def share(self, array: np.ndarray) -> np.ndarray:
        return array

    def map(self, calls: list[HeadCall], label: str) -> list[exit_heads.Head]:
        return [train_head(*call) for call in progress(calls, label)]

    def close(self) -> None:
        pass


class LocalProcesses:
    """Worker processes on this machine (spawned: the parent's TVM and onnxruntime threads must not be forked);
    shared arrays are .npy files in a temporary folder, removed when the pool closes."""

    def __init__(self, workers: int, folder: Path | None):
        if folder:
            folder.mkdir(parents=True, exist_ok=True)
        self._folder = Path(tempfile.mkdtemp(prefix="eenn-heads-", dir=folder))
        self._names = itertools.count()
        self._executor = ProcessPoolExecutor(workers, mp_context=get_context("spawn"))

    def share(self, array: np.ndarray) -> Path:
        path = self._folder / f"{next(self._names)}.npy"
        np.save(path, array)
        return path

    def map(self, calls: list[HeadCall], label: str) -> list[exit_heads.Head]:
        futures = [self._executor.submit(train_head, *call) for call in calls]
        try:
            for _ in progress(as_completed(futures), label, total=len(futures)):
                pass
            return [f.result() for f in futures]
        except BrokenProcessPool:
            raise EennError("a worker process training exit heads died (out of memory?): try --workers 1") from None

    def close(self) -> None:
        self._executor.shutdown(cancel_futures=True)
        shutil.rmtree(self._folder, ignore_errors=True)


class RayTasks:
    """One Ray task per head on the cluster at `address`, one CPU each; a task whose worker died is run again."""

    def __init__(self, address: str):
        from eenn_tvm.cluster import CPUS_PER_TASK, RETRIES, connect

        self._ray = connect(address)
        self._task = self._ray.remote(num_cpus=CPUS_PER_TASK, max_retries=RETRIES)(train_head)

    def share(self, array: np.ndarray):
        return self._ray.put(array)

    def map(self, calls: list[HeadCall], label: str) -> list[exit_heads.Head]:
        from eenn_tvm.cluster import first_line

        refs = [self._task.remote(*call) for call in calls]
        pending = list(refs)
        try:
            for _ in progress(range(len(refs)), label):
                _, pending = self._ray.wait(pending, num_returns=1)
            return self._ray.get(refs)
        except self._ray.exceptions.RayError as err:
            raise EennError(f"an exit head failed on the cluster: {first_line(err)}") from None

    def close(self) -> None:
        self._ray.shutdown()


@contextlib.contextmanager
def head_pool(workers: int | None, cluster: str | None, folder: Path | None) -> Iterator:
    """Where the heads train: Ray tasks on `cluster`, else `workers` local processes (None: one per core; 1: this
    process). `folder` holds the arrays local workers share (None: the system's temporary folder)."""
    workers = workers or os.cpu_count() or 1
    pool = RayTasks(cluster) if cluster else LocalProcesses(workers, folder) if workers > 1 else InProcess()
    try:
        yield pool
    finally:
        pool.close()
