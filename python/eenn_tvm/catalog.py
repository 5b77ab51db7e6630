"""What eenn-tvm offers by name (decision rules, objectives, engines, number types, where firmware runs, platform
presets), and the defaults that a stage and the command line share.

The stages that implement them import these names from here, and so does the command line, which reads them when it
starts: this module imports nothing heavy, so `eenn-tvm --help` loads neither TVM nor numpy.
"""

from __future__ import annotations

from pathlib import Path

from eenn_tvm import targets
from eenn_tvm.errors import EennError

RULES = ("maxprob", "margin", "entropy")  # the exit decision's confidence: decision.py, exit_functions.py
OBJECTIVES = ("energy", "latency")  # what a placement and a platform's predicted cost minimise
ENGINES = ("tvm", "onnxruntime")  # what `run` runs: the host module, or eenn.onnx with the thresholds in numpy
DTYPES = ("float32", "int8")  # the networks `run` runs: the float one, or the int8 one (`quantize`) beside it
CALIBRATION_SAMPLES = 500  # samples (stratified) that calibrate the int8 activation ranges: quantize.py
RUNNERS = ("qemu", "host")  # where `verify` runs the firmware: emulated, or its C built for this host
PRESETS = Path(targets.__file__).resolve().parent / "platforms"  # the platform files shipped with eenn-tvm


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS.glob("*.toml"))


def platform_file(name_or_path: str | Path) -> Path:
    """The TOML file of a preset name or a path."""
    path = Path(name_or_path)
    if not path.suffix and (PRESETS / f"{path}.toml").is_file():
        path = PRESETS / f"{path}.toml"
    if not path.is_file():
        raise EennError(f"{name_or_path}: no such platform file or preset (presets: {', '.join(preset_names())})")
    return path
