"""The firmware project: generated driver and kernels, the C runtime, board support and CMake files in one
folder that builds with `cmake` for the Cortex-M (and for this host, for tests), and its memory report."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from eenn_tvm.errors import EennError
from eenn_tvm.targets.mcu import driver, kernels, nn_library
from eenn_tvm.targets.mcu.cores import Board, Core
from eenn_tvm.targets.mcu.lower import Program
from eenn_tvm.targets.mcu.manifest import Sizes
from eenn_tvm.targets.mcu.memory import MemoryPlan

HERE = Path(__file__).parent
BINARIES = "bin"  # the built firmware and library, kept; the CMake build trees are not (they hold absolute paths)
ELF = "eenn_verify.elf"
STREAM_ELF = "eenn_stream.elf"
INT8_ELF = "eenn_verify_int8.elf"  # verify_main.c on int8 inputs, where the model has eenn_infer_int8
STREAM_RULE_ELF = "eenn_verify_stream_rule.elf"  # verify_main.c through eenn_infer_stream, where the model has it
LIBRARY = "libeenn_model.a"


def write_project(
    folder: Path,
    program: Program,
    spec: driver.DriverSpec,
    memory: MemoryPlan,
    core: Core,
    codegen: str,
    stack_bytes: int,
) -> None:
    """`codegen`: how TVM's kernels are compiled, "llvm" (a Thumb object) or "c" (C source for gcc)."""
    (folder / "kernels").mkdir()
    files = {
        "eenn_model.h": driver.header(program, spec, memory),
        "eenn_model.c": driver.source(program, spec, memory),
        "eenn_weights.h": driver.weights_header(program, spec),
        "eenn_weights.c": driver.weights_source(program, spec),
        "eenn_kernels.h": driver.kernels_header(program),
        "kernels/kernels.c": kernels.c_source(program.kernels),
    }
    for name, text in files.items():
        (folder / name).write_text(text)
    kernel_source = "kernels/kernels.c"
    if codegen == "llvm":
        kernel_source = f"kernels/kernels_{core.name}.o"
        kernels.write_thumb_object(program.kernels, core, folder / kernel_source)
    kernels.copy_headers(folder / "include")
    shutil.copytree(HERE / "runtime", folder / "runtime")
    shutil.copytree(HERE / "board", folder / "board", ignore=shutil.ignore_patterns("*.in"))
    board = core.board
    write_linker_script(board, folder / "board" / f"{board.machine}.ld", stack_bytes)
    shutil.copytree(HERE / "cmake", folder / "cmake", ignore=shutil.ignore_patterns("*.in"))
    (folder / "cmake" / "eenn_cpu.cmake").write_text(
        f'# {core.name}\nset(EENN_CPU_FLAGS "{" ".join(core.gcc_flags)}")\n'
    )
    library = nn_library.sources(driver.library_functions(program, spec))
    _fill(
        HERE / "cmake" / "CMakeLists.txt.in",
        folder / "CMakeLists.txt",
        MODEL=spec.model,
        CORE=core.name,
        MACHINE=board.machine,
        UART_BASE=hex(board.uart_base),
        KERNELS=f"{codegen} ({kernel_source})",
        KERNEL_SOURCE=kernel_source,
        LIBRARY_SOURCES=" ".join(f"runtime/{path.name}" for path in library),
        INT8_INPUT="ON" if driver.int8_entry(program) else "OFF",
        STREAM_RULE="ON" if spec.stream is not None else "OFF",
    )


def compile_project(folder: Path, build: Path, cross: bool = True, sanitize: bool = False) -> None:
    """Configure and build with CMake into `build`. Compiler errors become one EennError."""
    configure = ["cmake", "-S", str(folder), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release"]
    if cross:
        _require("arm-none-eabi-gcc", "gcc-arm-none-eabi libnewlib-arm-none-eabi")
        configure.append(f"-DCMAKE_TOOLCHAIN_FILE={folder / 'cmake' / 'arm-none-eabi.cmake'}")
    if sanitize:
        configure.append("-DEENN_SANITIZE=ON")
    _require("cmake", "cmake")
    for command in (configure, ["cmake", "--build", str(build), "-j2"]):
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            log = (done.stdout + done.stderr).strip().splitlines()
            errors = [line for line in log if "error" in line.lower()] or log[-1:]
            raise EennError(f"building the firmware in {folder} failed: {errors[0] if errors else 'see the CMake log'}")


def keep_binaries(build: Path, folder: Path) -> None:
    (folder / BINARIES).mkdir()
    for name in (ELF, STREAM_ELF, LIBRARY, "eenn_verify.map", INT8_ELF, STREAM_RULE_ELF):
        if name not in (INT8_ELF, STREAM_RULE_ELF) or (build / name).is_file():
            shutil.copyfile(build / name, folder / BINARIES / name)


def measure_sizes(build: Path, memory: MemoryPlan, workspace: int, stack_bytes: int) -> Sizes:
    """Sizes of the model library's objects (`arm-none-eabi-size`), split into code, weights and buffers."""
    library = build / LIBRARY
    out = subprocess.run(["arm-none-eabi-size", "-A", str(library)], capture_output=True, text=True, check=True).stdout
    sections: dict[str, dict[str, int]] = {}
    current = ""
    for line in out.splitlines():
        if line.startswith(" ") or not line.strip():
            continue
        member = re.match(r"(\S+)\s+\(ex ", line)
        if member:
            current = member.group(1)
            continue
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit():
            bucket = _bucket(parts[0])
            if bucket:
                sections.setdefault(current, {}).setdefault(bucket, 0)
                sections[current][bucket] += int(parts[1])
    total = {k: sum(s.get(k, 0) for s in sections.values()) for k in ("text", "rodata", "data", "bss")}
    weights = sum(s.get("rodata", 0) for name, s in sections.items() if "eenn_weights" in name)
    bss_buffers = memory.arena_bytes + max(workspace, 1)
    return Sizes(
        code=total["text"] + total["rodata"] - weights,
        weights=weights,
        data=total["data"],
        arena=memory.arena_bytes,
        workspace=workspace,
        other_bss=max(total["bss"] - bss_buffers, 0),
        stack=stack_bytes,
    )


def _bucket(section: str) -> str | None:
    for prefix, bucket in (
        (".text", "text"),
        (".rodata", "rodata"),
        (".data", "data"),
        (".bss", "bss"),
        ("COMMON", "bss"),
    ):
        if section.startswith(prefix):
            return bucket
    return None


def write_linker_script(board: Board, path: Path, stack_bytes: int) -> None:
    _fill(
        HERE / "board" / "mps.ld.in",
        path,
        MACHINE=board.machine,
        FLASH_ORIGIN=hex(board.flash_origin),
        FLASH_BYTES=hex(board.flash_bytes),
        RAM_ORIGIN=hex(board.ram_origin),
        RAM_BYTES=hex(board.ram_bytes),
        STACK_BYTES=hex(stack_bytes),
    )


def _fill(template: Path, target: Path, **values: str) -> None:
    text = template.read_text()
    for key, value in values.items():
        text = text.replace(f"@{key}@", str(value))
    target.write_text(text)


def _require(tool: str, packages: str) -> None:
    if shutil.which(tool) is None:
        raise EennError(f"{tool} is not installed: apt-get install {packages} (scripts/setup.sh does it)")
