"""Quieting TVM's native code, which writes to file descriptor 2 directly."""

from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def native_stderr_silenced():
    """TVM's C++ side logs warnings (a VM scope saved or loaded, LLVM's vector width) that users need none of."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
