"""Microcontroller backend: Relax segments -> calls of the kernel library and of TVM's kernels + a static C driver +
a CMake firmware project.

build.py runs it: lower.py (segments to kernel calls: patterns.py and library.py take out what the kernel library
runs, TVM lowers the rest) -> memory.py (one arena across segments) -> kernels.py (TVM's kernels as C or Thumb
objects) -> driver.py (eenn_model.[ch]) -> project.py (CMake project, build, sizes) -> manifest.py (firmware.json).
verify.py checks a build: qemu.py runs it on an emulated core, the host runs the reference. cores.py lists the
Cortex-M cores and their QEMU boards. The kernel library is runtime/eenn_nn.h (C); nn_library.py is its Python
face (parameter structs, scratch sizes), nn_runner.py runs single calls of it for tests and bench/kernels.py.
"""

# The firmware folder's manifest, by name: what a plan's MCU tier stands for (plan.py need not load the backend).
MANIFEST_FILE = "firmware.json"
