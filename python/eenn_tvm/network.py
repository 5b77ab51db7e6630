"""The network the backends compile and the placement cuts: a Relax module split into segments, with what a build,
a check and a placement need to know of it.

Made from a plain ONNX model (one segment, no exits), from an `augment` output (the early-exit network: one
segment per exit, each ending in its head and decision), or from one segment function (a cost-model workload).
"""

from __future__ import annotations

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
from eenn_tvm.passes import SplitAtExits, segment_names
from eenn_tvm.plan import Plan, PlannedExit


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

    @classmethod
    def open(cls, path: str | Path, input_shapes: dict | None = None) -> Network:
        """An ONNX model file or an `augment` output folder."""
        path = Path(path)
        if path.is_dir():
            return cls.from_augment(path)
        if not path.exists():
            raise EennError(
                f"{path}: no such file or folder: give an ONNX model or an `eenn-tvm augment` output folder"
            )
        return cls.from_onnx(path, input_shapes)

    @classmethod
    def from_onnx(cls, path: str | Path, input_shapes: dict | None = None) -> Network:
        """A plain model, compiled as it is: one segment, no exits."""
        model = import_onnx(path, input_shapes)
        ((input_name, shape),) = model.input_shapes.items()
        return cls(
            name=model.name,
            kind="model",
            mod=SplitAtExits(points=[])(model.mod),
            segments=segment_names(1),
            input_name=input_name,
            input_shape=list(shape),
            classes=_classes(model.onnx),
            output_is_probability=ends_in_softmax(model.onnx),
            reference=model.onnx,
            backbone=model.mod["main"],
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
        return cls(
            name=plan.model.name,
            kind="eenn",
            mod=early_exit_module(model.mod, exits, plan.decision),
            segments=segment_names(len(plan.exits) + 1),
            input_name=plan.model.input_name,
            input_shape=[batch, *plan.model.input_shape[1:]],
            classes=plan.model.classes,
            output_is_probability=ends_in_softmax(model.onnx),
            exits=list(plan.exits),
            total_macs=plan.model.total_macs,
            reference=plan.artifact(folder, "host_module"),
            backbone=model.mod["main"],
        )

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


def ends_in_softmax(model: onnx.ModelProto) -> bool:
    """Whether the first output comes out of a Softmax (perhaps through reshapes): then it is the confidence."""
    producer = {out: node for node in model.graph.node for out in node.output}
    node = producer.get(model.graph.output[0].name)
    while node is not None and node.op_type in ("Reshape", "Flatten", "Identity", "Squeeze"):
        node = producer.get(node.input[0])
    return node is not None and node.op_type == "Softmax"
