"""The pass library: `tvm.transform.Pass` objects that rewrite a Relax module into an early-exit network.

- `InsertExits`: attach exit heads at given points; `main` returns its outputs, then one per exit.
- `TapPoints`: return the activations at given points too (one backbone run collects every feature).
- `TapFeatures`: a segment also returns the channel averages at a point (a stream's reuse test).
- `SplitAtExits`: one function per segment between consecutive cuts, each ending in its exit.
- `AnnotatePartition`: each segment function carries the target the placement gave it.
- `ChainExits`: one function running the segments with the exit tests as control flow: one call per sample.
- `QDQToInteger`: dequantize -> op -> quantize of a QDQ model becomes one integer op (eenn.int8.*).

Points are named by ONNX tensor name (as `eenn_tvm.frontend` records them) or by Relax binding name.
"""

from eenn_tvm.passes.chain import EARLY_EXIT, HANDED_ON, ChainExits
from eenn_tvm.passes.cuts import binding_var, crossing_values, exit_points_of, resolve_point
from eenn_tvm.passes.exits import InsertExits, TapFeatures, TapPoints
from eenn_tvm.passes.partition import TARGET_ATTR, AnnotatePartition, functions_on
from eenn_tvm.passes.qdq import QDQToInteger
from eenn_tvm.passes.split import SplitAtExits, segment_index, segment_names, segments_only

__all__ = [
    "EARLY_EXIT",
    "HANDED_ON",
    "TARGET_ATTR",
    "AnnotatePartition",
    "ChainExits",
    "InsertExits",
    "QDQToInteger",
    "SplitAtExits",
    "TapFeatures",
    "TapPoints",
    "binding_var",
    "crossing_values",
    "exit_points_of",
    "functions_on",
    "resolve_point",
    "segment_index",
    "segment_names",
    "segments_only",
]
