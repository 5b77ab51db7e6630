"""The LLVM target of a host: this machine's CPU by default, so that kernels use every vector unit it has."""

from __future__ import annotations

import os

import tvm
from tvm.target import codegen


def native_cpu() -> str:
    """LLVM's name for this machine's CPU (e.g. `skylake-avx512`): what `-mcpu=native` resolves to."""
    return str(codegen.llvm_get_system_cpu())


def host_target(cpu: str | None = None, cores: int | None = None) -> tvm.target.Target:
    """The LLVM target for `cpu` (default: this machine's) with `cores` cores (MetaSchedule needs the count).

    Raises ValueError for a CPU name LLVM does not know.
    """
    cpu = cpu or native_cpu()
    if not codegen.llvm_is_valid_cpu(cpu, codegen.llvm_get_system_triple()):
        raise ValueError(f"LLVM does not know the CPU {cpu!r}")
    return tvm.target.Target({"kind": "llvm", "mcpu": cpu, "num-cores": cores or os.cpu_count() or 1})


def target_cpu(target: tvm.target.Target) -> str:
    return str(target.attrs.get("mcpu", ""))


def vector_lanes(target: tvm.target.Target, bits: int = 32) -> int:
    """Elements of `bits` per SIMD register of the target (16 fp32 with AVX-512, 8 with AVX2)."""
    return max(codegen.llvm_get_vector_width(target) // bits, 1)
