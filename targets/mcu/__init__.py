"""Microcontroller backend: Relax segments -> TVM kernels + a static C driver + a CMake firmware project.

build.py runs it: lower.py (segments to kernel calls) -> memory.py (one arena across segments) -> kernels.py (C or
Thumb objects) -> driver.py (eenn_model.[ch]) -> project.py (CMake project, build, sizes) -> manifest.py
(firmware.json). verify.py checks a build: qemu.py runs it on an emulated core, the host runs the reference.
cores.py lists the Cortex-M cores and their QEMU boards.
"""

# The firmware folder's manifest, by name: what a plan's MCU tier stands for (plan.py need not load the backend).
MANIFEST_FILE = "firmware.json"
