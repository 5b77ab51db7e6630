"""Typed documents: the files the stages hand on (plan.json, firmware.json, a placement problem, a platform, a cost
model) as pydantic models, so that reading one checks it and a bad one is one line naming the file, the field and
what to do: `plan.json: exits[1].threshold: must be a number between 0 and 1: run `eenn-tvm augment` again`.

Numbers are checked as physics asks (`Finite`, `NonNegative`, `Positive`, `Fraction`): NaN, infinities, strings and
booleans are never numbers. A document kept in an output folder names other files in it only by relative paths
that stay inside it (`RelativePath`, and `FolderDocument.named_file` once symlinks are resolved), each with the
SHA-256 it was written with: a file swapped or edited since is refused. The hashes guard against accidents (a file
copied over from another run, a half-finished edit), not against whoever wrote the folder: loading a module from a
folder runs its native code, so load only folders you trust.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_serializer

from eenn_tvm.errors import EennError
from eenn_tvm.outputs import Log, write_file_atomically

D = TypeVar("D", bound=BaseModel)


def _number_check(low: float, high: float, low_included: bool, bounds: str):
    def check(value: Any) -> int | float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"expected a number, got {value!r}")
        try:
            finite = math.isfinite(value)
        except OverflowError:  # an integer too large for a float
            finite = False
        if not finite or not (low <= value if low_included else low < value) or value > high:
            raise ValueError(f"must be a finite number{bounds}, got {value!r}")
        return value

    return BeforeValidator(check)


# Numbers as physics asks for them (kept as written: an int stays an int).
Finite = Annotated[int | float, _number_check(-math.inf, math.inf, False, "")]
NonNegative = Annotated[int | float, _number_check(0, math.inf, True, " >= 0")]  # times, energies, MACs
Positive = Annotated[int | float, _number_check(0, math.inf, False, " > 0")]  # rates, clocks, powers, sizes
Fraction = Annotated[int | float, _number_check(0, 1, True, " between 0 and 1")]  # shares, accuracies
Count = Annotated[int, Field(ge=0)]
Size = Annotated[int, Field(gt=0)]  # a dimension, a byte budget


def _inside(path: str) -> str:
    parts = PurePosixPath(path).parts
    if not path or "\0" in path or PurePosixPath(path).is_absolute() or ".." in parts or parts in ((), (".",)):
        raise ValueError(f"must be a path relative to the folder and inside it, got {path!r}")
    return path


RelativePath = Annotated[str, AfterValidator(_inside)]  # a file an output folder names: relative, no `..`


def _a_sha256(digest: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise ValueError(f"must be a SHA-256 (64 lowercase hex digits), got {digest!r}")
    return digest


Sha256 = Annotated[str, AfterValidator(_a_sha256)]


class Document(BaseModel):
    """A section of a file eenn-tvm writes itself: every field known, types exact (an int is not a float), numbers
    finite unless a field says otherwise."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True, allow_inf_nan=False)


class FolderDocument(Document):
    """A document kept as one file in an output folder (plan.json, firmware.json), naming other files in it.

    Subclasses have a `hashes` field (relative path -> SHA-256, last among their fields) and say which files they
    name (`named_files`)."""

    file: ClassVar[str]
    missing: ClassVar[str]  # what to say of a folder without the file
    remedy: ClassVar[str]  # what to do about a bad one

    def named_files(self) -> list[str]:
        raise NotImplementedError

    def record_hashes(self, folder: str | Path) -> None:
        """The SHA-256 of every file the document names, as they are now in `folder` (call it once they are all
        written; a command that only adds a section keeps the hashes it read)."""
        self.hashes = {name: sha256_of(Path(folder) / name) for name in self.named_files()}

    def check_named_files(self, folder: str | Path) -> None:
        """Every file the document names checked as `named_file` does: before the folder is copied as a whole."""
        for relative in self.named_files():
            self.named_file(folder, relative)

    def named_file(self, folder: str | Path, relative: str) -> Path:
        """`relative`, a file the document names, in `folder`: inside it once symlinks are resolved, there, and the
        very file the document was written with; anything else is one EennError line."""
        folder = Path(folder)
        path = folder / relative
        try:
            real = path.resolve()
            inside = real.is_relative_to(folder.resolve())
        except (OSError, RuntimeError):  # a symlink loop
            raise EennError(f"{folder}: {relative} is a symlink that leads nowhere: {self.remedy}") from None
        if not inside:
            raise EennError(f"{folder}: {relative} leads outside the folder (to {real}): {self.remedy}")
        if not path.is_file():
            raise EennError(f"{folder}: {relative} is missing: {self.remedy}")
        try:
            same = sha256_of(path) == self.hashes.get(relative)
        except OSError as err:
            raise EennError(f"{path}: cannot be read ({err.strerror}): {self.remedy}") from None
        if not same:
            raise EennError(f"{path}: changed since {self.file} was written (its SHA-256 differs): {self.remedy}")
        return path

    def save(self, folder: str | Path, log: Log = lambda _: None) -> None:
        write_json(self, Path(folder) / self.file, log)

    @classmethod
    def load(cls, folder: str | Path):
        path = Path(folder) / cls.file
        if not path.is_file():
            raise EennError(f"{folder}: {cls.missing}")
        document = read_json(cls, path, cls.remedy)
        unhashed = [name for name in document.named_files() if name not in document.hashes]
        if unhashed:
            raise EennError(f"{path}: hashes: no SHA-256 for {unhashed[0]}: {cls.remedy}")
        return document

    def to_json(self) -> dict:
        return self.model_dump(by_alias=True)


class UserDocument(BaseModel):
    """A section of a file people write: types as written (a string is not a number, though an int may stand for a
    float), fields eenn-tvm does not read are ignored."""

    model_config = ConfigDict(extra="ignore", strict=True, populate_by_name=True)


class Compact(UserDocument):
    """Written without its unset optional fields (None), as people write them."""

    @model_serializer(mode="wrap")
    def _without_none(self, handler) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


def unique_names(items: list, what: str = "names") -> list:
    """A validator's check: the `name` of every item differs."""
    names = [item.name for item in items]
    if len(set(names)) != len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise ValueError(f"{what} must be unique, {twice!r} appears {names.count(twice)} times")
    return items


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def validate(model: type[D], data: Any, where: str, remedy: str, tags: tuple[str, ...] = ()) -> D:
    """`model` from parsed data; the first problem as one EennError line. `tags` are the values of a discriminator
    field (e.g. a target's `kind`), which pydantic puts into the location of the error and people do not."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise EennError(f"{where}: {describe(err.errors()[0], tags)}: {remedy}") from None


def read_json(model: type[D], path: Path, remedy: str) -> D:
    """A JSON file as `model`; a missing, unreadable, unparsable or invalid file is one EennError line."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise EennError(f"{path}: no such file: {remedy}") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise EennError(f"{path}: not valid JSON ({str(err) or type(err).__name__}): {remedy}") from None
    except OSError as err:
        raise EennError(f"{path}: cannot be read ({err.strerror}): {remedy}") from None
    return validate(model, data, str(path), remedy)


def write_json(document: BaseModel, path: Path, log: Log = lambda _: None) -> None:
    """Written beside and renamed over `path`: a reader never sees half a document, a failure leaves nothing."""
    write_file_atomically(Path(path), json.dumps(document.model_dump(by_alias=True), indent=2) + "\n", log)


def describe(error: dict, tags: tuple[str, ...] = ()) -> str:
    """`targets[1].kind: expected one of mcu, host, got 'gpu'` from one pydantic error."""
    loc = [part for part in error["loc"] if part not in tags]
    kind, given, ctx = error["type"], error.get("input"), error.get("ctx", {})
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        loc.append(ctx["discriminator"].strip("'"))
        if kind == "union_tag_not_found":
            return f"{_where(loc)}: missing"
        return f"{_where(loc)}: expected {_listed(ctx['expected_tags'])}, got {ctx['tag']!r}"
    message = _message(kind, given, ctx, error["msg"])
    return f"{_where(loc)}: {message}" if loc else message  # a check of the whole names its fields itself


def _message(kind: str, given: Any, ctx: dict, fallback: str) -> str:
    if kind == "missing":
        return "missing"
    if kind == "extra_forbidden":
        return "not a field of this document"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected an object, got {_json_type(given)}"
    if kind == "value_error":
        return str(ctx["error"])
    if kind == "literal_error":
        return f"expected {_listed(ctx['expected'])}, got {given!r}"
    if kind == "greater_than_equal" and ctx.get("ge") == 0:
        return f"must not be negative, got {given!r}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        bound = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}[kind]
        return f"must be {bound} {next(iter(ctx.values())):g}, got {given!r}"
    if kind == "finite_number":
        return f"must be a finite number, got {given!r}"
    expected = {"float": "float", "int": "int", "string": "str", "bool": "bool", "list": "list", "dict": "table"}
    for prefix, name in expected.items():
        if kind.startswith(prefix) and kind.endswith(("_type", "_parsing")):
            return f"expected {name}, got {given!r}"
    return fallback[0].lower() + fallback[1:]


def _json_type(value: Any) -> str:
    names = {list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _listed(expected: str) -> str:
    """pydantic's "'mcu', 'host'" or "'mcu' or 'host'" -> one of mcu, host; "1" -> 1"""
    values = re.findall(r"'([^']*)'", expected) or re.split(r",\s*|\s+or\s+", expected)
    return values[0] if len(values) == 1 else f"one of {', '.join(values)}"


def _where(loc: list) -> str:
    """('targets', 1, 'kind') -> targets[1].kind"""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text
