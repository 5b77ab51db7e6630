"""ChainExits: the segments of an early-exit network chained in one function, so that a sample costs one call."""

from __future__ import annotations

import tvm
from tvm import relax

from eenn_tvm.passes.split import segment_index, segment_names

EARLY_EXIT = "early_exit"
HANDED_ON = -1  # the exit index ChainExits returns when its segments end before any exit fires


@tvm.transform.module_pass(opt_level=0, name="eenn.ChainExits")
class ChainExits:
    """Add `early_exit`: it runs the module's segments in order and returns at the first exit that fires,
    as control flow inside the module (`relax.If` on each exit's `take`), with no host code between segments.

    The segments are the module's `segment_i` functions (consecutive: all of a network's, or those one tier
    holds), each returning (activation, (logits, confidence, take)) as `InsertExits` and `SplitAtExits` make
    them, except the network's last, which returns the model's outputs. `early_exit` returns (exit index,
    tensor): the index i of the first exit that fires and its logits; at the network's last segment, its
    index (the number of exits) and the model's first output; when the segments end before the network does
    and no exit fired, `HANDED_ON` and the activation at the last cut, for the next tier.
    """

    def __init__(self, name: str = EARLY_EXIT):
        self.name = name

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        # Built on `mod` itself: its GlobalVars stay valid, so functions the segments call (the integer ops of an
        # int8 network) are still found by them.
        bb = relax.BlockBuilder(mod)
        segments = _consecutive_segments([gv.name_hint for gv in mod.functions])
        # The segments become private: `early_exit` is the module's one entry, and a build may change how they
        # hand activations to each other (the host keeps them in its compute layout).
        for name in segments:
            bb.update_func(mod.get_global_var(name), mod[name].without_attr("global_symbol"))
        functions = {gv.name_hint: gv for gv in mod.functions}
        for name in segments:  # a call is typed by its callee's GlobalVar, which a module made as a dict leaves untyped
            if not isinstance(functions[name].ty, relax.FuncType):
                relax.expr._update_type(functions[name], mod[name].ty)
        x = relax.Var("x", mod[segments[0]].params[0].ty)
        body = bb.normalize(self._chain(mod, functions, segments, x))
        bb.add_func(relax.Function([x], body, body.ty).with_attr("global_symbol", self.name), self.name)
        return tvm.IRModule(bb.get().functions, attrs=mod.attrs)

    def _chain(self, mod, functions, segments: list[str], carry: relax.Expr) -> relax.SeqExpr:
        """Segment `segments[0]` on `carry`; on its exit's `take`, return; else the rest of the chain."""
        name = segments[0]
        index = relax.prim_value(segment_index(name))
        out = relax.Var(f"{name}_out", mod[name].ret_ty)
        bindings = [relax.VarBinding(out, relax.Call(functions[name], [carry]))]
        if not _has_exit(mod[name]):
            if len(segments) > 1:
                raise ValueError(f"{name} has no exit: ChainExits chains the segments of InsertExits' exits")
            # the network's last segment: the model's outputs
            return relax.SeqExpr([relax.BindingBlock(bindings)], relax.Tuple([index, relax.TupleGetItem(out, 0)]))
        exit_out = relax.TupleGetItem(out, 1)
        take = relax.Var(f"{name}_take", relax.TensorType([], "bool"))
        bindings.append(relax.VarBinding(take, relax.op.reshape(relax.TupleGetItem(exit_out, 2), [])))
        leave = relax.SeqExpr([], relax.Tuple([index, relax.TupleGetItem(exit_out, 0)]))
        activation = relax.TupleGetItem(out, 0)
        if len(segments) > 1:
            stay = self._chain(mod, functions, segments[1:], activation)
        else:
            stay = relax.SeqExpr([], relax.Tuple([relax.prim_value(HANDED_ON), activation]))
        result = relax.Var(f"{name}_result")
        bindings.append(relax.VarBinding(result, relax.If(take, leave, stay)))
        return relax.SeqExpr([relax.BindingBlock(bindings)], result)


def _consecutive_segments(names: list[str]) -> list[str]:
    indices = sorted(segment_index(n) for n in names if segment_index(n) is not None)
    if not indices:
        raise ValueError("the module has no segments: apply InsertExits and SplitAtExits first")
    if indices != list(range(indices[0], indices[-1] + 1)):
        raise ValueError(f"the module's segments are not consecutive: {indices}")
    return segment_names(indices[-1] + 1)[indices[0] :]


def _has_exit(func: relax.Function) -> bool:
    """Whether a segment returns (activation, (logits, confidence, take)), as one with an exit does."""
    fields = func.ret_ty.fields
    return (
        len(fields) == 2
        and isinstance(fields[1], relax.TupleType)
        and len(fields[1].fields) == 3
        and fields[1].fields[2].dtype == "bool"
    )
