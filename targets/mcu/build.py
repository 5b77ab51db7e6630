"""`build`: a model (plain ONNX) or an `augment` output (an early-exit network) -> a firmware project for one
Cortex-M core, compiled, measured against its memory budget, with what `verify` needs to check it (firmware.json).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import onnx

from eenn_tvm.errors import EennError
from eenn_tvm.network import Network
from eenn_tvm.outputs import Output, atomic_folder
from eenn_tvm.plan import Plan, StreamDecision
from eenn_tvm.targets.mcu import driver, kernels, project
from eenn_tvm.targets.mcu.cores import DEFAULT_STACK_BYTES, KERNEL_KINDS, LIBRARY, Core, core_named
from eenn_tvm.targets.mcu.lower import Program, lower
from eenn_tvm.targets.mcu.manifest import (
    Budget,
    ExitCost,
    FirmwareManifest,
    HandOver,
    Int8Input,
    Int8Reference,
    MemoryFigures,
    Sizes,
)
from eenn_tvm.targets.mcu.memory import MemoryPlan, plan_memory

REFERENCE = "reference"  # what verify compares against: the ONNX model, or the early-exit network's host module
INT8_HOST_MODULE = "int8_host.so"  # a plain QDQ model's integer host module (QDQToInteger), built for this host
QDQ_MODEL = "model_int8.onnx"
STREAM_REFERENCE = "stream_host_static.so"  # the static host module with the plan's stream rule
INT8_STREAM_REFERENCE = "stream_int8_host.so"  # the integer host module, its first segment returning the tap's sums


def build_firmware(
    source: str | Path,
    core_name: str,
    out: Output,
    input_shapes: dict | None = None,
    dtype: str = "auto",
    **options,
) -> FirmwareManifest:
    """Write the firmware project for a model file or an augment folder to `out`; returns its manifest.
    `dtype` as `Network.open` takes it; `options` are those of `write_firmware`."""
    log = options.get("log", lambda _: None)
    out.check(log)
    network = Network.open(source, input_shapes, dtype)
    stream = _stream_rule(Plan.load(source), network.dtype, log) if (Path(source) / "plan.json").is_file() else None
    if stream is not None:
        network = network.with_stream_tap(stream)
    return write_firmware(network, core_named(core_name), out, **options)


def _stream_rule(plan: Plan, dtype: str, log: Callable[[str], None]) -> StreamDecision | None:
    """The stream rule of the network built: the plan's, or the one `quantize` certified for its int8 network."""
    if dtype != "int8":
        return plan.stream
    if plan.stream is not None and plan.int8.stream is None:
        log(
            "note: the plan's stream rule (augment --stream) has no int8 form (quantised by an older eenn-tvm): "
            "this int8 firmware decides per sample; run `eenn-tvm quantize` again with the stream data"
        )
    return plan.int8.stream


def write_firmware(
    network: Network,
    core: Core,
    out: Output,
    kernel_kind: str = "auto",
    flash_budget: int | None = None,
    ram_budget: int | None = None,
    stack_bytes: int = DEFAULT_STACK_BYTES,
    log: Callable[[str], None] = lambda _: None,
    device_segments: int | None = None,
) -> FirmwareManifest:
    """Lower, generate, compile and size `network` for `core` into `out` (also out/firmware.json). With
    `device_segments`, only the first ones: the last hands its activation over when its exit does not fire."""
    if kernel_kind not in KERNEL_KINDS:
        raise EennError(f"unknown kernel kind {kernel_kind!r}: choose one of {', '.join(KERNEL_KINDS)}")
    use_library = kernel_kind in ("auto", LIBRARY)
    kernel_kind, codegen = (LIBRARY, core.kernels) if use_library else (kernel_kind, kernel_kind)
    here = network.segments[: device_segments or len(network.segments)]
    stream = network.stream if len(here) == len(network.segments) else None  # its rule runs the whole network
    log(f"lowering {len(here)} segment(s) of {network.name} for {core.name}")
    program = lower(network.mod, here, use_library)
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
        stream=stream,
    )
    memory = plan_memory(program, live_until_end=program.segments[-1].outputs[:1])
    with atomic_folder(out, log) as tmp:
        log(f"writing the project ({kernel_kind} kernels) and compiling it with arm-none-eabi-gcc")
        project.write_project(tmp, program, spec, memory, core, codegen, stack_bytes)
        with tempfile.TemporaryDirectory(prefix="eenn-build-") as build:
            project.compile_project(tmp, Path(build), cross=True)
            project.keep_binaries(Path(build), tmp)
        sizes = project.measure_sizes(tmp / project.BINARIES, memory, workspace, stack_bytes)
        budget = Budget(
            flash=core.flash_budget if flash_budget is None else flash_budget,
            ram=core.ram_budget if ram_budget is None else ram_budget,
        )
        _check_budget(core, sizes, budget)
        reference = _write_reference(network, tmp / REFERENCE)
        int8 = _write_int8_reference(network, tmp / REFERENCE)
        stream_reference = _write_stream_reference(network, tmp / REFERENCE) if stream is not None else None
        kinds = (kernel_kind, codegen)
        references = (reference, int8, stream_reference)
        manifest = _manifest(network, program, core, kinds, memory, workspace, sizes, budget, *references)
        manifest.record_hashes(tmp)
        manifest.save(tmp)
    return manifest


def _hand_over(program: Program) -> HandOver:
    """The model's layout: library kernels work in NHWC inside, but every segment returns what the model has."""
    live = program.segments[-1].outputs[0]
    layout = {4: "NCHW", 3: "NCW"}.get(len(live.shape), "")
    return HandOver(tensor=live.name, shape=list(live.shape), dtype=live.dtype, bytes=live.nbytes, layout=layout)


def _int8_input(program: Program) -> Int8Input | None:
    entry = driver.int8_entry(program)
    if entry is None:
        return None
    return Int8Input(scale=entry.scale, zero_point=entry.zero_point, elf=f"{project.BINARIES}/{project.INT8_ELF}")


def _check_budget(core: Core, sizes: Sizes, budget: Budget) -> None:
    over = [
        f"{what} {need:,} bytes > {have:,}"
        for what, need, have in (("flash", sizes.flash, budget.flash), ("RAM", sizes.ram, budget.ram))
        if need > have
    ]
    if over:
        raise EennError(
            f"the model does not fit the {core.name} budget: {'; '.join(over)} "
            f"(raise --flash/--ram for a bigger part, or place fewer segments on the device)"
        )


def _write_reference(network: Network, folder: Path) -> str | None:
    """The model as imported (weights inline, even if the original kept them in external files), or the host
    module; an int8 network's reference is its integer host module (a plain QDQ model's is built here)."""
    if network.reference is None:
        return None
    folder.mkdir()
    if network.dtype == "int8" and isinstance(network.reference, onnx.ModelProto):
        from eenn_tvm.passes import ChainExits
        from eenn_tvm.targets.host import HostModule, build

        # chained like every host reference: verify runs its `early_exit` (one segment here, no exit)
        HostModule(build(ChainExits()(network.mod))).export(folder / INT8_HOST_MODULE)
        return f"{REFERENCE}/{INT8_HOST_MODULE}"
    if isinstance(network.reference, onnx.ModelProto):
        onnx.save(network.reference, str(folder / "model.onnx"))
        return f"{REFERENCE}/model.onnx"
    shutil.copyfile(network.reference, folder / network.reference.name)
    return f"{REFERENCE}/{network.reference.name}"


def _write_stream_reference(network: Network, folder: Path) -> str:
    """What `verify --stream` compares the firmware's decisions with: the same stream rule in the static host module
    (the same C driver over the host's kernels); for int8, the integer host module of the same segments (the tap's
    channel sums from the first), whose outputs the rule decides in numpy (`eenn_tvm.stream`)."""
    folder.mkdir(exist_ok=True)
    if network.dtype == "int8":
        from eenn_tvm.targets.host import HostModule, build

        HostModule(build(network.mod)).export(folder / INT8_STREAM_REFERENCE)
        return f"{REFERENCE}/{INT8_STREAM_REFERENCE}"
    from eenn_tvm.targets.host.static import build_static

    build_static(network, folder / STREAM_REFERENCE)
    return f"{REFERENCE}/{STREAM_REFERENCE}"


def _write_int8_reference(network: Network, folder: Path) -> Int8Reference | None:
    """onnxruntime's side of an int8 network: the QDQ model, with the thresholds and rule its exits take."""
    if network.dtype != "int8":
        return None
    folder.mkdir(exist_ok=True)
    if isinstance(network.qdq_model, onnx.ModelProto):
        onnx.save(network.qdq_model, str(folder / QDQ_MODEL))
    else:
        shutil.copyfile(network.qdq_model, folder / QDQ_MODEL)
    thresholds = [e.threshold for e in network.exits]
    return Int8Reference(onnx=f"{REFERENCE}/{QDQ_MODEL}", thresholds=thresholds, decision=network.decision)


def _manifest(
    network: Network,
    program: Program,
    core: Core,
    kinds: tuple[str, str],
    memory: MemoryPlan,
    workspace: int,
    sizes: Sizes,
    budget: Budget,
    reference: str | None,
    int8: Int8Reference | None,
    stream_reference: str | None,
) -> FirmwareManifest:
    here = len(program.segments)
    return FirmwareManifest(
        kind=network.kind,
        dtype=network.dtype,
        int8=int8,
        int8_input=_int8_input(program),
        model=network.name,
        core=core.name,
        machine=core.board.machine,
        kernels=kinds[0],
        codegen=kinds[1],
        input_name=network.input_name,
        input_shape=network.input_shape,
        classes=network.classes,
        segments=len(network.segments),
        device_segments=here,
        hand_over=_hand_over(program) if here < len(network.segments) else None,
        exits=[ExitCost.model_validate(e.model_dump(include=set(ExitCost.model_fields))) for e in network.exits],
        total_macs=network.total_macs,
        reference=reference,
        elf=f"{project.BINARIES}/{project.ELF}",
        stream_elf=f"{project.BINARIES}/{project.STREAM_ELF}",
        stream_rule_elf=f"{project.BINARIES}/{project.STREAM_RULE_ELF}" if stream_reference else None,
        stream_reference=stream_reference,
        stream=network.stream if stream_reference else None,
        memory=MemoryFigures(
            arena_bytes=memory.arena_bytes,
            lower_bound_bytes=memory.lower_bound_bytes,
            workspace_bytes=workspace,
            stack_reserved_bytes=sizes.stack,
        ),
        sizes=sizes,
        budget=budget,
    )
