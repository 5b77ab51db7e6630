"""Front end: an ONNX file in, a Relax IRModule whose bindings carry the ONNX tensor names out.

Real exports need work before TVM's importer takes them: symbolic dims are fixed, and constant
subgraphs (torch's legacy exporter computes `Pad` pads with Shape/Slice/Concat) are folded by
onnxslim. Every problem with the user's file becomes one `EennError` line.
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import onnx
import tvm
from google.protobuf.message import DecodeError
from tvm import relax
from tvm.relax.frontend.onnx import onnx_frontend

from eenn_tvm.errors import EennError
from eenn_tvm.passes.cuts import TENSOR_NAMES_ATTR

Shape = tuple[int, ...]


@dataclass
class ImportedModel:
    """An ONNX model ready for analysis and rewriting: simplified, with static shapes, and its Relax form."""

    name: str
    onnx: onnx.ModelProto  # simplified, static shapes, shapes of all tensors inferred
    input_shapes: dict[str, Shape]
    mod: tvm.IRModule = field(repr=False)

    @property
    def tensor_names(self) -> dict[str, str]:
        """ONNX tensor name -> name of the Relax binding that computes it."""
        return {str(k): str(v) for k, v in self.mod["main"].attrs[TENSOR_NAMES_ATTR].items()}

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.onnx.graph.output]


def parse_input_shape(text: str) -> tuple[str, Shape]:
    """`NAME=1x3x32x32` -> ("NAME", (1, 3, 32, 32))."""
    name, sep, dims = text.rpartition("=")
    if not sep or not name or not re.fullmatch(r"\d+(x\d+)*", dims):
        raise EennError(f"--input-shape {text!r} is not NAME=DxDx...: write e.g. --input-shape input=1x3x32x32")
    shape = tuple(int(d) for d in dims.split("x"))
    if 0 in shape:
        raise EennError(f"--input-shape {text}: every dim must be 1 or more")
    return name, shape


def load_onnx(path: str | Path) -> onnx.ModelProto:
    """Read and check an ONNX file (external weight files are read from beside it)."""
    path = Path(path)
    if not path.is_file():
        raise EennError(f"{path}: no such file: give the path of an .onnx model")
    try:
        model = onnx.load(str(path), load_external_data=True)
    except DecodeError:
        raise EennError(f"{path}: not an ONNX model (the file does not parse: truncated, or another format)") from None
    except (OSError, onnx.checker.ValidationError) as err:
        raise EennError(
            f"{path}: cannot read its external weight data ({_first_line(err)}): keep the data files beside the model"
        ) from None
    if not model.graph.node:
        raise EennError(f"{path}: not an ONNX model (no graph in it: truncated, or another format)")
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        first = next((line for line in str(err).splitlines() if line.strip()), "invalid")
        raise EennError(f"{path}: invalid ONNX model: {first.strip()}") from None
    return model


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The real inputs (old exporters also list every initializer as an input)."""
    initializers = {init.name for init in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in initializers]


def resolve_input_shapes(model: onnx.ModelProto, given: dict[str, Shape] | None = None) -> dict[str, Shape]:
    """Static shape of every input: from the model, from `given`, and batch 1 where only the batch is symbolic."""
    given = dict(given or {})
    inputs = graph_inputs(model)
    unknown = set(given) - {i.name for i in inputs}
    if unknown:
        raise EennError(
            f"--input-shape names {', '.join(sorted(unknown))}, but the model's inputs are "
            f"{', '.join(i.name for i in inputs)}"
        )
    shapes = {}
    for inp in inputs:
        if inp.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            dtype = onnx.helper.tensor_dtype_to_np_dtype(inp.type.tensor_type.elem_type)
            raise EennError(f"input {inp.name!r} is {dtype}: only float32 inputs are supported")
        dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
        if inp.name in given:
            shape = given[inp.name]
            if len(shape) != len(dims) or any(d is not None and d != s for d, s in zip(dims, shape)):
                shown = "x".join(str(d or "?") for d in dims)
                raise EennError(
                    f"--input-shape {inp.name}={'x'.join(map(str, shape))} does not fit the model's {shown}"
                )
        else:
            if dims and dims[0] is None:
                dims[0] = 1  # a symbolic batch is the common case; eenn-tvm runs one sample at a time
            if None in dims or not dims:
                shown = "x".join(str(d or "?") for d in dims) or "unknown rank"
                raise EennError(
                    f"input {inp.name!r} has symbolic shape {shown}: give --input-shape {inp.name}=1x... with every dim"
                )
            shape = tuple(dims)
        shapes[inp.name] = tuple(int(d) for d in shape)
    return shapes


def simplify(model: onnx.ModelProto, input_shapes: dict[str, Shape]) -> onnx.ModelProto:
    """Fix the input shapes, fold constant subgraphs (onnxslim) and infer the shape of every tensor."""
    import onnxslim  # heavy import; only needed here

    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for inp in graph_inputs(fixed):
        dims = inp.type.tensor_type.shape.dim
        for dim, size in zip(dims, input_shapes[inp.name]):
            dim.Clear()
            dim.dim_value = size
    # Outputs may carry stale symbolic dims; let inference recompute them.
    for out in fixed.graph.output:
        out.type.tensor_type.ClearField("shape")
    try:
        with _quiet():
            slim = onnxslim.slim(fixed, model_check=False)
        return onnx.shape_inference.infer_shapes(slim, strict_mode=True, data_prop=True)
    except Exception as err:  # onnxslim and onnx raise many types; all mean "cannot simplify this file"
        raise EennError(f"cannot fold the model's constant subgraphs: {_first_line(err)}") from None


def unsupported_ops(model: onnx.ModelProto) -> dict[str, list[str]]:
    """Op types TVM's ONNX importer has no converter for, each with the names of its nodes."""
    supported = set(onnx_frontend._get_convert_map()) | {"Constant", "If"}
    missing: dict[str, list[str]] = {}
    for node in model.graph.node:
        if node.op_type not in supported or node.domain not in ("", "ai.onnx"):
            missing.setdefault(node.op_type, []).append(node.name or node.output[0])
    return missing


def to_relax(model: onnx.ModelProto, input_shapes: dict[str, Shape]) -> tvm.IRModule:
    """Import a simplified model; each binding is named after the ONNX tensor it computes."""
    missing = unsupported_ops(model)
    if missing:
        listed = "; ".join(
            f"{op} ({', '.join(nodes[:3])}{', ...' if len(nodes) > 3 else ''})" for op, nodes in missing.items()
        )
        raise EennError(f"the model uses ops TVM cannot import: {listed}: replace them or export without them")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
    importer = _NamingImporter(input_shapes, "float32")
    with _quiet():
        mod = importer.from_onnx(model.graph, opset)
    if len(mod["main"].body.blocks) != 1:
        raise EennError("the model has control flow (If): eenn-tvm needs a straight-line graph; export without it")
    main = mod["main"].with_attr(TENSOR_NAMES_ATTR, importer.binding_names)
    mod["main"] = main
    return mod


def import_onnx(path: str | Path, input_shapes: dict[str, Shape] | None = None, batch: int = 1) -> ImportedModel:
    """The whole front end: load, check, fix shapes, fold constants, import into Relax. `batch` > 1 replaces the
    first dimension of every input (one the model fixes to 1 as well), for batched host builds."""
    model = load_onnx(path)
    if batch != 1:
        model = _with_batch(model, batch, resolve_input_shapes(model, input_shapes))
        input_shapes = None
    shapes = resolve_input_shapes(model, input_shapes)
    simple = simplify(model, shapes)
    mod = to_relax(simple, shapes)
    return ImportedModel(name=Path(path).stem, onnx=simple, input_shapes=shapes, mod=mod)


def _with_batch(model: onnx.ModelProto, batch: int, shapes: dict[str, Shape]) -> onnx.ModelProto:
    batched = onnx.ModelProto()
    batched.CopyFrom(model)
    for inp in graph_inputs(batched):
        for dim, size in zip(inp.type.tensor_type.shape.dim, (batch, *shapes[inp.name][1:])):
            dim.Clear()
            dim.dim_value = size
    return batched


class _NamingImporter(onnx_frontend.ONNXGraphImporter):
    """TVM's importer, converting one node at a time so each result is bound under its ONNX tensor name."""

    def __init__(self, shape_dict, dtype_dict):
        super().__init__(shape_dict, dtype_dict, keep_params_in_input=False, sanitize=True)
        self.binding_names: dict[str, str] = {}
        self._used: set[str] = set()

    def _construct_nodes(self, graph):
        for node in graph.node:
            try:
                super()._construct_nodes(_SingleNodeGraph([node]))
            except Exception as err:  # the converters raise anything from ValueError to TVMError
                raise EennError(
                    f"TVM cannot import node {node.name or node.output[0]!r} ({node.op_type}): {_first_line(err)}"
                ) from None
            for tensor in node.output:
                self._bind_named(tensor)

    def _bind_named(self, tensor: str) -> None:
        value = self._nodes.get(tensor)
        if not isinstance(value, relax.Expr) or not isinstance(value.ty, relax.TensorType):
            return
        if isinstance(value, tvm.ir.expr.Constant):
            return
        if not isinstance(value, relax.Var):
            value = self._nodes[tensor] = self.bb.emit(value, name_hint=self._fresh(tensor))
        self.binding_names[tensor] = value.name

    def _fresh(self, tensor: str) -> str:
        base = re.sub(r"\W", "_", tensor).strip("_") or "t"
        if base[0].isdigit():
            base = "t_" + base
        name, k = base, 1
        while name in self._used:
            name, k = f"{base}_{k}", k + 1
        self._used.add(name)
        return name


@dataclass
class _SingleNodeGraph:
    node: list


@contextlib.contextmanager
def _quiet():
    """TVM's importer and onnxslim print to stdout and warn freely; `--json` needs stdout for itself."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # TVM errors carry a C++ traceback before their message.
    return lines[-1] if lines[0].startswith("Traceback") else lines[0]
