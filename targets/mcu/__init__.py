"""Microcontroller backend: Relax segments -> TVM kernels + a static C driver + a CMake firmware project.

lower.py (segments to kernel calls) -> memory.py (one arena across segments) -> kernels.py (C or Thumb objects)
-> driver.py (eenn_model.[ch]) -> project.py (CMake project, build, sizes) -> qemu.py (run on an emulated core).
"""
