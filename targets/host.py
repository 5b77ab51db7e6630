"""Host backend: build a (split) Relax module for an llvm CPU, run its segments in order, save and load it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tvm
from tvm import relax

from eenn_tvm.passes.split import segment_names
from eenn_tvm.targets.native import native_stderr_silenced

HOST_TARGET = "llvm"


def build(mod: tvm.IRModule, target: str | dict = HOST_TARGET) -> relax.VMExecutable:
    """Compile every function of `mod` for the host."""
    with tvm.transform.PassContext(opt_level=3):
        return tvm.compile(mod, target=target)


class HostModule:
    """A built module on the CPU: call its functions with numpy arrays, get numpy arrays back."""

    def __init__(self, executable: relax.VMExecutable):
        self.executable = executable
        self._vm = relax.VirtualMachine(executable, tvm.cpu())

    @classmethod
    def load(cls, path: str | Path) -> HostModule:
        with native_stderr_silenced():
            return cls(tvm.runtime.load_module(str(path)))

    def export(self, path: str | Path) -> None:
        """Write a shared library (`.so`, needs a host C++ compiler) or a `.tar` of objects."""
        with native_stderr_silenced():
            self.executable.export_library(str(path))

    def has(self, name: str) -> bool:
        return self._vm.module.implements_function(name)

    def prepared(self, name: str, *args: np.ndarray):
        """A call of `name` with its inputs already on the device: what timing should measure."""
        function = self._vm[name]
        tensors = [tvm.runtime.tensor(np.ascontiguousarray(a)) for a in args]
        return lambda: function(*tensors)

    def __call__(self, name: str, *args: np.ndarray) -> list[np.ndarray]:
        result = self._vm[name](*(tvm.runtime.tensor(np.ascontiguousarray(a)) for a in args))
        return _to_numpy(result)


class SegmentRunner:
    """Runs `segment_0, segment_1, ...` of a module split by `SplitAtExits`, one after the other.

    Each segment hands its first output (the activation at its cut) to the next; the rest of its
    outputs are its exits.
    """

    def __init__(self, module: HostModule):
        self.module = module
        count = 0
        while module.has(f"segment_{count}"):
            count += 1
        if count == 0:
            raise ValueError("the module has no segments: apply SplitAtExits before building")
        self.segments = segment_names(count)

    def run(self, *inputs: np.ndarray) -> list[list[np.ndarray]]:
        """Outputs of every segment: [activation at cut, exit outputs...] for each, the model's outputs last."""
        per_segment, carry = [], inputs
        for name in self.segments:
            outputs = self.module(name, *carry)
            per_segment.append(outputs)
            carry = outputs[:1]
        return per_segment


class EarlyExitRunner:
    """Runs an early-exit module sample by sample: stops at the first segment whose exit says `take`.

    `segments` (default: all of `segment_0, segment_1, ...`) may be a later part of the network, as one tier
    of a deployment holds it; `first` is then the index of its first segment and `end` that of the last
    segment of the whole network (the one with no exit).
    """

    def __init__(self, module: HostModule, segments: list[str] | None = None, first: int = 0, end: int | None = None):
        self.module = module
        self.segments = segments or SegmentRunner(module).segments
        self.first = first
        self.end = first + len(self.segments) - 1 if end is None else end

    def infer(self, x: np.ndarray) -> tuple[int | None, np.ndarray]:
        """(exit index, or `end` for the end of the network; the logits there). (None, the activation) when
        these segments end before any exit fires: the next tier continues from it."""
        carry = x
        for index, name in enumerate(self.segments, self.first):
            outputs = self.module(name, carry)
            if index == self.end:
                return index, outputs[0]
            activation, logits, _confidence, take = outputs
            if take.item():
                return index, logits
            carry = activation
        return None, carry


def _to_numpy(value) -> list[np.ndarray]:
    if isinstance(value, tvm.runtime.Tensor):
        return [value.numpy()]
    return [a for item in value for a in _to_numpy(item)]
