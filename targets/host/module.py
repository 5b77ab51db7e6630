"""Build a Relax module for a host CPU, call its functions with numpy arrays, save and load it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tvm
from tvm import relax

from eenn_tvm.targets.host.pipeline import host_pipeline
from eenn_tvm.targets.host.target import host_target
from eenn_tvm.targets.host.tune import open_database
from eenn_tvm.targets.native import native_stderr_silenced


def build(
    mod: tvm.IRModule,
    target: tvm.target.Target | None = None,
    database: str | Path | None = None,
    opaque_activations: bool = False,
) -> relax.VMExecutable:
    """Compile every function of `mod` for `target` (default: this machine's CPU), with the kernels of a
    MetaSchedule `database` folder (checked to be tuned for that CPU) where it has them and the default
    schedules elsewhere. `opaque_activations`: the activation `segment_i` returns is only ever handed to
    `segment_i+1` (as `BatchRunner` does), so it stays in the layout the host computes in."""
    target = target or host_target()
    if database is not None:
        open_database(database, target)
    with tvm.transform.PassContext(opt_level=3), native_stderr_silenced():
        return tvm.compile(mod, target=target, relax_pipeline=host_pipeline(target, database, opaque_activations))


class HostModule:
    """A built module on the CPU: call its functions with numpy arrays, get numpy arrays back."""

    def __init__(self, executable: relax.VMExecutable):
        self.executable = executable
        self._vm = relax.VirtualMachine(executable, tvm.cpu())
        self._functions: dict[str, tvm.runtime.PackedFunc] = {}
        # Inputs are copied into tensors kept per argument position and shape (`on_device`): allocating per call
        # costs more than small kernels take.
        self._inputs: dict[tuple, tuple[tvm.runtime.Tensor, np.ndarray]] = {}

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

    def function(self, name: str) -> tvm.runtime.PackedFunc:
        """The VM's function `name`: it takes `on_device` tensors and returns TVM objects (the lean path of callers
        that know what it returns; `__call__` converts any result)."""
        return self._functions.get(name) or self._functions.setdefault(name, self._vm[name])

    def __call__(self, name: str, *args: np.ndarray) -> list:
        """The outputs of `name` flattened: numpy arrays (views of the VM's result tensors) and ints."""
        inputs = [self.on_device(i, a) for i, a in enumerate(args)]
        outputs = _flatten(self.function(name)(*(tensor for tensor, _ in inputs)))
        return [unaliased(o, [view for _, view in inputs]) for o in outputs]

    def on_device(self, position: int, array: np.ndarray) -> tuple[tvm.runtime.Tensor, np.ndarray]:
        """`array` copied into the tensor kept for argument `position` of its shape and dtype: (tensor, its numpy
        view). Kernels may assume 64-byte aligned arguments, which numpy does not promise."""
        key = (position, array.shape, array.dtype.str)
        if key not in self._inputs:
            tensor = tvm.runtime.empty(array.shape, str(array.dtype), tvm.cpu())
            self._inputs[key] = tensor, np.from_dlpack(tensor)
        tensor, view = self._inputs[key]
        np.copyto(view, array)
        return tensor, view


def unaliased(output, views: list[np.ndarray]) -> object:
    """`output`, copied if it is a view of one of the input `views`: a function returning its argument reshaped
    would see it change on the next call, which reuses the input tensors."""
    if isinstance(output, np.ndarray) and any(np.may_share_memory(output, view) for view in views):
        return output.copy()
    return output


def _flatten(value) -> list:
    if isinstance(value, tvm.runtime.Tensor):
        return [np.from_dlpack(value)]
    if isinstance(value, int | bool | float):
        return [value]
    return [a for item in value for a in _flatten(item)]
