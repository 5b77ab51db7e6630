"""firmware.json: what `build` made and what `verify` (and a deployment) need to know of it."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import ConfigDict, Field, computed_field

from eenn_tvm.documents import Document, FolderDocument

FORMAT = "eenn-tvm-firmware"
VERSION = 1


class HandOver(Document):
    """The tensor the device's last segment hands to the next tier when its exit does not fire."""

    tensor: str
    shape: list[int]
    dtype: str
    bytes: int


class ExitCost(Document):
    index: int
    point: str
    macs_to_reach: int
    head_macs: int


class MemoryFigures(Document):
    arena_bytes: int
    lower_bound_bytes: int  # the most bytes alive at once
    workspace_bytes: int
    stack_reserved_bytes: int


class Sizes(Document):
    """Bytes the model library takes: flash (code, constants, initial data) and RAM (data, arena, stack)."""

    model_config = ConfigDict(extra="ignore")  # flash and ram are written for people, and computed when read

    code: int
    weights: int
    data: int
    arena: int
    workspace: int
    other_bss: int
    stack: int

    @computed_field
    @property
    def flash(self) -> int:
        return self.code + self.weights + self.data

    @computed_field
    @property
    def ram(self) -> int:
        return self.data + self.arena + self.workspace + self.other_bss + self.stack


class Budget(Document):
    flash: int
    ram: int


class FirmwareManifest(FolderDocument):
    format: Literal["eenn-tvm-firmware"] = FORMAT
    version: Literal[1] = VERSION
    kind: Literal["model", "eenn"]
    model: str
    core: str = Field(alias="target")  # the Cortex-M core it is built for
    machine: str  # the QEMU board that runs it
    kernels: str  # "llvm" or "c"
    input_name: str
    input_shape: list[int]
    classes: int
    segments: int  # of the whole network
    device_segments: int  # the first ones, built here
    hand_over: HandOver | None  # None: the device runs the network to its end
    exits: list[ExitCost]
    total_macs: int | None
    reference: str | None  # relative to the folder: what verify compares with on the host
    elf: str  # relative to the folder
    memory: MemoryFigures
    sizes: Sizes
    budget: Budget

    file: ClassVar[str] = "firmware.json"
    missing: ClassVar[str] = "not a firmware folder (no firmware.json): make one with `eenn-tvm build`"
    remedy: ClassVar[str] = "run `eenn-tvm build` again"
