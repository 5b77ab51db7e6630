"""Channel-last layout for host builds: the axis every kernel vectorises is contiguous in activations and weights.

`ChannelLast` converts each function on its own (TVM's `ConvertLayout`), which leaves a transpose back to the
model's layout wherever a value leaves a function. `ChannelLastAcrossCalls` removes those between the private
functions `ChainExits` calls one after the other: a segment hands the next its activation channel-last, and a
transpose back runs only where the activation leaves the module (a tier handing over).
"""

from __future__ import annotations

import contextlib

import tvm
from tvm import relax

from eenn_tvm.passes.rebuild import Substitute
from eenn_tvm.passes.split import segment_index

CHANNEL_LAST = {"relax.nn.conv1d": ["NWC", "WIO"], "relax.nn.conv2d": ["NHWC", "HWIO"]}


@tvm.transform.module_pass(opt_level=0, name="eenn.ChannelLast")
class ChannelLast:
    """Convolutions in channel-last layout, function by function; a function TVM's `ConvertLayout` fails on
    (seen: `squeeze` after a 1-D convolution, std::bad_alloc) keeps its layout, which the schedules also handle."""

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        convert = relax.transform.ConvertLayout(CHANNEL_LAST)
        for gv, func in list(mod.functions.items()):
            if isinstance(func, relax.Function):
                with contextlib.suppress(tvm.error.InternalError):
                    mod[gv] = convert(tvm.IRModule({gv: func}))[gv]
        return mod


@tvm.transform.module_pass(opt_level=0, name="eenn.ChannelLastAcrossCalls")
class ChannelLastAcrossCalls:
    """A private function that transposes its first result just before returning it, or its only argument right
    after receiving it, does so no more: its callers do, where they need the other layout; and a transpose of a
    transpose that undoes it is no transpose at all.

    With `between_segments`, the same holds between public `segment_i` and `segment_i+1`: a caller that only
    hands one's activation to the next (`BatchRunner`) gets it in the channel-last layout.
    """

    def __init__(self, between_segments: bool = False):
        self.between_segments = between_segments

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        found = {gv.name_hint: _boundary_transposes(f) for gv, f in mod.functions.items() if _has_one_block(f)}
        private = {n: axes for n, axes in found.items() if _is_private(mod[n]) and axes != (None, None)}
        drop = dict(private)
        if self.between_segments:
            for name, axes in _between_segments(found).items():
                drop[name] = (axes[0] or drop.get(name, (None, None))[0], axes[1] or drop.get(name, (None, None))[1])
        if not drop:
            return mod
        # A module of fresh GlobalVars, typed by the new signatures; callers are rewritten against it.
        bb = relax.BlockBuilder()
        for gv, func in mod.functions.items():
            bb.add_func(
                _without_boundary_transposes(func, *drop[gv.name_hint]) if gv.name_hint in drop else func, gv.name_hint
            )
        new = bb.get()
        # Every Relax function is visited, the changed ones too: each refers to the old GlobalVars (of the
        # segments it calls, and of the TIR functions the front end emitted, e.g. ONNX Clip's `maximum`).
        for gv, func in list(new.functions.items()):
            if isinstance(func, relax.Function):
                new[gv] = _TransposesAtCalls(new, private).visit_expr(func)
        return tvm.IRModule(new.functions, attrs=mod.attrs)


def _between_segments(found: dict) -> dict[str, tuple]:
    """(outgoing, incoming) transposes to drop between consecutive segments whose transposes cancel."""
    drop: dict[str, tuple] = {}
    for name, (outgoing, _) in found.items():
        index = segment_index(name)
        after = found.get(f"segment_{index + 1}") if index is not None else None
        if (
            outgoing is not None
            and after is not None
            and after[1] is not None
            and _compose_is_identity(outgoing, after[1])
        ):
            drop[name] = (outgoing, drop.get(name, (None, None))[1])
            drop[f"segment_{index + 1}"] = (drop.get(f"segment_{index + 1}", (None, None))[0], after[1])
    return drop


def _has_one_block(func) -> bool:
    return isinstance(func, relax.Function) and len(func.params) == 1 and len(func.body.blocks) == 1


def _is_private(func) -> bool:
    return "global_symbol" not in (func.attrs or {})


def _permutation(expr) -> tuple[relax.Expr, list[int]] | None:
    """(input, axes) of a `permute_dims` call."""
    if isinstance(expr, relax.Call) and expr.op.same_as(tvm.ir.Op.get("relax.permute_dims")) and expr.attrs.axes:
        return expr.args[0], [int(a) for a in expr.attrs.axes]
    return None


def _boundary_transposes(func: relax.Function) -> tuple[list[int] | None, list[int] | None]:
    """The axes of the transpose of `func`'s first result just before it returns it, and of the transpose(s) of
    its argument that are all its uses (None where there is none)."""
    bindings = list(func.body.blocks[0].bindings)
    values = {b.var: b.value for b in bindings}
    result = values.get(func.body.body)
    outgoing = incoming = None
    if isinstance(result, relax.Tuple) and result.fields and _permutation(values.get(result.fields[0])):
        outgoing = _permutation(values[result.fields[0]])[1]
    param = func.params[0]
    uses = [_permutation(b.value) for b in bindings if any(v.same_as(param) for v in relax.analysis.free_vars(b.value))]
    if uses and all(p is not None and p[0].same_as(param) and p[1] == uses[0][1] for p in uses):
        incoming = uses[0][1]
    return outgoing, incoming


def _without_boundary_transposes(func: relax.Function, outgoing, incoming) -> relax.Function:
    """`func` returning its first result before its final transpose (if `outgoing`) and taking its argument in
    the layout it transposed it to (if `incoming`)."""
    body = func.body
    bindings = list(body.blocks[0].bindings)
    values = {b.var: b.value for b in bindings}
    subst = Substitute()
    drop = set()
    if outgoing is not None:
        result = values[body.body]
        values[body.body] = relax.Tuple([_permutation(values[result.fields[0]])[0], *result.fields[1:]])
    param = func.params[0]
    if incoming is not None:
        uses = [b for b in bindings if any(v.same_as(param) for v in relax.analysis.free_vars(b.value))]
        param = relax.Var(param.name, uses[0].var.ty)
        for use in uses:
            subst.map(use.var, param)
            drop.add(use.var)
    bb = relax.BlockBuilder()
    with bb.function("f", [param], attrs=dict(func.attrs or {}), pure=True):
        with bb.dataflow():
            for binding in bindings:
                if binding.var not in drop:
                    value = subst.visit_expr(values[binding.var])
                    subst.map(binding.var, bb.emit(value, name_hint=binding.var.name))
            out = bb.emit_output(subst.visit_expr(body.body))
        bb.emit_func_output(out)
    return bb.get()["f"]


def _compose_is_identity(first: list[int], second: list[int]) -> bool:
    return [first[a] for a in second] == list(range(len(first)))


@relax.expr_functor.mutator
class _TransposesAtCalls(relax.PyExprMutator):
    """In a caller: the argument of a changed function is transposed before the call, its first result after
    it; a transpose undone by the next one cancels out."""

    def __init__(self, mod, boundaries):
        super().__init__(mod)
        self.mod = mod
        self.boundaries = boundaries  # function name -> (outgoing axes, incoming axes)
        self.calls: dict[relax.Var, list[int]] = {}  # var bound to a changed call -> its outgoing axes

    def visit_global_var_(self, gv: relax.GlobalVar) -> relax.Expr:
        return self.mod.get_global_var(gv.name_hint)

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        if not (isinstance(call.op, relax.GlobalVar) and call.op.name_hint in self.boundaries):
            return super().visit_call_(call)
        args = [self.visit_expr(a) for a in call.args]
        incoming = self.boundaries[call.op.name_hint][1]
        if incoming is not None:
            args = [self._transposed(args[0], incoming)]
        return relax.Call(self.mod.get_global_var(call.op.name_hint), args, call.attrs, call.ty_args)

    def visit_tuple_getitem_(self, op: relax.TupleGetItem) -> relax.Expr:
        item = super().visit_tuple_getitem_(op)
        outgoing = self.calls.get(item.tuple_value) if isinstance(item.tuple_value, relax.Var) else None
        if item.index == 0 and outgoing is not None:
            return relax.op.permute_dims(self.builder_.emit(item), outgoing)
        return item

    def visit_var_binding_(self, binding: relax.VarBinding) -> None:
        value = self.visit_expr(binding.value)
        var = self.builder_.emit(value, name_hint=binding.var.name)
        self.set_var_remap(binding.var, var)
        if isinstance(value, relax.Call) and isinstance(value.op, relax.GlobalVar):
            outgoing = self.boundaries.get(value.op.name_hint, (None, None))[0]
            if outgoing is not None:
                self.calls[var] = outgoing

    def _transposed(self, arg: relax.Expr, axes: list[int]) -> relax.Expr:
        bound = self.builder_.lookup_binding(arg) if isinstance(arg, relax.Var) else None
        permuted = _permutation(bound) if bound is not None else None
        if permuted is not None and _compose_is_identity(permuted[1], axes):
            return permuted[0]
        return self.builder_.emit(relax.op.permute_dims(arg, axes))
