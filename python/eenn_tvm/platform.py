"""Platform descriptions: the targets (microcontroller or host) and the links between them, from TOML.

Presets ship in `targets/platforms/` (`--platform m4-edge`, see catalog.py); any other TOML file with the same
fields works. Errors name the file and the field: `fin.toml: targets[1].active_power_w: missing`. Keys eenn-tvm
does not read (an idle power, a CPU model) may stay in a file as notes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, ClassVar, Literal

import tomllib
from pydantic import Field, PrivateAttr, field_validator, model_validator

from eenn_tvm.catalog import platform_file
from eenn_tvm.documents import Count, NonNegative, Positive, Size, UserDocument, unique_names, validate
from eenn_tvm.errors import EennError
from eenn_tvm.targets.mcu.cores import CORES

KINDS = ("mcu", "host")
REMEDY = "fix the platform file (its fields: docs/cost-model.md)"

# Physics: rates, sizes and powers > 0 (a zero clock or throughput divides by zero), latencies and energies >= 0,
# all finite (TOML can write inf and nan); TOML has types, and "fast" is not a frequency.


class McuTarget(UserDocument):
    kind: Literal["mcu"]
    name: str
    tier: Count
    active_power_w: Positive
    core: str  # one of targets.mcu.cores.CORES
    clock_hz: Positive
    cycles_per_instruction: Positive  # turns QEMU instruction counts into cycles
    memory_bytes: Size = Field(alias="ram_bytes")
    flash_bytes: Size
    macs_per_s: Positive | None = None  # the analytic fallback's throughput
    measured_here: ClassVar[bool] = True  # QEMU counts its instructions on any machine

    @field_validator("core")
    @classmethod
    def _known_core(cls, core: str) -> str:
        if core not in CORES:
            raise ValueError(f"expected one of {', '.join(CORES)}, got {core!r}")
        return core


class HostTarget(UserDocument):
    kind: Literal["host"]
    name: str
    tier: Count
    active_power_w: Positive
    memory_bytes: Size
    macs_per_s: Positive | None = None  # the analytic fallback's throughput: needed unless measured here
    measured_here: bool = False  # a host whose latencies this machine can measure
    flash_bytes: ClassVar[None] = None  # parameters live in memory_bytes


Target = Annotated[McuTarget | HostTarget, Field(discriminator="kind")]


class Link(UserDocument):
    sender: str = Field(alias="from")
    receiver: str = Field(alias="to")
    bandwidth_bps: Positive
    latency_s: NonNegative
    energy_j_per_bit_send: NonNegative
    energy_j_per_bit_receive: NonNegative

    @property
    def energy_j_per_bit(self) -> float:
        return self.energy_j_per_bit_send + self.energy_j_per_bit_receive

    @property
    def seconds_per_bit(self) -> float:
        return 1.0 / self.bandwidth_bps


class Platform(UserDocument):
    name: str
    feature_bits: Size = 32  # bits per element of a tensor handed over a link
    targets: list[Target] = Field(min_length=1)
    links: list[Link] = Field(default_factory=list)
    _file: Path | None = PrivateAttr(None)

    @property
    def file(self) -> Path | None:
        """The TOML file it was read from: its cost data is kept beside it (see costmodel.data)."""
        return self._file

    def target(self, name: str) -> McuTarget | HostTarget:
        for t in self.targets:
            if t.name == name:
                return t
        raise EennError(
            f"platform {self.name} has no target {name!r}: it has {', '.join(t.name for t in self.targets)}"
        )

    def transfer_bits(self, shape) -> int:
        """Bits a tensor of `shape` takes on a link (features are sent at `feature_bits` each)."""
        return math.prod(int(d) for d in shape) * self.feature_bits

    @property
    def device(self) -> McuTarget | HostTarget:
        """The first tier: where the input arrives."""
        return min(self.targets, key=lambda t: t.tier)

    @field_validator("targets")
    @classmethod
    def _unique(cls, targets: list) -> list:
        return unique_names(targets)

    @model_validator(mode="after")
    def _consistent(self) -> Platform:
        names = [t.name for t in self.targets]
        for i, target in enumerate(self.targets):
            if target.kind == "host" and target.macs_per_s is None and not target.measured_here:
                raise ValueError(
                    f"targets[{i}].macs_per_s: missing (a host that is not measured here needs its throughput)"
                )
        for i, link in enumerate(self.links):
            for key, end in (("from", link.sender), ("to", link.receiver)):
                if end not in names:
                    raise ValueError(f"links[{i}].{key}: no target named {end!r}")
        return self

    @classmethod
    def load(cls, name_or_path: str | Path) -> Platform:
        """A preset name or a TOML file; a bad one is one EennError line naming the file and the field."""
        path = platform_file(name_or_path)
        try:
            document = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise EennError(f"{path.name}: not valid TOML ({err}): {REMEDY}") from None
        platform = validate(cls, document, path.name, REMEDY, tags=KINDS)
        platform._file = path
        return platform
