"""Lower the segments of a Relax module to what a static C driver needs: kernels and a flat call list.

The pipeline is TVM's own up to destination-passing style (see TVM-0.27-NOTES): after `CallTIRRewrite`
every segment function is a list of `R.builtin.alloc_tensor` and calls of fused PrimFuncs, which this
module reads into `Program`: tensors, constants and kernel calls in order, per segment. Memory is planned
afterwards across all segments (`memory.py`), so the plan can reuse a segment's RAM in the next one.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax, tirx

from eenn_tvm.errors import EennError
from eenn_tvm.passes import segments_only
from eenn_tvm.targets.fusion import fusion_passes
from eenn_tvm.targets.mcu.schedule import schedule_for_mcu

_ALLOC = tvm.ir.Op.get("relax.builtin.alloc_tensor")


@dataclass(eq=False)
class Tensor:
    """A value between kernels: the model input (the caller's buffer) or an activation in the arena."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * tvm.runtime.DataType(self.dtype).bits // 8


@dataclass(eq=False)
class Constant:
    name: str
    value: np.ndarray

    @property
    def dtype(self) -> str:
        return str(self.value.dtype)


@dataclass
class KernelCall:
    kernel: str
    args: list[Tensor | Constant]  # inputs, then the output (destination-passing)

    @property
    def output(self) -> Tensor:
        return self.args[-1]


@dataclass
class Segment:
    index: int
    input: Tensor
    calls: list[KernelCall]
    outputs: list[Tensor]  # the activation at the cut (or the model outputs), then the exit's outputs


@dataclass
class Program:
    kernels: tvm.IRModule  # the scheduled PrimFuncs, each with its global symbol
    segments: list[Segment]


def lowering_pipeline() -> tvm.transform.Pass:
    return tvm.transform.Sequential(
        [
            relax.transform.DecomposeOpsForInference(),
            relax.transform.FoldBatchnormToConv2D(),
            *fusion_passes(),
            relax.transform.ToNonDataflow(),
            relax.transform.RemovePurityChecking(),
            relax.transform.CallTIRRewrite(),
        ]
    )


def lower(mod: tvm.IRModule, segments: list[str]) -> Program:
    """Lower the named segment functions of `mod` (chained: each takes the first output of the one before)."""
    with tvm.transform.PassContext(opt_level=3):
        lowered = lowering_pipeline()(segments_only(mod, segments))
    reader = _Reader()
    program = []
    for index, name in enumerate(segments):
        handed_over = program[-1].outputs[0] if program else None
        program.append(reader.segment(index, lowered[name], handed_over))
    kernels = {
        gv.name_hint: schedule_for_mcu(f).with_attr("global_symbol", gv.name_hint)
        for gv, f in lowered.functions.items()
        if isinstance(f, tirx.PrimFunc)
    }
    return Program(tvm.IRModule(kernels), program)


class _Reader:
    """Reads lowered segment functions into tensors, constants and calls; shares constants between segments."""

    def __init__(self):
        self.constants: list[Constant] = []
        self._constant_of: dict[int, Constant] = {}
        self._names: set[str] = set()

    def segment(self, index: int, func: relax.Function, handed_over: Tensor | None) -> Segment:
        param = func.params[0]
        values: dict[relax.Var, object] = {param: handed_over or self._tensor(param.name, param.ty)}
        calls = []
        for binding in _bindings(func):
            value = binding.value
            if isinstance(value, relax.Call) and value.op.same_as(_ALLOC):
                values[binding.var] = self._tensor(f"s{index}_t", binding.var.ty)
            elif isinstance(value, relax.Call) and isinstance(value.op, relax.GlobalVar):
                calls.append(KernelCall(value.op.name_hint, [self._arg(a, values) for a in value.args]))
            elif isinstance(value, relax.Var):
                values[binding.var] = self._renamed(values[value], f"s{index}_{binding.var.name}")
            elif isinstance(value, relax.Tuple):
                values[binding.var] = _flat([values[f] for f in value.fields])
            elif isinstance(value, relax.TupleGetItem):
                values[binding.var] = values[value.tuple_value][value.index]
            else:
                raise EennError(f"the microcontroller backend cannot lower `{value}` in segment {index}")
        outputs = values[func.body.body] if isinstance(func.body.body, relax.Var) else None
        if not isinstance(outputs, list):
            raise EennError(f"segment {index} does not return a tuple of tensors")
        return Segment(index, values[param], calls, outputs)

    def _arg(self, arg: relax.Expr, values: dict) -> Tensor | Constant:
        if isinstance(arg, relax.Var):
            return values[arg]
        if isinstance(arg, tvm.ir.expr.Constant):
            return self._constant(arg)
        raise EennError(f"the microcontroller backend cannot pass `{arg}` to a kernel")

    def _constant(self, const: tvm.ir.expr.Constant) -> Constant:
        key = const.__hash__()
        if key not in self._constant_of:
            c = Constant(self._unique(f"c{len(self.constants)}"), const.value.numpy())
            self._constant_of[key] = c
            self.constants.append(c)
        return self._constant_of[key]

    def _tensor(self, name: str, ty) -> Tensor:
        return Tensor(self._unique(name), tuple(int(d) for d in ty.shape), str(ty.dtype))

    def _renamed(self, tensor: Tensor, name: str) -> Tensor:
        """Tensors take the name of the binding that holds them (an ONNX tensor name where one survived)."""
        self._names.discard(tensor.name)
        tensor.name = self._unique(name)
        return tensor

    def _unique(self, name: str) -> str:
        base = re.sub(r"\W", "_", name)
        candidate, n = base, 1
        while candidate in self._names:
            candidate, n = f"{base}_{n}", n + 1
        self._names.add(candidate)
        return candidate


def _flat(items: list) -> list[Tensor]:
    """Exit heads return tuples inside the segment's tuple; the driver sees one flat list of tensors."""
    return [t for item in items for t in (_flat(item) if isinstance(item, list) else [item])]


def _bindings(func: relax.Function) -> list[relax.Binding]:
    return [b for block in func.body.blocks for b in block.bindings]
