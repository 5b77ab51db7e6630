"""Runs the `main` of a module after QDQToInteger in numpy, each integer op by eenn_tvm.quantized.reference:
the yardstick the built TVM module must match bit for bit."""

from __future__ import annotations

import numpy as np
import tvm
import tvm_ffi
from tvm import relax

from eenn_tvm.decision import softmax
from eenn_tvm.quantized import reference
from eenn_tvm.quantized.ops import COMPOSITE, composite_name


def run_reference(mod: tvm.IRModule, x: np.ndarray) -> list[np.ndarray]:
    """The outputs of `main` on one input, computed binding by binding."""
    main = mod["main"]
    env = {main.params[0]: x}
    for block in main.body.blocks:
        for binding in block.bindings:
            env[binding.var] = _evaluate(mod, binding.value, binding.var.ty, env)
    result = _evaluate(mod, main.body.body, None, env)
    return list(result) if isinstance(result, list) else [result]


def op_attrs(func: relax.Function) -> dict:
    """An integer op function's attributes as Python values (the reference's keyword arguments)."""
    return {str(k): _python(v) for k, v in func.attrs.items() if str(k) not in (COMPOSITE, "global_symbol")}


def _python(value):
    return [_python(v) for v in value] if isinstance(value, tvm_ffi.Array) else int(value)


def _evaluate(mod: tvm.IRModule, expr, ty, env):
    if isinstance(expr, relax.Var):
        return env[expr]
    if isinstance(expr, tvm.ir.expr.Constant):
        return expr.value.numpy()
    if isinstance(expr, relax.Tuple):
        return [_evaluate(mod, f, None, env) for f in expr.fields]
    if not isinstance(expr, relax.Call):
        raise NotImplementedError(f"no reference for {type(expr).__name__}")
    args = [_evaluate(mod, a, None, env) for a in expr.args if not isinstance(a, relax.ShapeExpr)]
    if isinstance(expr.op, tvm.ir.GlobalVar):
        func = mod[expr.op]
        return reference.OPS[composite_name(func)](*args, **op_attrs(func))
    name = expr.op.name
    if name == "relax.quantize":
        return reference.quantize(args[0], float(args[1]), int(args[2]))
    if name == "relax.dequantize":
        return reference.dequantize(args[0], float(args[1]), int(args[2]))
    if name in ("relax.reshape", "relax.flatten", "relax.squeeze", "relax.expand_dims"):
        return args[0].reshape([int(d) for d in ty.shape])
    if name == "relax.permute_dims":
        return np.transpose(args[0], [int(a) for a in expr.attrs.axes])
    if name == "relax.nn.softmax":
        return softmax(args[0])
    raise NotImplementedError(f"no reference for {name}")
