"""The early-exit network as one C function over TVM's host kernels: the firmware's static driver
(targets/mcu/driver.py) built for this CPU into a shared library, so a sample costs one C call.

The Relax VM interprets every kernel call, allocation and branch of `early_exit`, at about 0.1 us each: on the
keyword DS-CNN a sample leaving at the first exit spent 11 us in the VM and 2 us in its kernels. The static driver
runs the same kernels (TVM's, scheduled or tuned for this CPU as the VM build's are) from a static arena, and its
exits test the same `take` the kernels compute, so it takes the VM's exits.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np
import tvm

from eenn_tvm.errors import EennError
from eenn_tvm.network import Network
from eenn_tvm.targets.host.pipeline import scheduled_kernel_passes
from eenn_tvm.targets.host.target import host_target
from eenn_tvm.targets.host.tune import open_database
from eenn_tvm.targets.mcu import driver, kernels
from eenn_tvm.targets.mcu.lower import Program, lower
from eenn_tvm.targets.mcu.memory import plan_memory
from eenn_tvm.targets.native import native_stderr_silenced

RUNTIME = Path(__file__).parents[1] / "mcu" / "runtime"
# AVX-512 loads: TVM's kernels assume their buffers 64-byte aligned.
ALIGNMENT = 64
# TVM's kernels start their parallel loops through this runtime hook; the static driver runs them on the calling
# thread, as a batch-1 latency engine should (a thread-pool launch costs more than a small kernel takes).
_HOST_RUNTIME = """/* host_runtime.c: TVM's parallel-loop hook (on the calling thread); the model's sizes. */
#include <stdint.h>

#include "eenn_model.h"

int32_t eenn_input_elements(void) { return EENN_INPUT_ELEMENTS; }
int32_t eenn_classes(void) { return EENN_CLASSES; }

typedef struct { void *sync_handle; int32_t num_task; } TVMParallelGroupEnv;
typedef int (*FTVMParallelLambda)(int task_id, TVMParallelGroupEnv *penv, void *cdata);

int TVMBackendParallelLaunch(FTVMParallelLambda flambda, void *cdata, int num_task) {
  TVMParallelGroupEnv env = {0, 1};
  (void)num_task;
  return flambda(0, &env, cdata);
}

int TVMBackendParallelBarrier(int task_id, TVMParallelGroupEnv *penv) {
  (void)task_id;
  (void)penv;
  return 0;
}

int (*__TVMBackendParallelLaunch)(FTVMParallelLambda, void *, int) = TVMBackendParallelLaunch;
int (*__TVMBackendParallelBarrier)(int, TVMParallelGroupEnv *) = TVMBackendParallelBarrier;
"""


def build_static(
    network: Network, path: str | Path, target: tvm.target.Target | None = None, database: str | Path | None = None
) -> None:
    """Write the shared library of `network` (float32, all its segments: `eenn_infer` decides every sample) for
    `target` (default: this CPU), with the kernels of `database` where it has them, once it ran a sample. Raises
    EennError when the network cannot be lowered or built so, or its kernels fail."""
    target = target or host_target()
    if database is not None:
        open_database(database, target)
    if shutil.which("gcc") is None:
        raise EennError("the static host module needs a C compiler: install gcc (apt install gcc)")
    with target:
        passes = scheduled_kernel_passes(target, database, opaque_activations=True)
        program = lower(network.mod, network.segments, use_library=False, kernel_passes=passes, schedule=lambda f: f)
    with tempfile.TemporaryDirectory(prefix="eenn-static-") as work:
        folder = Path(work)
        with tvm.transform.PassContext(opt_level=3), native_stderr_silenced():
            compiled = tvm.compile(program.kernels, target=target).mod
        compiled.write_to_file(str(folder / "kernels.o"))
        for name, text in _driver_sources(network, program, target, compiled.inspect_source("ll")).items():
            (folder / name).write_text(text)
        kernels.copy_headers(folder / "include")
        built = folder / "eenn_static.so"
        _compile(folder, built)
        StaticEarlyExit(built).infer(np.zeros(network.input_shape, np.float32))
        # A new file, not new bytes in the old one: a process that loaded the old library keeps a valid mapping.
        staged = Path(path).with_name(f".{Path(path).name}.partial")
        shutil.copyfile(built, staged)
        os.replace(staged, path)


def _driver_sources(network: Network, program: Program, target: tvm.target.Target, llvm_ir: str) -> dict[str, str]:
    """The firmware driver's files for `program` on this host, and the host's runtime hooks."""
    spec = driver.DriverSpec(
        network.name,
        f"this host ({target.attrs.get('mcpu', 'llvm')})",
        network.classes,
        len(network.segments),
        len(network.segments),
        network.output_is_probability,
        workspace_bytes=_workspace_bytes(llvm_ir),
        alignment=ALIGNMENT,
        stream=network.stream,
    )
    memory = plan_memory(program, live_until_end=program.segments[-1].outputs[:1], alignment=ALIGNMENT)
    return {
        "eenn_model.h": driver.header(program, spec, memory),
        "eenn_model.c": driver.source(program, spec, memory),
        "eenn_weights.h": driver.weights_header(program, spec),
        "eenn_weights.c": driver.weights_source(program, spec),
        "eenn_kernels.h": driver.kernels_header(program),
        "host_runtime.c": _HOST_RUNTIME,
    }


def _workspace_bytes(llvm_ir: str) -> int:
    """Every workspace allocation in the kernels' LLVM IR, added up: a bound on what one kernel holds at a time
    (kernels run one at a time, but a parallel loop's body allocates in a function of its own, which the IR does
    not tie to its kernel). A few hundred kilobytes at most, static, on a host."""
    # the kernels call through the `__TVMBackendAllocWorkspace` pointer: (device, id, bytes, ...)
    sizes = re.findall(r"call ptr %\w+\(i32 1, i32 %?\w+, i64 (\d+),", llvm_ir)
    return sum(-(-int(n) // ALIGNMENT) * ALIGNMENT for n in sizes)


def _compile(folder: Path, library: Path) -> None:
    command = [
        "gcc", "-O2", "-shared", "-fPIC", "-std=c99", "-w", f"-DEENN_WORKSPACE_ALIGNMENT={ALIGNMENT}u",
        f"-I{folder}", f"-I{RUNTIME}", f"-I{folder / 'include'}",
        *(str(folder / n) for n in ("eenn_model.c", "eenn_weights.c", "host_runtime.c")),
        str(RUNTIME / "eenn_runtime.c"), str(folder / "kernels.o"),
        # the kernels call this library's workspace and parallel hooks, not those of a TVM runtime loaded beside it
        "-Wl,-Bsymbolic", "-Wl,--no-undefined", "-lm", "-o", str(library),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise EennError(f"gcc could not build the static host module: {done.stderr.strip().splitlines()[-1]}")


class _Result(ctypes.Structure):
    """eenn_result_t of eenn_model.h."""

    _fields_ = [
        ("class_index", ctypes.c_int32),
        ("exit_index", ctypes.c_int32),
        ("confidence", ctypes.c_float),
        ("scores", ctypes.POINTER(ctypes.c_float)),
        ("live", ctypes.c_void_p),
        ("live_bytes", ctypes.c_size_t),
        ("live_ndim", ctypes.c_int32),
        ("live_shape", ctypes.POINTER(ctypes.c_int64)),
    ]


class StaticEarlyExit:
    """A static host module: `infer` as `EarlyExitRunner.infer` (exit index, logits there), one C call per sample.
    The library holds one static arena: calls into one library file take turns (a lock per file)."""

    def __init__(self, path: str | Path):
        path = str(Path(path).resolve())
        self.description = f"TVM, static host module ({Path(path).name}), one C call per sample"
        self._library = ctypes.CDLL(path)
        self._infer = self._library.eenn_infer
        self._infer.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Result)]
        self._infer.restype = ctypes.c_int
        self._elements = self._library.eenn_input_elements()
        self._classes = self._library.eenn_classes()
        self._result = _Result()
        self._result_ref = ctypes.byref(self._result)
        self._lock = _LOCKS.setdefault(path, threading.Lock())

    def infer(self, x: np.ndarray) -> tuple[int, np.ndarray]:
        return self._run(self._infer, x)

    def infer_stream(self, x: np.ndarray) -> tuple[int, np.ndarray]:
        """The next window of the current stream, decided with the plan's stream rule: (exit index, logits there),
        the exit index `REUSED` for a window that took the last answer (its logits). `reset_stream` first."""
        return self._run(self._stream_function("eenn_infer_stream"), x)

    @property
    def decides_streams(self) -> bool:
        """Built with a stream rule (`eenn_infer_stream`)."""
        return hasattr(self._library, "eenn_infer_stream")

    def reset_stream(self) -> None:
        """The next window starts a new stream."""
        with self._lock:
            self._stream_function("eenn_stream_reset")()

    def run_streams(self, x: np.ndarray, streams: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(exit index, logits) of every window of `x`, in order, a stream starting wherever `streams` (one id per
        window) changes."""
        exits, scores, previous = np.zeros(len(x), np.int64), np.zeros((len(x), self._classes), np.float32), None
        for i in range(len(x)):
            if streams[i] != previous:
                self.reset_stream()
                previous = streams[i]
            exits[i], out = self.infer_stream(x[i : i + 1])
            scores[i] = out.reshape(-1)
        return exits, scores

    def _stream_function(self, name: str):
        if not self.decides_streams:
            raise EennError("this static host module decides per sample only: its plan has no stream rule")
        function = getattr(self._library, name)
        function.argtypes = self._infer.argtypes if name == "eenn_infer_stream" else []
        return function

    def _run(self, function, x: np.ndarray) -> tuple[int, np.ndarray]:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.size != self._elements:  # the C function reads that many floats, whatever it is given
            raise EennError(f"the static host module takes {self._elements} values per sample, not {x.size}")
        with self._lock:
            if function(x.ctypes.data, self._result_ref) != 0:
                raise EennError("the static host module failed on a kernel (a bad argument or too little workspace)")
            scores = np.ctypeslib.as_array(self._result.scores, (1, self._classes)).copy()
            return self._result.exit_index, scores


REUSED = -1  # EENN_STREAM_REUSED: a stream window that took the last answer
_LOCKS: dict[str, threading.Lock] = {}
