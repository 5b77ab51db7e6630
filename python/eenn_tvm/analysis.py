"""Analysis: where the network can host an exit, and what everything before each point costs.

A candidate exit point is a tensor after which exactly one value is live (checked on the Relax
function by `eenn_tvm.passes.crossing_values`), that is a float feature map with the batch dim, at a
block boundary: cuts between a layer and its activation, batch-norm or pooling are moved to after
them, cuts after a pure reshape back to before it, and cuts inside a depthwise-separable block (after
its depthwise half) are not offered. Points with no convolution or matrix product after them are
not offered either (an exit there saves nothing), nor points with nothing computed before them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import onnx

from eenn_tvm.errors import EennError
from eenn_tvm.frontend import ImportedModel, graph_inputs
from eenn_tvm.macs import is_depthwise, node_macs
from eenn_tvm.passes.cuts import crossing_values

HEAVY = frozenset(["Conv", "ConvTranspose", "Gemm", "MatMul"])
# Ops that finish a layer: a cut is moved past them to the block boundary.
FOLLOW_UP = frozenset(
    "Relu LeakyRelu PRelu Clip Sigmoid HardSigmoid HardSwish Tanh Elu Selu Celu Gelu Softplus Mish "
    "BatchNormalization MaxPool AveragePool LpPool Dropout Identity".split()
)
# Ops that only reshape: a cut after one is the same as the cut before it, which keeps the spatial layout.
RESHAPES = frozenset(["Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Identity"])
SCALING = frozenset(["Add", "Sub", "Mul", "Div"])  # a follow-up when the other operand is a constant


@dataclass
class ExitPoint:
    name: str  # ONNX tensor name
    op: str  # op type of the node that produces it
    shape: list[int]
    macs_before: int
    fraction: float
    activation_bytes: int
    param_bytes_before: int
    node: str  # ONNX node name
    binding: str  # name of the Relax binding that computes it


@dataclass
class Analysis:
    model: str
    total_macs: int
    total_param_bytes: int
    input_shapes: dict[str, list[int]]
    macs_by_op: dict[str, int]
    exit_points: list[ExitPoint]
    uncounted_ops: list[str] = field(default_factory=list)  # op types with no MAC rule (counted as 0)

    def to_json(self) -> dict:
        return asdict(self)


def analyze(model: ImportedModel) -> Analysis:
    graph = _Graph(model.onnx)
    crossing = crossing_values(model.mod["main"])
    binding_of = model.tensor_names
    total = graph.macs_through[-1] if graph.nodes else 0
    last_heavy = max((i for i, n in enumerate(graph.nodes) if n.op_type in HEAVY), default=-1)
    batch = next(iter(model.input_shapes.values()))[0]

    points = []
    for index, node in enumerate(graph.nodes[:last_heavy]):
        tensor = node.output[0]
        binding = binding_of.get(tensor)
        shape = graph.shapes.get(tensor)
        if binding is None or crossing.get(binding, "?") is not None or shape is None:
            continue
        if len(shape) < 2 or shape[0] != batch or not graph.is_float(tensor):
            continue
        if graph.is_mid_block(index) or graph.macs_through[index] == 0:
            continue
        points.append(
            ExitPoint(
                name=tensor,
                op=node.op_type,
                shape=list(shape),
                macs_before=graph.macs_through[index],
                fraction=graph.macs_through[index] / total if total else 0.0,
                activation_bytes=int(np.prod(shape)) * graph.itemsize(tensor),
                param_bytes_before=graph.params_through[index],
                node=node.name,
                binding=binding,
            )
        )
    return Analysis(
        model=model.name,
        total_macs=total,
        total_param_bytes=graph.params_through[-1] if graph.nodes else 0,
        input_shapes={k: list(v) for k, v in model.input_shapes.items()},
        macs_by_op=graph.macs_by_op,
        exit_points=points,
        uncounted_ops=sorted(graph.uncounted),
    )


class _Graph:
    """The simplified ONNX graph with shapes, consumers and running totals of MACs and parameters."""

    def __init__(self, model: onnx.ModelProto):
        g = model.graph
        self.nodes = list(g.node)
        self.initializers = {t.name: t for t in g.initializer}
        self.types = {}
        for info in [*graph_inputs(model), *g.value_info, *g.output]:
            tt = info.type.tensor_type
            self.types[info.name] = (tuple(d.dim_value for d in tt.shape.dim), tt.elem_type)
        for t in g.initializer:
            self.types[t.name] = (tuple(t.dims), t.data_type)
        self.shapes = {k: s for k, (s, _) in self.types.items()}
        self.producer = {out: i for i, n in enumerate(self.nodes) for out in n.output}
        self.consumers: dict[str, list[int]] = {}
        for i, n in enumerate(self.nodes):
            for inp in n.input:
                self.consumers.setdefault(inp, []).append(i)
        self.outputs = {o.name for o in g.output}
        self._running_totals()

    def _running_totals(self) -> None:
        self.macs_through, self.params_through = [], []
        self.macs_by_op: dict[str, int] = {}
        self.uncounted: set[str] = set()
        macs = params = 0
        seen = set()
        for node in self.nodes:
            try:
                m = node_macs(node, self.shapes)
            except KeyError as missing:
                raise EennError(
                    f"the shape of tensor {missing} ({node.op_type} node {node.name!r}) cannot be inferred: "
                    "give static shapes with --input-shape or export with shape information"
                ) from None
            if m is None:
                self.uncounted.add(node.op_type)
            macs += m or 0
            self.macs_by_op[node.op_type] = self.macs_by_op.get(node.op_type, 0) + (m or 0)
            for inp in node.input:
                if inp in self.initializers and inp not in seen:
                    seen.add(inp)
                    params += int(np.prod(self.shapes[inp])) * self.itemsize(inp)
            self.macs_through.append(macs)
            self.params_through.append(params)

    def itemsize(self, tensor: str) -> int:
        return onnx.helper.tensor_dtype_to_np_dtype(self.types[tensor][1]).itemsize

    def is_float(self, tensor: str) -> bool:
        return self.types[tensor][1] in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE)

    def _data_input(self, node: onnx.NodeProto) -> str | None:
        """The one non-constant input of a node, or None if it has several."""
        inputs = [i for i in node.input if i and i not in self.initializers]
        return inputs[0] if len(inputs) == 1 else None

    def _is_follow_up(self, node: onnx.NodeProto) -> bool:
        if node.op_type in FOLLOW_UP:
            return True
        return node.op_type in SCALING and self._data_input(node) is not None

    def is_mid_block(self, index: int) -> bool:
        node = self.nodes[index]
        consumers = self.consumers.get(node.output[0], [])
        if len(consumers) == 1 and self._is_follow_up(self.nodes[consumers[0]]):
            return True  # the block goes on: activation, normalisation or pooling follows
        source = self._data_input(node)
        if node.op_type in RESHAPES and source is not None and source in self.producer:
            return True  # the same point as before the reshape
        while node is not None and self._is_follow_up(node):
            source = self._data_input(node)
            node = self.nodes[self.producer[source]] if source in self.producer else None
        return node is not None and is_depthwise(node, self.shapes)  # half of a depthwise-separable block
