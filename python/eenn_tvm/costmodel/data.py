"""The cost data of a platform: the measurements `profile` grows (JSON lines, one per workload and target) and
the cost model trained on them, and where both are kept.

Beside the platform's TOML file (`my.toml` -> `my.jsonl`, `my.model.json`), or in the cache (`$EENN_CACHE/costs/`)
where that folder cannot be written (a preset inside an installed package); the measurements a preset ships with
are read from beside it. Never from the working directory.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from eenn_tvm.cache import CACHE
from eenn_tvm.documents import Compact, Count, Finite, NonNegative, Positive, validate
from eenn_tvm.errors import EennError
from eenn_tvm.outputs import write_file_atomically
from eenn_tvm.platform import Platform


class Measurement(Compact):
    """One workload measured on one target."""

    workload: str  # its name and function key, `name:key`
    name: str
    kind: str  # a generated layer kind, or "segment" (of a real model)
    target: str
    features: dict[str, Finite]  # see costmodel.features.FEATURES
    work: NonNegative  # MACs plus elementwise operations
    latency_s: Positive
    energy_j: NonNegative
    instructions: Count | None = None  # a microcontroller: counted in QEMU

    @property
    def function_key(self) -> str:
        return self.workload.rsplit(":", 1)[-1]


@dataclass(frozen=True)
class CostFiles:
    measurements: Path
    model: Path

    @classmethod
    def in_folder(cls, folder: Path, stem: str) -> CostFiles:
        return cls(folder / f"{stem}.jsonl", folder / f"{stem}.model.json")

    @classmethod
    def home(cls, platform: Platform) -> CostFiles:
        """Where `profile` writes: beside the platform file where that folder can be written, else the cache."""
        beside = platform.file.parent
        if os.access(beside, os.W_OK):
            return cls.in_folder(beside, platform.file.stem)
        return cls.in_folder(CACHE / "costs", platform.file.stem)

    @classmethod
    def search_order(cls, platform: Platform) -> list[CostFiles]:
        """Where a platform's cost data is looked for: where `profile` writes, then beside the platform file."""
        home, beside = cls.home(platform), cls.in_folder(platform.file.parent, platform.file.stem)
        return [home] if home == beside else [home, beside]


def read_measurements(path: Path) -> list[Measurement]:
    if not path.is_file():
        return []
    rows = []
    try:
        text = path.read_text()
    except (UnicodeDecodeError, OSError) as err:
        raise EennError(f"{path}: cannot be read as text ({err}): delete the file") from None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            raise EennError(f"{where}: not a JSON object: delete the line or the file")
        rows.append(validate(Measurement, data, where, "delete the line or the file"))
    return rows


def append_measurement(path: Path, row: Measurement) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(row.model_dump()) + "\n")


def write_measurements(path: Path, rows: list[Measurement]) -> None:
    """Written beside and renamed over `path`: a reader never sees half the file."""
    write_file_atomically(path, "".join(json.dumps(r.model_dump()) + "\n" for r in rows))
