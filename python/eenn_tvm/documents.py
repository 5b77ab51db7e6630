"""Typed documents: the files the stages hand on (plan.json, firmware.json, a placement problem, a platform) as
pydantic models, so that reading one checks it and a bad one is one line naming the file, the field and what to do:
`plan.json: exits[1].threshold: must be a number between 0 and 1: run `eenn-tvm augment` again`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, model_serializer

from eenn_tvm.errors import EennError

D = TypeVar("D", bound=BaseModel)


class Document(BaseModel):
    """A section of a file eenn-tvm writes itself: every field known, types exact (an int is not a float)."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


class FolderDocument(Document):
    """A document kept as one file in an output folder (plan.json, firmware.json)."""

    file: ClassVar[str]
    missing: ClassVar[str]  # what to say of a folder without the file
    remedy: ClassVar[str]  # what to do about a bad one

    def save(self, folder: str | Path) -> None:
        write_json(self, Path(folder) / self.file)

    @classmethod
    def load(cls, folder: str | Path):
        path = Path(folder) / cls.file
        if not path.is_file():
            raise EennError(f"{folder}: {cls.missing}")
        return read_json(cls, path, cls.remedy)

    def to_json(self) -> dict:
        return self.model_dump(by_alias=True)


class UserDocument(BaseModel):
    """A section of a file people write: numbers in any JSON form, fields eenn-tvm does not read are ignored."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Compact(UserDocument):
    """Written without its unset optional fields (None), as people write them."""

    @model_serializer(mode="wrap")
    def _without_none(self, handler) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


def validate(model: type[D], data: Any, where: str, remedy: str, tags: tuple[str, ...] = ()) -> D:
    """`model` from parsed data; the first problem as one EennError line. `tags` are the values of a discriminator
    field (e.g. a target's `kind`), which pydantic puts into the location of the error and people do not."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise EennError(f"{where}: {describe(err.errors()[0], tags)}: {remedy}") from None


def read_json(model: type[D], path: Path, remedy: str) -> D:
    """A JSON file as `model`; a missing, unparsable or invalid file is one EennError line."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise EennError(f"{path}: no such file: {remedy}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise EennError(f"{path}: not valid JSON ({err}): {remedy}") from None
    return validate(model, data, str(path), remedy)


def write_json(document: BaseModel, path: Path) -> None:
    """Written beside and renamed over `path`: a reader never sees half a document."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(document.model_dump(by_alias=True), indent=2) + "\n")
    partial.replace(path)


def describe(error: dict, tags: tuple[str, ...] = ()) -> str:
    """`targets[1].kind: expected one of mcu, host, got 'gpu'` from one pydantic error."""
    loc = [part for part in error["loc"] if part not in tags]
    kind, given, ctx = error["type"], error.get("input"), error.get("ctx", {})
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        loc.append(ctx["discriminator"].strip("'"))
        if kind == "union_tag_not_found":
            return f"{_where(loc)}: missing"
        return f"{_where(loc)}: expected {_listed(ctx['expected_tags'])}, got {ctx['tag']!r}"
    return f"{_where(loc)}: {_message(kind, given, ctx, error['msg'])}"


def _message(kind: str, given: Any, ctx: dict, fallback: str) -> str:
    if kind == "missing":
        return "missing"
    if kind == "extra_forbidden":
        return "not a field of this document"
    if kind == "value_error":
        return str(ctx["error"])
    if kind == "literal_error":
        return f"expected {_listed(ctx['expected'])}, got {given!r}"
    if kind == "greater_than_equal" and ctx.get("ge") == 0:
        return f"must not be negative, got {given!r}"
    expected = {"float": "float", "int": "int", "string": "str", "bool": "bool", "list": "list", "dict": "table"}
    for prefix, name in expected.items():
        if kind.startswith(prefix) and kind.endswith(("_type", "_parsing")):
            return f"expected {name}, got {given!r}"
    return fallback[0].lower() + fallback[1:]


def _listed(expected: str) -> str:
    """pydantic's "'mcu', 'host'" or "'mcu' or 'host'" -> one of mcu, host; "1" -> 1"""
    values = re.findall(r"'([^']*)'", expected) or re.split(r",\s*|\s+or\s+", expected)
    return values[0] if len(values) == 1 else f"one of {', '.join(values)}"


def _where(loc: list) -> str:
    """('targets', 1, 'kind') -> targets[1].kind"""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or "(the document)"
