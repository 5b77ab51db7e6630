"""The Relax passes every backend turns operators into kernels with: legalize to TIR, fold constants, fuse."""

from __future__ import annotations

import tvm
from tvm import relax


def fusion_passes() -> list[tvm.transform.Pass]:
    """Operators legalized into PrimFuncs, constants folded, then fused into the kernels a build compiles."""
    return [
        relax.transform.LegalizeOps(),
        relax.transform.AnnotateTIROpPattern(),
        relax.transform.FoldConstant(),
        relax.transform.FuseOps(),
        relax.transform.FuseTIR(),
        relax.transform.DeadCodeElimination(),
    ]
