"""The network the backends compile and the placement cuts: a Relax module split into segments, with what a build,
a check and a placement need to know of it.

Made from a plain ONNX model (one segment, no exits), from an `augment` output (the early-exit network: one
segment per exit, each ending in its head and decision), or from one segment function (a cost-model workload).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import onnx
import tvm
from tvm import relax

from eenn_tvm.early_exit import early_exit_module
from eenn_tvm.errors import EennError
from eenn_tvm.frontend import import_onnx
from eenn_tvm.heads import Head
from eenn_tvm.passes import QDQToInteger, SplitAtExits, TapFeatures, segment_names
from eenn_tvm.plan import Plan, PlannedExit, StreamDecision
from eenn_tvm.quantized.network import int8_early_exit_module


@dataclass
class Network:
    name: str
    kind: str  # "model" (no exits) or "eenn"
    mod: tvm.IRModule  # holds the segment functions
    segments: list[str]  # segment_0, segment_1, ...: the first output of each is the input of the next
    input_name: str
    input_shape: list[int]
    classes: int
    output_is_probability: bool  # the last segment ends in a softmax: its output is the confidence
    exits: list[PlannedExit] = field(default_factory=list)
    total_macs: int | None = None  # of the backbone, where known (an augment output)
    reference: Path | onnx.ModelProto | None = None  # what verify runs on the host: the host module, or the model
    backbone: relax.Function | None = None  # the model as imported, without exits: what a placement compares with
    dtype: str = "float32"  # "int8": integer ops (QDQToInteger) between a quantized input and dequantized outputs
    qdq_model: Path | onnx.ModelProto | None = None  # int8: the QDQ model, what onnxruntime runs
    decision: str | None = None  # int8 early-exit networks: the confidence rule, to apply it to onnxruntime's logits
    stream: StreamDecision | None = None  # `with_stream_tap`: the stream rule a static driver compiles in

    def with_stream_tap(self, stream: StreamDecision) -> Network:
        """The network whose first segment also returns the channel averages at the stream rule's tap (an int8
        network: the channel sums of its codes; `TapFeatures`): what a static driver needs to decide streams
        (`eenn_infer_stream`). A network without exits is returned as it is: it decides per sample."""
        if not self.exits:
            return self
        return dataclasses.replace(self, mod=TapFeatures(stream.tap)(self.mod), stream=stream)

    @classmethod
    def open(cls, path: str | Path, input_shapes: dict | None = None, dtype: str = "auto") -> Network:
        """An ONNX model file or an `augment` output folder. `dtype` "int8" takes an augment output's int8 network
        (`eenn-tvm quantize`); a QDQ model is int8 whatever `dtype` says ("auto": int8 exactly then)."""
        path = Path(path)
        if path.is_dir():
            return cls.from_int8_augment(path) if dtype == "int8" else cls.from_augment(path)
        if not path.exists():
            raise EennError(
                f"{path}: no such file or folder: give an ONNX model or an `eenn-tvm augment` output folder"
            )
        return cls.from_onnx(path, input_shapes, dtype)

    @classmethod
    def from_onnx(cls, path: str | Path, input_shapes: dict | None = None, dtype: str = "auto") -> Network:
        """A plain model, compiled as it is: one segment, no exits. A QDQ model (`eenn-tvm quantize`) is made
        integer (QDQToInteger)."""
        model = import_onnx(path, input_shapes)
        ((input_name, shape),) = model.input_shapes.items()
        int8 = is_qdq(model.onnx)
        if dtype == "int8" and not int8:
            raise EennError(
                f"{path}: is a float model: quantise it first (`eenn-tvm quantize {path} --data DATA.npz "
                f"-o MODEL_int8.onnx`) and build that"
            )
        return cls(
            name=model.name,
            kind="model",
            mod=SplitAtExits(points=[])(QDQToInteger()(model.mod) if int8 else model.mod),
            segments=segment_names(1),
            input_name=input_name,
            input_shape=list(shape),
            classes=_classes(model.onnx),
            output_is_probability=ends_in_softmax(model.onnx),
            reference=model.onnx,
            backbone=model.mod["main"],
            dtype="int8" if int8 else "float32",
            qdq_model=model.onnx if int8 else None,
        )

    @classmethod
    def from_augment(cls, folder: str | Path, plan: Plan | None = None, batch: int = 1) -> Network:
        """The early-exit network `plan` describes (by default the plan saved in `folder`; another one may choose
        other exits, e.g. the SDN baseline's) over the backbone saved in `folder`; `batch` samples per call."""
        folder = Path(folder)
        plan = plan or Plan.load(folder)
        model = import_onnx(
            plan.artifact(folder, "model_onnx"), {plan.model.input_name: tuple(plan.model.input_shape)}, batch=batch
        )
        classes = plan.model.classes
        heads = [Head.load(plan.named_file(folder, e.weights), e.head, e.shape, classes) for e in plan.exits]
        exits = [(e.point, head, e.threshold) for e, head in zip(plan.exits, heads)]
        network = cls.of_early_exits(early_exit_module(model.mod, exits, plan.decision), plan, model.onnx, batch)
        network.reference = plan.artifact(folder, "host_module")
        network.backbone = model.mod["main"]
        return network

    @classmethod
    def of_early_exits(cls, mod: tvm.IRModule, plan: Plan, model: onnx.ModelProto, batch: int = 1) -> Network:
        """The early-exit network `early_exit_module` made of `plan`'s exits over the backbone `model`."""
        return cls(
            name=plan.model.name,
            kind="eenn",
            mod=mod,
            segments=segment_names(len(plan.exits) + 1),
            input_name=plan.model.input_name,
            input_shape=[batch, *plan.model.input_shape[1:]],
            classes=plan.model.classes,
            output_is_probability=ends_in_softmax(model),
            exits=list(plan.exits),
            total_macs=plan.model.total_macs,
        )

    @classmethod
    def from_int8_augment(cls, folder: str | Path) -> Network:
        """The int8 early-exit network `eenn-tvm quantize` added to an augment output, with its own thresholds."""
        from eenn_tvm.quantize import imported  # onnxruntime's quantisation tooling: only for int8

        plan = Plan.load(folder)
        if plan.int8 is None:
            raise EennError(
                f"{folder}: has no int8 network: run `eenn-tvm quantize {folder} --data DATA.npz` first, "
                "or build it with --dtype float32"
            )
        float32 = cls.from_augment(folder, plan)
        qdq_model = plan.artifact(folder, "eenn_int8_onnx")
        model = imported(onnx.load(str(qdq_model)), plan.model.name)
        float32.mod = int8_early_exit_module(model, plan.int8.thresholds, plan.decision)
        float32.exits = [e.model_copy(update={"threshold": t}) for e, t in zip(plan.exits, plan.int8.thresholds)]
        float32.reference = plan.artifact(folder, "int8_host_module")
        float32.dtype = "int8"
        float32.qdq_model = qdq_model
        float32.decision = plan.decision
        return float32

    @classmethod
    def from_segment(cls, name: str, mod: tvm.IRModule) -> Network:
        """A module whose `segment_0` maps one float32 input `x` to one output (a cost-model workload)."""
        func = mod["segment_0"]
        return cls(
            name=name,
            kind="model",
            mod=mod,
            segments=["segment_0"],
            input_name="x",
            input_shape=[int(d) for d in func.params[0].ty.shape],
            classes=math.prod(int(d) for d in func.ret_ty.fields[0].shape),
            output_is_probability=False,
        )


def _classes(model: onnx.ModelProto) -> int:
    dims = [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    return math.prod(dims[1:]) if len(dims) > 1 else max(dims[0], 1)


def is_qdq(model: onnx.ModelProto) -> bool:
    """A model quantised to QDQ form (int8 tensors between DequantizeLinear and QuantizeLinear)."""
    return any(node.op_type == "QuantizeLinear" for node in model.graph.node)


def ends_in_softmax(model: onnx.ModelProto) -> bool:
    """Whether the first output comes out of a Softmax (perhaps through reshapes): then it is the confidence."""
    producer = {out: node for node in model.graph.node for out in node.output}
    node = producer.get(model.graph.output[0].name)
    while node is not None and node.op_type in ("Reshape", "Flatten", "Identity", "Squeeze"):
        node = producer.get(node.input[0])
    return node is not None and node.op_type == "Softmax"
