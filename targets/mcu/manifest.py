"""firmware.json: what `build` made and what `verify` (and a deployment) need to know of it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import ConfigDict, Field, computed_field, model_validator

from eenn_tvm.documents import Count, Document, FolderDocument, RelativePath, Sha256, Size
from eenn_tvm.errors import EennError
from eenn_tvm.plan import StreamDecision, Threshold
from eenn_tvm.targets.mcu import MANIFEST_FILE
from eenn_tvm.targets.mcu.cores import CORES

MAX_CLASSES = 1 << 16  # what a microcontroller classifier can output: a bound on what verify allocates
FORMAT = "eenn-tvm-firmware"
VERSION = 2  # 2: the SHA-256 of every file it names (ELFs, references)


class HandOver(Document):
    """The tensor the device's last segment hands to the next tier when its exit does not fire."""

    tensor: str
    shape: list[Size]
    dtype: Literal["float32"]
    bytes: Size
    layout: str = ""  # NCHW, NCW: the model's own (the next tier continues from it as the model has it)


class ExitCost(Document):
    index: Count
    point: str
    macs_to_reach: Count
    head_macs: Count


class Int8Reference(Document):
    """An int8 firmware's second reference: onnxruntime on the QDQ model, the exits' thresholds applied in numpy."""

    onnx: RelativePath
    thresholds: list[Threshold]  # one per exit (infinity: never)
    decision: str | None  # the confidence rule; None without exits


class Int8Input(Document):
    """eenn_infer_int8 (eenn_model.h): the input's quantisation, x_q = clamp(round_half_to_even(x / scale) +
    zero_point, -128, 127), and the verify program that feeds it int8 inputs."""

    scale: Annotated[float, Field(gt=0)]
    zero_point: Annotated[int, Field(ge=-128, le=127)]
    elf: RelativePath


class MemoryFigures(Document):
    arena_bytes: Count
    lower_bound_bytes: Count  # the most bytes alive at once
    workspace_bytes: Count
    stack_reserved_bytes: Count


class Sizes(Document):
    """Bytes the model library takes: flash (code, constants, initial data) and RAM (data, arena, stack)."""

    model_config = ConfigDict(extra="ignore")  # flash and ram are written for people, and computed when read

    code: Count
    weights: Count
    data: Count
    arena: Count
    workspace: Count
    other_bss: Count
    stack: Count

    @computed_field
    @property
    def flash(self) -> int:
        return self.code + self.weights + self.data

    @computed_field
    @property
    def ram(self) -> int:
        return self.data + self.arena + self.workspace + self.other_bss + self.stack


class Budget(Document):
    flash: Count
    ram: Count


class FirmwareManifest(FolderDocument):
    format: Literal["eenn-tvm-firmware"] = FORMAT
    version: Literal[2] = VERSION
    kind: Literal["model", "eenn"]
    model: str
    core: str = Field(alias="target")  # the Cortex-M core it is built for
    machine: str  # the QEMU board that runs it
    dtype: Literal["float32", "int8"] = "float32"
    int8: Int8Reference | None = None  # int8: onnxruntime's reference (`reference` is the int8 host module)
    int8_input: Int8Input | None = None  # int8 with an int8 entry point (not with TVM's kernels only)
    kernels: Literal["library", "llvm", "c"]  # the kernel library (TVM's kernels for the rest), or TVM's only
    codegen: Literal["llvm", "c"] = "llvm"  # how TVM's kernels are compiled: Thumb objects, or C through gcc
    input_name: str
    input_shape: list[Size] = Field(min_length=1)
    classes: Annotated[int, Field(ge=1, le=MAX_CLASSES)]
    segments: Size  # of the whole network
    device_segments: Size  # the first ones, built here
    hand_over: HandOver | None  # None: the device runs the network to its end
    exits: list[ExitCost]
    total_macs: Count | None
    reference: RelativePath | None  # what verify compares with on the host
    elf: RelativePath
    stream_elf: RelativePath | None = (
        None  # the same over UART0, for a live deployment (firmware built before it: None)
    )
    # `augment --stream`: verify_main.c through eenn_infer_stream, and the host's side of the same rule: the static
    # host module (float32), or the integer host module with the tap, whose outputs `stream` decides in numpy (int8)
    stream_rule_elf: RelativePath | None = None
    stream_reference: RelativePath | None = None
    stream: StreamDecision | None = None  # the rule eenn_infer_stream applies (firmware built before it: None)
    memory: MemoryFigures
    sizes: Sizes
    budget: Budget
    hashes: dict[RelativePath, Sha256] = Field(default_factory=dict)  # of every file in named_files()

    file: ClassVar[str] = MANIFEST_FILE
    missing: ClassVar[str] = "not a firmware folder (no firmware.json): make one with `eenn-tvm build`"
    remedy: ClassVar[str] = "run `eenn-tvm build` again"

    @model_validator(mode="after")
    def _runs_on_its_board(self) -> FirmwareManifest:
        if self.core not in CORES:
            raise ValueError(f"target: expected one of {', '.join(CORES)}, got {self.core!r}")
        if self.machine != CORES[self.core].board.machine:
            raise ValueError(f"machine: {self.core} runs on {CORES[self.core].board.machine}, not {self.machine!r}")
        if self.device_segments > self.segments:
            raise ValueError(f"device_segments: more than segments ({self.segments})")
        if (self.hand_over is None) != (self.device_segments == self.segments):
            raise ValueError("hand_over: given exactly when the device runs only the first segments")
        if (self.int8 is None) != (self.dtype == "float32"):
            raise ValueError("int8: given exactly when dtype is int8")
        if self.int8_input is not None and self.dtype != "int8":
            raise ValueError("int8_input: only an int8 firmware has an int8 entry point")
        if (self.stream_rule_elf is None) != (self.stream_reference is None):
            raise ValueError("stream_rule_elf and stream_reference: both or neither")
        if self.dtype == "int8" and (self.stream_rule_elf is None) != (self.stream is None):
            raise ValueError("stream: an int8 firmware's stream rule goes with its stream_rule_elf")
        if self.int8 is not None and len(self.int8.thresholds) != len(self.exits):
            raise ValueError(f"int8: thresholds: one per exit ({len(self.exits)})")
        if self.int8 is not None and not self.int8.onnx.endswith(".onnx"):
            raise ValueError(f"int8: onnx: an ONNX file, not {self.int8.onnx!r}")
        # the ONNX model, or a host module: the early-exit network's, or an int8 model's integer one
        suffix = ".onnx" if self.kind == "model" and self.dtype == "float32" else ".so"
        if self.reference is not None and not self.reference.endswith(suffix):
            raise ValueError(f"reference: a {self.kind} is checked against a {suffix} file, not {self.reference!r}")
        return self

    def named_files(self) -> list[str]:
        int8_onnx = self.int8.onnx if self.int8 else None
        int8_elf = self.int8_input.elf if self.int8_input else None
        extra = (self.reference, self.stream_elf, int8_onnx, int8_elf, self.stream_rule_elf, self.stream_reference)
        return [self.elf] + [name for name in extra if name]

    def artifact(self, folder: str | Path, name: str) -> Path:
        """The file the manifest names as `name` ("elf", "reference"), checked (see `named_file`)."""
        relative = getattr(self, name)
        if relative is None:
            raise EennError(f"{folder}: has no {name}: {self.remedy}")
        return self.named_file(folder, relative)
