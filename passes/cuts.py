"""Where a Relax function can be cut: the points after which exactly one value is live.

This is the one liveness computation in eenn-tvm; the analysis and the passes both ask it.
"""

from __future__ import annotations

from tvm import relax

# Attributes that the passes leave on `main`, so that later passes and the runtime know the layout
# of its outputs without any state outside the module.
TENSOR_NAMES_ATTR = "eenn.tensor_names"  # ONNX tensor name -> binding name (set by the front end)
EXITS_ATTR = "eenn.exits"  # binding names of the exit points, in graph order
NUM_OUTPUTS_ATTR = "eenn.num_outputs"  # how many of main's outputs are the original model's


def body_bindings(func: relax.Function) -> tuple[list[relax.Binding], relax.Expr]:
    """The bindings of a single-dataflow-block function and the expression it returns."""
    blocks = func.body.blocks
    if len(blocks) != 1:
        raise ValueError("eenn-tvm passes expect a function with one dataflow block, as the ONNX importer makes")
    bindings = list(blocks[0].bindings)
    last = bindings[-1]
    if last.var.same_as(func.body.body) and not isinstance(last.var, relax.DataflowVar):
        # `gv = R.output(...)`: look through it to the returned expression.
        return bindings[:-1], last.value
    return bindings, func.body.body


def output_fields(out: relax.Expr) -> list[relax.Expr]:
    return list(out.fields) if isinstance(out, relax.Tuple) else [out]


def resolve_point(func: relax.Function, point: str) -> str:
    """Binding name of a point given by ONNX tensor name or binding name."""
    names = {b.var.name for b in body_bindings(func)[0]}
    if point in names:
        return point
    onnx_names = func.attrs.get(TENSOR_NAMES_ATTR, {}) if func.attrs else {}
    if point in onnx_names:
        return str(onnx_names[point])
    raise ValueError(f"no tensor named {point!r} in the model")


def binding_var(func: relax.Function, point: str) -> relax.Var:
    """The variable bound at a point (ONNX tensor or binding name)."""
    name = resolve_point(func, point)
    return next(b.var for b in body_bindings(func)[0] if b.var.name == name)


def exit_points_of(func: relax.Function) -> list[str]:
    """Binding names of the exits `InsertExits` attached, in graph order."""
    attrs = func.attrs or {}
    return [str(p) for p in attrs.get(EXITS_ATTR, [])]


def num_outputs_of(func: relax.Function) -> int:
    attrs = func.attrs or {}
    if NUM_OUTPUTS_ATTR in attrs:
        return int(attrs[NUM_OUTPUTS_ATTR])
    return len(output_fields(body_bindings(func)[1]))


def backbone(func: relax.Function) -> list[relax.Binding]:
    """The bindings the original outputs depend on (exit heads and taps are not part of it)."""
    bindings, out = body_bindings(func)
    wanted = {v for f in output_fields(out)[: num_outputs_of(func)] for v in relax.analysis.free_vars(f)}
    kept = []
    for binding in reversed(bindings):
        if binding.var in wanted:
            kept.append(binding)
            wanted.update(relax.analysis.free_vars(binding.value))
    return kept[::-1]


def crossing_values(func: relax.Function) -> dict[str, str | None]:
    """For every backbone binding: None if cutting right after it leaves only it live, else a value that crosses."""
    bindings = backbone(func)
    _, out = body_bindings(func)
    out_vars = {v for f in output_fields(out)[: num_outputs_of(func)] for v in relax.analysis.free_vars(f)}
    end = len(bindings)
    last_use = dict.fromkeys(func.params, -1)
    for i, binding in enumerate(bindings):
        last_use[binding.var] = end if binding.var in out_vars else i
        for used in relax.analysis.free_vars(binding.value):
            last_use[used] = max(last_use.get(used, -1), i)
    live = dict.fromkeys(p for p in func.params if last_use[p] >= 0)  # a dict keeps definition order
    verdicts: dict[str, str | None] = {}
    for i, binding in enumerate(bindings):
        live = dict.fromkeys(v for v in live if last_use[v] > i)
        live[binding.var] = None
        others = [v for v in live if not v.same_as(binding.var)]
        verdicts[binding.var.name] = others[0].name if others else None
    return verdicts


def check_cuts(func: relax.Function, points: list[str]) -> None:
    """Raise ValueError naming the first requested cut that another value crosses."""
    verdicts = crossing_values(func)
    for point in points:
        if point not in verdicts:
            raise ValueError(f"cut at {point} is not on the path to the model's output")
        if verdicts[point] is not None:
            raise ValueError(f"cut at {point} is crossed by {verdicts[point]}")
