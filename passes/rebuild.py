"""Helpers the passes share to re-emit bindings into a new function."""

from __future__ import annotations

import tvm
import tvm_ffi
from tvm import relax


@relax.expr_functor.mutator
class Substitute(relax.PyExprMutator):
    """Rewrites expressions with some variables replaced by others (register them with `map`)."""

    def map(self, old: relax.Var, new: relax.Var) -> None:
        self.set_var_remap(old, new)


def emit_inlined(bb: relax.BlockBuilder, func: relax.Function, args: list[relax.Var], name: str) -> relax.Var:
    """Emit the body of `func` applied to `args` into the current dataflow block; returns its result."""
    if len(func.params) != len(args):
        raise ValueError(f"{name} takes {len(func.params)} arguments, given {len(args)}")
    subst = Substitute()
    for param, arg in zip(func.params, args):
        if not tvm_ffi.structural_equal(param.ty, arg.ty):
            raise ValueError(f"{name} takes {param.ty} but the value at its point is {arg.ty}")
        subst.map(param, arg)
    for block in func.body.blocks:
        for binding in block.bindings:
            new_var = bb.emit(subst.visit_expr(binding.value), name_hint=f"{name}_{binding.var.name}")
            subst.map(binding.var, new_var)
    return bb.emit(subst.visit_expr(func.body.body), name_hint=name)


def replace_function(mod: tvm.IRModule, name: str, func: relax.Function) -> tvm.IRModule:
    """A copy of `mod` with function `name` replaced (or added), keeping its global symbol."""
    new = tvm.IRModule(dict(mod.functions), attrs=mod.attrs)
    new[name] = func.with_attr("global_symbol", name)
    return new
