"""The pass library: `tvm.transform.Pass` objects that rewrite a Relax module into an early-exit network.

- `InsertExits`: attach exit heads at given points; `main` returns its outputs, then one per exit.
- `TapPoints`: return the activations at given points too (one backbone run collects every feature).
- `SplitAtExits`: one function per segment between consecutive cuts, each ending in its exit.

Points are named by ONNX tensor name (as `eenn_tvm.frontend` records them) or by Relax binding name.
"""

from .cuts import binding_var, crossing_values, exit_points_of, resolve_point
from .exits import InsertExits, TapPoints
from .split import SplitAtExits, segment_names

__all__ = [
    "InsertExits",
    "binding_var",
    "SplitAtExits",
    "TapPoints",
    "crossing_values",
    "exit_points_of",
    "resolve_point",
    "segment_names",
]
