"""`build`: a model (plain ONNX) or an `augment` output (an early-exit network) -> a firmware project for one
Cortex-M core, compiled, measured against its memory budget, with what `verify` needs to check it."""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import onnx
import tvm
from tvm import relax

from eenn_tvm.early_exit import early_exit_module
from eenn_tvm.errors import EennError
from eenn_tvm.frontend import import_onnx
from eenn_tvm.heads import Head
from eenn_tvm.outputs import atomic_folder
from eenn_tvm.passes import SplitAtExits, segment_names
from eenn_tvm.plan import Plan
from eenn_tvm.targets.mcu import driver, kernels, project
from eenn_tvm.targets.mcu.cores import Core, core_named
from eenn_tvm.targets.mcu.lower import lower
from eenn_tvm.targets.mcu.memory import plan_memory

MANIFEST = "firmware.json"
REFERENCE = "reference"  # what verify compares against: the ONNX model, or the early-exit network's host module
FORMAT = "eenn-tvm-firmware"
VERSION = 1


@dataclass
class Network:
    """What gets compiled: the model split into segments, and what the driver and verify need to know of it."""

    name: str
    kind: str  # "model" (no exits) or "eenn"
    mod: tvm.IRModule
    segments: list[str]
    input_name: str
    input_shape: list[int]
    classes: int
    output_is_probability: bool
    exits: list[dict]  # per exit: index, point, macs_to_reach, head_macs (from the plan)
    total_macs: int | None
    reference: Path | onnx.ModelProto | None  # what verify runs on the host: the host module, or the model as imported
    backbone: relax.Function | None = None  # the model as imported, without exits: what the placement compares with


def network_from(path: str | Path, input_shapes: dict | None = None) -> Network:
    path = Path(path)
    if path.is_dir():
        return eenn_network(path, Plan.load(path))
    if not path.exists():
        raise EennError(f"{path}: no such file or folder: give an ONNX model or an `eenn-tvm augment` output folder")
    model = import_onnx(path, input_shapes)
    mod = SplitAtExits(points=[])(model.mod)
    ((input_name, shape),) = model.input_shapes.items()
    return Network(
        model.name,
        "model",
        mod,
        segment_names(1),
        input_name,
        list(shape),
        _classes(model.onnx),
        _ends_in_softmax(model.onnx),
        [],
        None,
        model.onnx,
        model.mod["main"],
    )


def eenn_network(folder: Path, plan: Plan, batch: int = 1) -> Network:
    """The early-exit network `plan` describes (its exits may differ from those of the plan saved in `folder`, e.g.
    the SDN baseline's) over the backbone saved in `folder`; `batch` samples per call."""
    model_file = folder / plan.artifacts.get("model_onnx", "model.onnx")
    if not model_file.is_file():
        raise EennError(f"{folder}: has no {model_file.name} (made by an older augment): run `eenn-tvm augment` again")
    model = import_onnx(model_file, {plan.model["input_name"]: tuple(plan.model["input_shape"])}, batch=batch)
    exits = [(e.point, Head.load(folder / e.weights), e.threshold) for e in plan.exits]
    mod = early_exit_module(model.mod, exits, plan.decision)
    planned = [
        {"index": e.index, "point": e.point, "macs_to_reach": e.macs_to_reach, "head_macs": e.head_macs}
        for e in plan.exits
    ]
    return Network(
        plan.model["name"],
        "eenn",
        mod,
        segment_names(len(plan.exits) + 1),
        plan.model["input_name"],
        [batch, *plan.model["input_shape"][1:]],
        plan.model["classes"],
        _ends_in_softmax(model.onnx),
        planned,
        plan.model["total_macs"],
        folder / plan.artifacts["host_module"],
        model.mod["main"],
    )


def build_firmware(
    source: str | Path, target: str, out: str | Path, input_shapes: dict | None = None, **options
) -> dict:
    """Write the firmware project for a model file or an augment folder to `out`; returns its manifest.
    `options` are those of `write_firmware`."""
    return write_firmware(network_from(source, input_shapes), core_named(target), out, **options)


def write_firmware(
    network: Network,
    core: Core,
    out: str | Path,
    kernel_kind: str = "auto",
    flash_budget: int | None = None,
    ram_budget: int | None = None,
    stack_bytes: int = project.DEFAULT_STACK_BYTES,
    log: Callable[[str], None] = lambda _: None,
    device_segments: int | None = None,
) -> dict:
    """Lower, generate, compile and size `network` for `core` into `out` (also out/firmware.json). With
    `device_segments`, only the first ones: the last hands its activation over when its exit does not fire."""
    if kernel_kind not in kernels.KERNEL_KINDS:
        raise EennError(f"unknown kernel kind {kernel_kind!r}: choose one of {', '.join(kernels.KERNEL_KINDS)}")
    if kernel_kind == "auto":
        kernel_kind = core.kernels
    here = network.segments[: device_segments or len(network.segments)]
    log(f"lowering {len(here)} segment(s) of {network.name} for {core.name}")
    program = lower(network.mod, here)
    source_c = kernels.c_source(program.kernels)
    workspace = kernels.workspace_bytes(source_c)
    spec = driver.DriverSpec(
        network.name,
        core.name,
        network.classes,
        len(here),
        len(network.segments),
        network.output_is_probability,
        workspace,
    )
    memory = plan_memory(program, live_until_end=program.segments[-1].outputs[:1])
    with atomic_folder(out) as tmp:
        log(f"writing the project ({kernel_kind} kernels) and compiling it with arm-none-eabi-gcc")
        project.write_project(tmp, program, spec, memory, core, kernel_kind, stack_bytes)
        with tempfile.TemporaryDirectory(prefix="eenn-build-") as build:
            project.compile_project(tmp, Path(build), cross=True)
            project.keep_binaries(Path(build), tmp)
        sizes = project.measure_sizes(tmp / project.BINARIES, memory, workspace, stack_bytes)
        _check_budget(core, sizes, flash_budget or core.flash_budget, ram_budget or core.ram_budget)
        reference = _write_reference(network, tmp / REFERENCE)
        manifest = _manifest(
            network, program, core, kernel_kind, memory, workspace, sizes, flash_budget, ram_budget, reference
        )
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def load_manifest(folder: str | Path) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise EennError(f"{folder}: not a firmware folder (no {MANIFEST}): make one with `eenn-tvm build`")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise EennError(f"{path}: written by another version of eenn-tvm: run `eenn-tvm build` again")
    return manifest


def _hand_over(program) -> dict:
    live = program.segments[-1].outputs[0]
    return {"tensor": live.name, "shape": list(live.shape), "dtype": live.dtype, "bytes": live.nbytes}


def _check_budget(core: Core, sizes: project.Sizes, flash: int, ram: int) -> None:
    over = [
        f"{what} {need:,} bytes > {have:,}"
        for what, need, have in (("flash", sizes.flash, flash), ("RAM", sizes.ram, ram))
        if need > have
    ]
    if over:
        raise EennError(
            f"the model does not fit the {core.name} budget: {'; '.join(over)} "
            f"(raise --flash/--ram for a bigger part, or place fewer segments on the device)"
        )


def _write_reference(network: Network, folder: Path) -> str | None:
    """The model as imported (weights inline, even if the original kept them in external files), or the host module."""
    if network.reference is None:
        return None
    folder.mkdir()
    if isinstance(network.reference, onnx.ModelProto):
        onnx.save(network.reference, str(folder / "model.onnx"))
        return f"{REFERENCE}/model.onnx"
    shutil.copyfile(network.reference, folder / network.reference.name)
    return f"{REFERENCE}/{network.reference.name}"


def _manifest(
    network: Network,
    program,
    core: Core,
    kernel_kind: str,
    memory,
    workspace: int,
    sizes: project.Sizes,
    flash_budget,
    ram_budget,
    reference: str,
) -> dict:
    here = len(program.segments)
    return {
        "format": FORMAT,
        "version": VERSION,
        "kind": network.kind,
        "model": network.name,
        "target": core.name,
        "machine": core.board.machine,
        "kernels": kernel_kind,
        "input_name": network.input_name,
        "input_shape": network.input_shape,
        "classes": network.classes,
        "segments": len(network.segments),
        "device_segments": here,
        "hand_over": _hand_over(program) if here < len(network.segments) else None,
        "exits": network.exits,
        "total_macs": network.total_macs,
        "reference": reference,
        "elf": f"{project.BINARIES}/{project.ELF}",
        "memory": {
            "arena_bytes": memory.arena_bytes,
            "lower_bound_bytes": memory.lower_bound_bytes,
            "workspace_bytes": workspace,
            "stack_reserved_bytes": sizes.stack,
        },
        "sizes": {**asdict(sizes), "flash": sizes.flash, "ram": sizes.ram},
        "budget": {"flash": flash_budget or core.flash_budget, "ram": ram_budget or core.ram_budget},
    }


def _classes(model: onnx.ModelProto) -> int:
    dims = [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    return math.prod(dims[1:]) if len(dims) > 1 else max(dims[0], 1)


def _ends_in_softmax(model: onnx.ModelProto) -> bool:
    """Whether the first output comes out of a Softmax (perhaps through reshapes): then it is the confidence."""
    producer = {out: node for node in model.graph.node for out in node.output}
    node = producer.get(model.graph.output[0].name)
    while node is not None and node.op_type in ("Reshape", "Flatten", "Identity", "Squeeze"):
        node = producer.get(node.input[0])
    return node is not None and node.op_type == "Softmax"
