"""Host backend: build Relax modules for an LLVM CPU with scheduled kernels, tune them, run early-exit networks."""

from eenn_tvm.targets.host.module import HostModule, build
from eenn_tvm.targets.host.runner import BatchRunner, EarlyExitRunner, SegmentRunner

__all__ = ["BatchRunner", "EarlyExitRunner", "HostModule", "SegmentRunner", "build"]
