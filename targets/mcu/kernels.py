"""Kernels for the device: the scheduled PrimFuncs compiled to C source (any compiler) or a Thumb object (LLVM).

Both use TVM's packed calling convention (`__tvm_ffi_<name>(self, TVMFFIAny *args, n, ret)`); the driver
passes each tensor as a `DLTensor *`. Asserts are compiled out: a device has nowhere to print them.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import tvm

from eenn_tvm.targets.mcu.cores import Core
from eenn_tvm.targets.native import native_stderr_silenced

_RELEASE = {"tirx.disable_assert": True}

# The TVM headers the C kernels include, from the wheels' include folders: (package, path inside it).
HEADERS = [
    ("tvm_ffi", "dlpack/dlpack.h"),
    ("tvm_ffi", "tvm/ffi/c_api.h"),
    ("tvm_ffi", "tvm/ffi/extra/c_env_api.h"),
    ("tvm", "tvm/runtime/base.h"),
    ("tvm", "tvm/runtime/c_backend_api.h"),
]


def c_source(kernels: tvm.IRModule) -> str:
    with tvm.transform.PassContext(opt_level=3, config=_RELEASE):
        return tvm.compile(kernels, target="c").mod.inspect_source()


def write_thumb_object(kernels: tvm.IRModule, core: Core, path: Path) -> None:
    with tvm.transform.PassContext(opt_level=3, config=_RELEASE), native_stderr_silenced():
        tvm.compile(kernels, target=core.llvm_target).mod.write_to_file(str(path))


def workspace_bytes(source: str) -> int:
    """The most workspace one kernel holds at a time (kernels run one at a time; the allocator is LIFO)."""
    most = 0
    for body in re.split(r"\nTVM_DLL int32_t ", source):
        sizes = [int(n) for n in re.findall(r"TVMBackendAllocWorkspace\([^,]+,[^,]+, \(uint64_t\)(\d+)", body)]
        most = max(most, sum(-(-s // 16) * 16 for s in sizes))
    return most


def copy_headers(folder: Path) -> None:
    import importlib

    for package, relative in HEADERS:
        root = Path(importlib.import_module(package).__file__).parent / "include"
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / relative, folder / relative)
