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
from pydantic import AfterValidator, ConfigDict, Field, PrivateAttr, field_validator

from eenn_tvm.catalog import platform_file
from eenn_tvm.documents import UserDocument, validate
from eenn_tvm.errors import EennError
from eenn_tvm.targets.mcu.cores import CORES

KINDS = ("mcu", "host")
REMEDY = "fix the platform file (its fields: docs/cost-model.md)"

Count = Annotated[int, Field(ge=0)]
Amount = Annotated[float, Field(ge=0)]


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError("must be positive")
    return value


class _Typed(UserDocument):
    model_config = ConfigDict(strict=True)  # TOML has types: "fast" is not a frequency


class McuTarget(_Typed):
    kind: Literal["mcu"]
    name: str
    tier: Count
    active_power_w: Amount
    core: str  # one of targets.mcu.cores.CORES
    clock_hz: Amount
    cycles_per_instruction: Amount  # turns QEMU instruction counts into cycles
    memory_bytes: Count = Field(alias="ram_bytes")
    flash_bytes: Count
    macs_per_s: Amount | None = None  # the analytic fallback's throughput
    measured_here: ClassVar[bool] = True  # QEMU counts its instructions on any machine

    @field_validator("core")
    @classmethod
    def _known_core(cls, core: str) -> str:
        if core not in CORES:
            raise ValueError(f"expected one of {', '.join(CORES)}, got {core!r}")
        return core


class HostTarget(_Typed):
    kind: Literal["host"]
    name: str
    tier: Count
    active_power_w: Amount
    memory_bytes: Count
    macs_per_s: Amount | None = None  # the analytic fallback's throughput: needed unless measured here
    measured_here: bool = False  # a host whose latencies this machine can measure
    flash_bytes: ClassVar[None] = None  # parameters live in memory_bytes


Target = Annotated[McuTarget | HostTarget, Field(discriminator="kind")]


class Link(_Typed):
    sender: str = Field(alias="from")
    receiver: str = Field(alias="to")
    bandwidth_bps: Annotated[Amount, AfterValidator(_positive)]
    latency_s: Amount
    energy_j_per_bit_send: Amount
    energy_j_per_bit_receive: Amount

    @property
    def energy_j_per_bit(self) -> float:
        return self.energy_j_per_bit_send + self.energy_j_per_bit_receive

    @property
    def seconds_per_bit(self) -> float:
        return 1.0 / self.bandwidth_bps


class Platform(_Typed):
    name: str
    feature_bits: Count = 32  # bits per element of a tensor handed over a link
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

    @classmethod
    def load(cls, name_or_path: str | Path) -> Platform:
        """A preset name or a TOML file; a bad one is one EennError line naming the file and the field."""
        path = platform_file(name_or_path)
        try:
            document = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise EennError(f"{path.name}: not valid TOML ({err})") from None
        platform = validate(cls, document, path.name, REMEDY, tags=KINDS)
        platform._check(path.name)
        platform._file = path
        return platform

    def _check(self, where: str) -> None:
        names = [t.name for t in self.targets]
        if len(set(names)) != len(names):
            raise EennError(f"{where}: targets: names must be unique, got {names}: {REMEDY}")
        for i, target in enumerate(self.targets):
            if target.kind == "host" and target.macs_per_s is None and not target.measured_here:
                raise EennError(
                    f"{where}: targets[{i}].macs_per_s: missing (a host that is not measured here needs its "
                    f"throughput): {REMEDY}"
                )
        for i, link in enumerate(self.links):
            for key, end in (("from", link.sender), ("to", link.receiver)):
                if end not in names:
                    raise EennError(f"{where}: links[{i}].{key}: no target named {end!r}: {REMEDY}")
