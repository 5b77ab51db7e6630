"""Host backend: build Relax modules for an LLVM CPU with scheduled kernels, tune them, run early-exit networks."""

from eenn_tvm.targets.host.module import HostModule, build
from eenn_tvm.targets.host.runner import EarlyExitRunner, SegmentRunner

__all__ = ["EarlyExitRunner", "HostModule", "SegmentRunner", "build"]
