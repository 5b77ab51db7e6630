"""Where eenn-tvm keeps what it can compute again: backbone features, and the cost data of platforms whose own
folder cannot be written. `EENN_CACHE` moves it."""

from __future__ import annotations

import os
from pathlib import Path

CACHE = Path(os.environ.get("EENN_CACHE", Path.home() / ".cache" / "eenn-tvm"))
