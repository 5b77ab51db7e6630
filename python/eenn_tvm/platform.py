"""Platform descriptions: the targets (microcontroller or host) and the links between them, from TOML.

Presets ship in `targets/platforms/` (`--platform m4-edge`); any other TOML file with the same fields works.
Errors name the file and the field: `fin.toml: targets[1].active_power_w: missing`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

from eenn_tvm import targets
from eenn_tvm.errors import EennError
from eenn_tvm.targets.mcu.cores import CORES

PRESETS = Path(targets.__file__).resolve().parent / "platforms"

KINDS = ("mcu", "host")


@dataclass(frozen=True)
class Target:
    name: str
    kind: str  # "mcu" or "host"
    tier: int
    active_power_w: float
    idle_power_w: float
    memory_bytes: int  # RAM of an MCU, memory of a host
    core: str | None = None  # MCU: one of targets.mcu.cores.CORES
    clock_hz: float | None = None
    cycles_per_instruction: float | None = None  # MCU: turns QEMU instruction counts into cycles
    flash_bytes: int | None = None
    macs_per_s: float | None = None  # the analytic fallback's throughput
    measured_here: bool = False  # a host whose latencies this machine can measure
    cpu: str = ""

    @property
    def measurable(self) -> bool:
        return self.kind == "mcu" or self.measured_here


@dataclass(frozen=True)
class Link:
    source: str
    target: str
    bandwidth_bps: float
    latency_s: float
    energy_j_per_bit_send: float
    energy_j_per_bit_receive: float

    @property
    def energy_j_per_bit(self) -> float:
        return self.energy_j_per_bit_send + self.energy_j_per_bit_receive

    @property
    def seconds_per_bit(self) -> float:
        return 1.0 / self.bandwidth_bps


@dataclass(frozen=True)
class Platform:
    name: str
    description: str
    feature_bits: int
    targets: list[Target]
    links: list[Link] = field(default_factory=list)

    def target(self, name: str) -> Target:
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
    def device(self) -> Target:
        """The first tier: where the input arrives."""
        return min(self.targets, key=lambda t: t.tier)


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS.glob("*.toml"))


def platform_file(name_or_path: str | Path) -> Path:
    """The TOML file of a preset name or a path."""
    path = Path(name_or_path)
    if not path.suffix and (PRESETS / f"{path}.toml").is_file():
        path = PRESETS / f"{path}.toml"
    if not path.is_file():
        raise EennError(f"{name_or_path}: no such platform file or preset (presets: {', '.join(preset_names())})")
    return path


def load_platform(name_or_path: str | Path) -> Platform:
    path = platform_file(name_or_path)
    try:
        document = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise EennError(f"{path.name}: not valid TOML ({err})") from None
    platform = _platform(document, _Fields(path.name))
    check_physics(platform, path.name)
    return platform


# Interim, until the platform has a schema (issue 13, phase 2): what physics asks of each number, by field.
_POSITIVE = {
    "feature_bits",
    "clock_hz",
    "cycles_per_instruction",
    "macs_per_s",
    "memory_bytes",
    "flash_bytes",
    "active_power_w",
    "bandwidth_bps",
}
_NOT_NEGATIVE = {"idle_power_w", "latency_s", "energy_j_per_bit_send", "energy_j_per_bit_receive"}


def check_physics(platform: Platform, where: str) -> None:
    """Rates, sizes and powers finite and > 0 (a zero clock or throughput divides by zero), latencies and energies
    finite and >= 0: one line naming the field otherwise."""
    tables = [("", {"feature_bits": platform.feature_bits})]
    tables += [(f"targets[{i}].", t.__dict__) for i, t in enumerate(platform.targets)]
    tables += [(f"links[{i}].", link.__dict__) for i, link in enumerate(platform.links)]
    for at, fields in tables:
        for key, value in fields.items():
            if value is None or (key not in _POSITIVE and key not in _NOT_NEGATIVE):
                continue
            if not math.isfinite(value) or value < 0 or (key in _POSITIVE and value == 0):
                name = "ram_bytes" if key == "memory_bytes" and fields["kind"] == "mcu" else key  # its TOML name
                bound = "> 0" if key in _POSITIVE else ">= 0"
                raise EennError(f"{where}: {at}{name}: must be finite and {bound}, got {value}")


class _Fields:
    """Reads typed fields, naming the file and the field in every error."""

    def __init__(self, where: str):
        self.where = where

    def get(self, table: dict, key: str, kind: type, at: str, default=...):
        if key not in table:
            if default is ...:
                raise EennError(f"{self.where}: {at}{key}: missing")
            return default
        value = table[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise EennError(f"{self.where}: {at}{key}: expected {kind.__name__}, got {value!r}")
        if kind in (int, float) and value < 0:
            raise EennError(f"{self.where}: {at}{key}: must not be negative, got {value!r}")
        return value

    def fail(self, at: str, message: str):
        raise EennError(f"{self.where}: {at}{message}")


def _platform(doc: dict, f: _Fields) -> Platform:
    tables = f.get(doc, "targets", list, "")
    if not tables:
        f.fail("", "targets: at least one [[targets]] table is needed")
    targets = [_target(t, f, f"targets[{i}].") for i, t in enumerate(tables)]
    names = [t.name for t in targets]
    if len(set(names)) != len(names):
        f.fail("", f"targets: names must be unique, got {names}")
    links = [_link(t, f, f"links[{i}].", names) for i, t in enumerate(f.get(doc, "links", list, "", []))]
    return Platform(
        f.get(doc, "name", str, ""),
        f.get(doc, "description", str, "", ""),
        f.get(doc, "feature_bits", int, "", 32),
        targets,
        links,
    )


def _target(t: dict, f: _Fields, at: str) -> Target:
    kind = f.get(t, "kind", str, at)
    if kind not in KINDS:
        f.fail(at, f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    common = {
        "name": f.get(t, "name", str, at),
        "kind": kind,
        "tier": f.get(t, "tier", int, at),
        "active_power_w": f.get(t, "active_power_w", float, at),
        "idle_power_w": f.get(t, "idle_power_w", float, at, 0.0),
        "macs_per_s": f.get(t, "macs_per_s", float, at, None),
        "clock_hz": f.get(t, "clock_hz", float, at, None),
    }
    if kind == "mcu":
        core = f.get(t, "core", str, at)
        if core not in CORES:
            f.fail(at, f"core: expected one of {', '.join(CORES)}, got {core!r}")
        common["clock_hz"] = f.get(t, "clock_hz", float, at)
        return Target(
            **common,
            core=core,
            memory_bytes=f.get(t, "ram_bytes", int, at),
            flash_bytes=f.get(t, "flash_bytes", int, at),
            cycles_per_instruction=f.get(t, "cycles_per_instruction", float, at),
            measured_here=True,
        )
    if common["macs_per_s"] is None and not t.get("measured_here", False):
        f.fail(at, "macs_per_s: missing (a host that is not measured here needs its throughput)")
    return Target(
        **common,
        memory_bytes=f.get(t, "memory_bytes", int, at),
        cpu=f.get(t, "cpu", str, at, ""),
        measured_here=f.get(t, "measured_here", bool, at, False),
    )


def _link(t: dict, f: _Fields, at: str, names: list[str]) -> Link:
    ends = [f.get(t, key, str, at) for key in ("from", "to")]
    for key, end in zip(("from", "to"), ends):
        if end not in names:
            f.fail(at, f"{key}: no target named {end!r}")
    bandwidth = f.get(t, "bandwidth_bps", float, at)
    if bandwidth <= 0:
        f.fail(at, "bandwidth_bps: must be positive")
    return Link(
        ends[0],
        ends[1],
        bandwidth,
        f.get(t, "latency_s", float, at),
        f.get(t, "energy_j_per_bit_send", float, at),
        f.get(t, "energy_j_per_bit_receive", float, at),
    )
