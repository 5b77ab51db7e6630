"""The Cortex-M cores eenn-tvm builds for: code generation flags, the QEMU board that runs them, memory budgets."""

from __future__ import annotations

from dataclasses import dataclass

from eenn_tvm.errors import EennError

# library: the kernel library (runtime/eenn_nn.h) for what it has, TVM's kernels for the rest, compiled as the core
# builds them best (Core.kernels); llvm or c: TVM's kernels only, from its LLVM or its C backend. auto: library.
LIBRARY = "library"
KERNEL_KINDS = ("auto", LIBRARY, "llvm", "c")
DEFAULT_STACK_BYTES = 8 << 10  # reserved for inference; verify reports what it used


@dataclass(frozen=True)
class Board:
    """A QEMU machine: where its code and data memories are, for the linker script, and its first UART."""

    machine: str
    flash_origin: int
    flash_bytes: int
    ram_origin: int
    ram_bytes: int
    uart_base: int  # UART0, a CMSDK APB UART: the live deployment's firmware streams over it


# QEMU's MPS2/MPS3 FPGA images (Arm application notes AN385/386/500/505/547): code in SSRAM1 or ITCM,
# data in SSRAM2/3 or DTCM. The Armv8-M boards boot in the secure state, hence the secure aliases.
MPS2_AN385 = Board("mps2-an385", 0x00000000, 4 << 20, 0x20000000, 4 << 20, 0x40004000)
MPS2_AN386 = Board("mps2-an386", 0x00000000, 4 << 20, 0x20000000, 4 << 20, 0x40004000)
MPS2_AN500 = Board("mps2-an500", 0x00000000, 4 << 20, 0x20000000, 4 << 20, 0x40004000)
MPS2_AN505 = Board("mps2-an505", 0x10000000, 4 << 20, 0x38000000, 2 << 20, 0x50200000)
MPS3_AN547 = Board("mps3-an547", 0x10000000, 512 << 10, 0x30000000, 512 << 10, 0x59303000)


@dataclass(frozen=True)
class Core:
    name: str
    triple: str
    float_abi: str  # "soft" (no FPU) or "hard"
    fpu: str | None  # GCC's -mfpu
    board: Board
    flash_budget: int  # a typical part with this core, used when no --flash is given
    ram_budget: int
    # How TVM's kernels are compiled. LLVM's Thumb kernels take ~3x fewer instructions (bench/mcu.py); on Armv6-M
    # they call soft-float helpers by names (__addsf3, ...) that GCC's libgcc for v6-m does not define, so gcc
    # compiles TVM's C there.
    kernels: str = "llvm"

    @property
    def llvm_target(self) -> dict:
        return {"kind": "llvm", "mtriple": self.triple, "mcpu": self.name, "mfloat-abi": self.float_abi}

    @property
    def gcc_flags(self) -> list[str]:
        flags = [f"-mcpu={self.name}", "-mthumb", f"-mfloat-abi={self.float_abi}"]
        return flags + ([f"-mfpu={self.fpu}"] if self.fpu else [])


KiB, MiB = 1 << 10, 1 << 20
CORES = {
    c.name: c
    for c in [
        # QEMU models no Cortex-M0+ board: its Armv6-M code runs unchanged on the M3 of AN385 (Armv6-M is a
        # subset of Armv7-M).
        Core("cortex-m0plus", "thumbv6m-none-eabi", "soft", None, MPS2_AN385, 256 * KiB, 32 * KiB, kernels="c"),
        Core("cortex-m3", "thumbv7m-none-eabi", "soft", None, MPS2_AN385, 512 * KiB, 128 * KiB),
        Core("cortex-m4", "thumbv7em-none-eabihf", "hard", "fpv4-sp-d16", MPS2_AN386, 1 * MiB, 256 * KiB),
        Core("cortex-m7", "thumbv7em-none-eabihf", "hard", "fpv5-d16", MPS2_AN500, 2 * MiB, 512 * KiB),
        Core("cortex-m33", "thumbv8m.main-none-eabihf", "hard", "fpv5-sp-d16", MPS2_AN505, 1 * MiB, 256 * KiB),
        Core("cortex-m55", "thumbv8.1m.main-none-eabihf", "hard", "auto", MPS3_AN547, 2 * MiB, 512 * KiB),
    ]
}


def core_named(name: str) -> Core:
    try:
        return CORES[name]
    except KeyError:
        raise EennError(f"unknown core {name!r}: choose one of {', '.join(CORES)}") from None
