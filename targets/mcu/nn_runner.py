"""Run calls of the kernel library (nn_library.py) on a Cortex-M in QEMU, or on this host: a generated program holds
each call's parameters as static const data, as a firmware would, runs the calls one after the other and writes
every output with its instruction count. The kernel tests and bench/kernels.py stand on it.

Instruction counts come from SysTick under `-icount shift=0` (board_mps.c): a call is repeated until it is long
against the counter's step, and the count of an empty timed region (the harness) is subtracted.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eenn_tvm.errors import EennError
from eenn_tvm.targets.mcu import nn_library, project
from eenn_tvm.targets.mcu.cores import core_named
from eenn_tvm.targets.mcu.qemu import qemu_command

HOST = "host"  # run on this computer (gcc, with AddressSanitizer and UndefinedBehaviorSanitizer): no counts
BOARD = Path(__file__).parent / "board"
_C_TYPES = {"int8": "int8_t", "float32": "float"}
_FLASH_SHARE = 0.75  # of a board's code memory for one program's data; more calls than that make more programs
_STACK_BYTES = 8 << 10
_EMPTY_REGIONS = 1000
_HEADER = np.dtype([("index", "<u4"), ("ticks", "<u8"), ("scratch", "<i4"), ("bytes", "<u4")])


@dataclass
class Call:
    kernel: nn_library.Kernel
    inputs: list[np.ndarray]
    repeats: int = 1  # runs inside the timed region (the count returned is per run)


@dataclass
class Result:
    output: np.ndarray
    instructions: float | None  # per run, the harness subtracted; None on the host
    c_scratch_bytes: int | None  # what the library's eenn_*_scratch_bytes() says, for kernels that take scratch


def run_calls(calls: list[Call], target: str = HOST) -> list[Result]:
    """Each call's output and instruction count on `target` (a core name or HOST), in the order given."""
    results: list[Result] = []
    for group in _programs(calls, target):
        with tempfile.TemporaryDirectory(prefix="eenn-kernels-") as work:
            results += _run_program(group, target, Path(work))
    return results


def _programs(calls: list[Call], target: str) -> list[list[Call]]:
    """Calls packed into programs whose constant data fits the board's code memory (all of it on the host)."""
    if target == HOST:
        return [calls]
    budget = _FLASH_SHARE * core_named(target).board.flash_bytes
    groups: list[list[Call]] = [[]]
    used = 0
    for call in calls:
        size = _data_bytes(call)
        if groups[-1] and used + size > budget:
            groups.append([])
            used = 0
        groups[-1].append(call)
        used += size
    return groups


def _data_bytes(call: Call) -> int:
    arrays = sum(len(a.items) * 4 for a in call.kernel.arrays().values())
    return arrays + sum(x.nbytes for x in call.inputs)


def _run_program(calls: list[Call], target: str, work: Path) -> list[Result]:
    (work / "main.c").write_text(program_source(calls))
    binary = _compile(work, target)
    command = [str(binary)] if target == HOST else qemu_command(binary, core_named(target).board.machine)
    done = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=600)
    summary = re.search(r"eenn-kernels: calls=(\d+) milli_instructions_per_tick=(\d+) empty_ticks=(\d+)", done.stdout)
    if done.returncode != 0 or summary is None or int(summary.group(1)) != len(calls):
        tail = (done.stdout + done.stderr).strip().splitlines()[-3:] or [f"exit code {done.returncode}"]
        raise EennError(f"the kernel program on {target} stopped early: {' | '.join(tail)}")
    milli, empty = int(summary.group(2)), int(summary.group(3)) / _EMPTY_REGIONS
    return _results(calls, (work / "results.bin").read_bytes(), target, milli, empty)


def _results(calls: list[Call], raw: bytes, target: str, milli: int, empty_ticks: float) -> list[Result]:
    results, at = [], 0
    for index, call in enumerate(calls):
        header = np.frombuffer(raw, _HEADER, count=1, offset=at)[0]
        at += _HEADER.itemsize
        assert header["index"] == index
        dtype, size = call.kernel.output_spec()
        output = np.frombuffer(raw, np.dtype(dtype), count=size, offset=at).copy()
        at += int(header["bytes"])
        instructions = None
        if target != HOST:
            instructions = (int(header["ticks"]) - empty_ticks) * milli / 1000 / call.repeats
        scratch = int(header["scratch"])
        results.append(Result(output, instructions, scratch if scratch >= 0 else None))
    return results


def _compile(work: Path, target: str) -> Path:
    runtime = nn_library.RUNTIME
    sources = [work / "main.c", *nn_library.sources()]
    common = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{runtime}", f"-I{BOARD}"]
    if target == HOST:
        binary = work / "kernels"
        sanitize = ["-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
        command = ["gcc", *common, *sanitize, *map(str, sources), str(BOARD / "board_host.c"), "-lm", "-o", binary]
    else:
        if shutil.which("arm-none-eabi-gcc") is None:
            raise EennError(
                "arm-none-eabi-gcc is not installed: apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi"
            )
        core = core_named(target)
        binary = work / "kernels.elf"
        project.write_linker_script(core.board, work / "board.ld", _STACK_BYTES)
        board = [BOARD / "startup.c", BOARD / "board_mps.c"]
        link = ["-nostartfiles", "--specs=rdimon.specs", f"-T{work / 'board.ld'}", "-Wl,--gc-sections"]
        flags = [*core.gcc_flags, "-ffunction-sections", "-fdata-sections"]
        command = ["arm-none-eabi-gcc", *common, *flags, *map(str, sources + board), *link, "-lm", "-o", binary]
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True)
    if done.returncode != 0:
        raise EennError(f"compiling the kernel program for {target} failed: {done.stderr.strip()[:2000]}")
    return binary


def program_source(calls: list[Call]) -> str:
    """The C program: every call's parameters and inputs as static const data, then main() running them."""
    arena = max(_arena_layout(call)[-1] for call in calls)
    scratch = max(call.kernel.scratch_bytes() for call in calls)
    parts = [_PRELUDE.format(arena=max(arena, 16), scratch=max(scratch, 16))]
    body = []
    for index, call in enumerate(calls):
        symbol = f"call{index}"
        parts.append(f"/* {index}: {call.kernel.function} */\n{call.kernel.declaration(symbol)}")
        parts += [nn_library.c_array(x).declaration(f"{symbol}_in{j}") for j, x in enumerate(call.inputs)]
        body.append(_call_block(index, symbol, call))
    parts.append(_MAIN.format(body="\n".join(body), calls=len(calls), empty=_EMPTY_REGIONS))
    return "\n\n".join(parts) + "\n"


def _arena_layout(call: Call) -> list[int]:
    """Offsets of the inputs and the output in the arena, then its end (16-byte aligned each)."""
    offsets, at = [], 0
    dtype, size = call.kernel.output_spec()
    for nbytes in [x.nbytes for x in call.inputs] + [size * np.dtype(dtype).itemsize]:
        offsets.append(at)
        at += -(-nbytes // 16) * 16
    return offsets + [at]


def _call_block(index: int, symbol: str, call: Call) -> str:
    kernel = call.kernel
    *offsets, _ = _arena_layout(call)
    out_dtype, out_size = kernel.output_spec()
    inputs = [f"(const {_C_TYPES[str(x.dtype)]} *)(arena + {offsets[j]})" for j, x in enumerate(call.inputs)]
    output = f"({_C_TYPES[out_dtype]} *)(arena + {offsets[-1]})"
    copies = "".join(
        f"  memcpy(arena + {offsets[j]}, {symbol}_in{j}, sizeof {symbol}_in{j});\n" for j in range(len(inputs))
    )
    scratch_size = f"(int32_t){kernel.function}_scratch_bytes(&{symbol})" if kernel.takes_scratch else "-1"
    return (
        copies
        + "  start = board_counter_ticks();\n"
        + f"  for (r = 0; r < {call.repeats}; ++r) {kernel.call(symbol, inputs, output, 'scratch')}\n"
        + f"  record(out, {index}, board_counter_ticks() - start, {scratch_size}, arena + {offsets[-1]}, "
        + f"{out_size * np.dtype(out_dtype).itemsize});"
    )


_PRELUDE = """/* Generated by eenn-tvm (nn_runner.py): runs kernel-library calls and records outputs and counts. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "board.h"
#include "eenn_nn.h"

static uint8_t arena[{arena}] __attribute__((aligned(16)));
static uint8_t scratch[{scratch}] __attribute__((aligned(16)));

static void record(FILE *out, uint32_t index, uint64_t ticks, int32_t scratch_bytes, const void *data,
                   uint32_t bytes) {{
  fwrite(&index, 4, 1, out);
  fwrite(&ticks, 8, 1, out);
  fwrite(&scratch_bytes, 4, 1, out);
  fwrite(&bytes, 4, 1, out);
  fwrite(data, 1, bytes, out);
}}"""

_MAIN = """int main(void) {{
  FILE *out = fopen("results.bin", "wb");
  uint32_t milli_instructions_per_tick, r;
  uint64_t start, empty = 0;
  if (out == NULL) {{
    printf("eenn-kernels: cannot open results.bin\\n");
    return 1;
  }}
  milli_instructions_per_tick = board_counter_start();
{body}
  /* The harness: a timed region with nothing in it. */
  for (r = 0; r < {empty}; ++r) {{
    start = board_counter_ticks();
    empty += board_counter_ticks() - start;
  }}
  fclose(out);
  printf("eenn-kernels: calls={calls} milli_instructions_per_tick=%lu empty_ticks=%lu\\n",
         (unsigned long)milli_instructions_per_tick, (unsigned long)empty);
  return 0;
}}"""
