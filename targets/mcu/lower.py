"""Lower the segments of a Relax module to what a static C driver needs: kernels and a flat call list.

The pipeline is TVM's own up to destination-passing style (see TVM-0.27-NOTES), with the kernel library's
subgraphs taken out first (FuseOpsByPattern on `patterns.py`, then `library.LibraryCalls`): after `CallTIRRewrite`
every segment function is a list of `R.builtin.alloc_tensor`, calls of fused PrimFuncs and calls of the library,
which this module reads into `Program`: tensors, constants and calls in order, per segment. Memory is planned
afterwards across all segments (`memory.py`), so the plan can reuse a segment's RAM in the next one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax, tirx

from eenn_tvm.errors import EennError
from eenn_tvm.passes import segments_only
from eenn_tvm.targets.fusion import fusion_passes
from eenn_tvm.targets.mcu import nn_library as nn
from eenn_tvm.targets.mcu.library import LibraryCalls, is_generic_name
from eenn_tvm.targets.mcu.patterns import float32_patterns
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
    """A call of a kernel TVM generated (a PrimFunc of `Program.kernels`)."""

    kernel: str
    args: list[Tensor | Constant]  # inputs, then the output (destination-passing)

    @property
    def output(self) -> Tensor:
        return self.args[-1]


@dataclass
class LibraryCall:
    """A call of the kernel library: `kernel` holds its parameters (weights included), `scratch` its working memory
    (in the arena, alive during the call only)."""

    kernel: nn.Kernel
    inputs: list[Tensor]
    output: Tensor
    scratch: Tensor | None

    @property
    def args(self) -> list[Tensor]:
        return [*self.inputs, self.output] + ([self.scratch] if self.scratch is not None else [])


@dataclass
class Segment:
    index: int
    input: Tensor
    calls: list[KernelCall | LibraryCall]
    outputs: list[Tensor]  # the activation at the cut (or the model outputs), then the exit's outputs


@dataclass
class Program:
    kernels: tvm.IRModule  # the scheduled PrimFuncs, each with its global symbol
    segments: list[Segment]


def library_pipeline(library: LibraryCalls, integer_ops: dict | None = None) -> tvm.transform.Pass:
    """The library's subgraphs out of the graph, before TVM lowers the rest. `integer_ops` (QDQToInteger's
    functions) join the module after the float32 fusion, which cannot partition their bodies, and before
    `library` reads them."""
    return tvm.transform.Sequential(
        [
            relax.transform.FoldBatchnormToConv2D(),
            relax.transform.DecomposeOpsForInference(),
            relax.transform.FoldConstant(),
            relax.transform.FuseOpsByPattern(float32_patterns()),
            _Joined(integer_ops or {}),
            library,
            relax.transform.DeadCodeElimination(),
        ]
    )


@tvm.transform.module_pass(opt_level=0, name="eenn.Joined")
class _Joined:
    def __init__(self, functions: dict):
        self.functions = functions

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        mod = tvm.IRModule(dict(mod.functions))
        for gv, func in self.functions.items():
            mod[gv] = func
        return mod


def lowering_pipeline(kernel_passes: list[tvm.transform.Pass]) -> tvm.transform.Pass:
    return tvm.transform.Sequential(
        [
            relax.transform.FoldBatchnormToConv2D(),
            relax.transform.DecomposeOpsForInference(),
            *kernel_passes,
            relax.transform.ToNonDataflow(),
            relax.transform.RemovePurityChecking(),
            relax.transform.CallTIRRewrite(),
        ]
    )


def lower(
    mod: tvm.IRModule,
    segments: list[str],
    use_library: bool = True,
    kernel_passes: list[tvm.transform.Pass] | None = None,
    schedule: Callable[[tirx.PrimFunc], tirx.PrimFunc] = schedule_for_mcu,
) -> Program:
    """Lower the named segment functions of `mod` (chained: each takes the first output of the one before); with
    `use_library`, what the kernel library runs becomes its calls, the rest TVM's kernels. `kernel_passes` fuse
    the graph into TVM's kernels (default: the microcontroller's fusion), `schedule` schedules each one (a host
    build schedules them in its kernel passes and passes the identity)."""
    only_segments = segments_only(mod, segments)
    integer_ops = {gv: f for gv, f in mod.functions.items() if _is_composite(f)}
    library = LibraryCalls(chain=segments)
    with tvm.transform.PassContext(opt_level=3):
        if use_library:
            only_segments = library_pipeline(library, integer_ops)(only_segments)
        else:
            only_segments = _Joined(integer_ops)(only_segments)
        # integer ops the library does not run are TVM kernels: their Relax bodies go where they are called
        only_segments = relax.transform.InlinePrivateFunctions()(only_segments)
        lowered = lowering_pipeline(fusion_passes() if kernel_passes is None else kernel_passes)(only_segments)
    reader = _Reader(library.kernels)
    program = []
    for index, name in enumerate(segments):
        handed_over = program[-1].outputs[0] if program else None
        program.append(reader.segment(index, lowered[name], handed_over))
    kernels = {
        gv.name_hint: schedule(f).with_attr("global_symbol", gv.name_hint)
        for gv, f in lowered.functions.items()
        if isinstance(f, tirx.PrimFunc)
    }
    return Program(tvm.IRModule(kernels), program)


# A tensor's C symbol must not shadow or clash with what the generated C declares itself (an ONNX input called
# `input` would become `input = input;` in eenn_infer) nor be a C keyword.
RESERVED_NAMES = frozenset(
    "input out status arena workspace quantized_input exit_taken hand_over infer_int8_input "
    "auto break case char const continue default do double else enum extern float for goto if inline int long "
    "register restrict return short signed sizeof static struct switch typedef union unsigned void volatile "
    "while".split()
)


class _Reader:
    """Reads lowered segment functions into tensors, constants and calls; shares constants between segments."""

    def __init__(self, library: dict[str, nn.Kernel]):
        self.library = library
        self.constants: list[Constant] = []
        self._constant_of: dict[int, Constant] = {}
        self._names: set[str] = set(RESERVED_NAMES)
        self._unnamed: set[str] = set()  # output buffers not yet named after a binding

    def segment(self, index: int, func: relax.Function, handed_over: Tensor | None) -> Segment:
        param = func.params[0]
        values: dict[relax.Var, object] = {param: handed_over or self._tensor(param.name, param.ty)}
        calls = []
        for binding in _bindings(func):
            value = binding.value
            if isinstance(value, relax.Call) and value.op.same_as(_ALLOC):
                values[binding.var] = self._tensor(f"s{index}_t", binding.var.ty)
                self._unnamed.add(values[binding.var].name)
            elif isinstance(value, relax.Call) and isinstance(value.op, relax.GlobalVar):
                calls.append(KernelCall(value.op.name_hint, [self._arg(a, values) for a in value.args]))
            elif isinstance(value, relax.Call) and isinstance(value.op, relax.ExternFunc):
                kernel = self.library[value.op.global_symbol]
                calls.append(self._library_call(index, kernel, [self._arg(a, values) for a in value.args]))
            elif isinstance(value, relax.Var):
                values[binding.var] = self._renamed(values[value], index, binding.var.name)
            elif isinstance(value, relax.Tuple):
                values[binding.var] = _flat([values[f] for f in value.fields])
            elif isinstance(value, relax.TupleGetItem):
                values[binding.var] = values[value.tuple_value][value.index]
            else:
                raise EennError(f"the static C driver cannot lower `{value}` in segment {index}")
        outputs = values[func.body.body] if isinstance(func.body.body, relax.Var) else None
        if not isinstance(outputs, list):
            raise EennError(f"segment {index} does not return a tuple of tensors")
        return Segment(index, values[param], calls, outputs)

    def _library_call(self, index: int, kernel: nn.Kernel, args: list[Tensor]) -> LibraryCall:
        *inputs, output = args
        scratch = kernel.scratch_bytes()
        scratch = Tensor(self._unique(f"s{index}_scratch"), (scratch,), "uint8") if scratch else None
        return LibraryCall(kernel, inputs, output, scratch)

    def _arg(self, arg: relax.Expr, values: dict) -> Tensor | Constant:
        if isinstance(arg, relax.Var):
            return values[arg]
        if isinstance(arg, tvm.ir.expr.Constant):
            return self._constant(arg)
        raise EennError(f"the static C driver cannot pass `{arg}` to a kernel")

    def _constant(self, const: tvm.ir.expr.Constant) -> Constant:
        key = const.__hash__()
        if key not in self._constant_of:
            c = Constant(self._unique(f"c{len(self.constants)}"), const.value.numpy())
            self._constant_of[key] = c
            self.constants.append(c)
        return self._constant_of[key]

    def _tensor(self, name: str, ty) -> Tensor:
        return Tensor(self._unique(name), tuple(int(d) for d in ty.shape), str(ty.dtype))

    def _renamed(self, tensor: Tensor, index: int, name: str) -> Tensor:
        """Tensors take the name of the binding that holds them (an ONNX tensor name where one survived); a name
        TVM made up (lv3) does not replace one that came from the model."""
        if is_generic_name(name) and tensor.name not in self._unnamed:
            return tensor
        self._names.discard(tensor.name)
        tensor.name = self._unique(f"s{index}_{name}")
        return tensor

    def _unique(self, name: str) -> str:
        base = re.sub(r"\W", "_", name)
        if base[:1].isdigit():
            base = f"t{base}"
        candidate, n = base, 1
        while candidate in self._names:
            candidate, n = f"{base}_{n}", n + 1
        self._names.add(candidate)
        return candidate


def _is_composite(func: tvm.ir.BaseFunc) -> bool:
    """An integer op of QDQToInteger (docs/int8.md), called from the segments."""
    return isinstance(func, relax.Function) and "Composite" in (func.attrs or {})


def _flat(items: list) -> list[Tensor]:
    """Exit heads return tuples inside the segment's tuple; the driver sees one flat list of tensors."""
    return [t for item in items for t in (_flat(item) if isinstance(item, list) else [item])]


def _bindings(func: relax.Function) -> list[relax.Binding]:
    return [b for block in func.body.blocks for b in block.bindings]
