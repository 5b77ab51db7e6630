"""Exit heads with the decision compiled in, as Relax functions for `InsertExits`.

Each returns (logits (1, classes), confidence (1,), take (1,) bool): the runtime only branches on
`take`; softmax, the confidence rule and the threshold comparison run inside the built module.
"""

from __future__ import annotations

import math

import numpy as np
from tvm import relax

from eenn_tvm.heads import Head, bins_of
from eenn_tvm.passes.rebuild import emit_inlined

_POOL_OPS = {3: relax.op.nn.adaptive_avg_pool1d, 4: relax.op.nn.adaptive_avg_pool2d, 5: relax.op.nn.adaptive_avg_pool3d}
_CONV_OPS = {3: relax.op.nn.conv1d, 4: relax.op.nn.conv2d}


def exit_function(head: Head, tap_ty: relax.TensorType, rule: str, threshold: float) -> relax.Function:
    return _decided(lambda bb, x: emit_head(bb, head, x), tap_ty, rule, threshold)


def decided_exit(head: relax.Function, rule: str, threshold: float) -> relax.Function:
    """The same for a head given as a Relax function of the tap returning float logits (an int8 head, say)."""
    return _decided(lambda bb, x: emit_inlined(bb, head, [x], "head"), head.params[0].ty, rule, threshold)


def _decided(emit_logits, tap_ty: relax.TensorType, rule: str, threshold: float) -> relax.Function:
    x = relax.Var("x", tap_ty)
    bb = relax.BlockBuilder()
    with bb.function("exit", [x]):
        with bb.dataflow():
            logits = emit_logits(bb, x)
            conf = _emit_confidence(bb, logits, rule)
            take = bb.emit(relax.op.greater_equal(conf, relax.const(np.float32(threshold))), name_hint="take")
            out = bb.emit_output(relax.Tuple([logits, conf, take]))
        bb.emit_func_output(out)
    return bb.get()["exit"]


def emit_head(bb: relax.BlockBuilder, head: Head, x: relax.Expr) -> relax.Var:
    """Pooling, then the dense layers with ReLU between: the same arithmetic as `Head.logits`. A convolutional
    head's first layer is a 1x1 convolution on the pooled grid, its ReLU output averaged over the grid."""
    shape = [int(d) for d in x.ty.shape]
    a, layers = x, head.layers
    if len(shape) > 2:
        bins = bins_of(head.pooling, shape)
        spatial = len(shape) - 2
        a = bb.emit(_POOL_OPS[len(shape)](a, output_size=[bins] * spatial), name_hint="pooled")
        if head.pointwise:
            (w, b), layers = layers[0], layers[1:]
            kernel = relax.const(np.ascontiguousarray(w.T).reshape(*w.T.shape, *[1] * spatial))
            conv = relax.op.add(_CONV_OPS[len(shape)](a, kernel), relax.const(b.reshape(1, -1, *[1] * spatial)))
            a = bb.emit(relax.op.nn.relu(bb.emit(conv, name_hint="conv")), name_hint="conv_relu")
            a = bb.emit(relax.op.mean(a, axis=list(range(2, len(shape)))), name_hint="features")
        else:
            a = bb.emit(relax.op.reshape(a, [shape[0], math.prod(int(d) for d in list(a.ty.shape)[1:])]), "features")
    for i, (w, b) in enumerate(layers):
        a = bb.emit(relax.op.add(relax.op.matmul(a, relax.const(w)), relax.const(b)), name_hint=f"dense{i}")
        if i < len(layers) - 1:
            a = bb.emit(relax.op.nn.relu(a), name_hint=f"relu{i}")
    return a


def _emit_confidence(bb: relax.BlockBuilder, logits: relax.Var, rule: str) -> relax.Var:
    p = bb.emit(relax.op.nn.softmax(logits, axis=-1), name_hint="prob")
    if rule == "maxprob":
        return bb.emit(relax.op.max(p, axis=[-1]), name_hint="confidence")
    if rule == "margin":
        top2 = bb.emit(relax.op.topk(p, k=2, axis=-1, ret_type="values"), name_hint="top2")
        first = relax.op.squeeze(relax.op.strided_slice(top2, axes=[1], begin=[0], end=[1]), axis=[1])
        second = relax.op.squeeze(relax.op.strided_slice(top2, axes=[1], begin=[1], end=[2]), axis=[1])
        return bb.emit(relax.op.subtract(first, second), name_hint="confidence")
    if rule == "entropy":
        classes = int(logits.ty.shape[-1])
        logp = relax.op.log(relax.op.maximum(p, relax.const(np.float32(1e-30))))
        h = relax.op.negative(relax.op.sum(relax.op.multiply(p, logp), axis=[-1]))
        scaled = relax.op.divide(h, relax.const(np.float32(math.log(classes))))
        return bb.emit(relax.op.subtract(relax.const(np.float32(1.0)), scaled), name_hint="confidence")
    raise ValueError(f"unknown decision rule {rule!r}")
