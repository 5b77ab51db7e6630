"""Seeded random mutations of a document (parsed JSON or TOML) and of a data file (.npz), for the fuzz tests: what a
careless edit, a bad merge, a damaged download or a hostile hand leaves in a file. Deterministic for a seed; each
mutation says what it did."""

from __future__ import annotations

import copy
import io
import json
import math
import random
import re
import zipfile

import numpy as np

# Values that break assumptions: wrong types, non-finite and out-of-range numbers, paths out of a folder.
ODD_VALUES = [
    None,
    True,
    False,
    0,
    -1,
    1,
    0.5,
    2.5,
    -1e-9,
    1e308,
    10**30,
    math.nan,
    math.inf,
    -math.inf,
    "",
    "x",
    "../outside.bin",
    "/etc/passwd",
    "a" * 300,
    [],
    {},
    [1, 2],
    {"k": 1},
]


def mutations(document, seed: int, count: int = 3) -> tuple[object, list[str]]:
    """`document` (not changed) with 1 to `count` random mutations, and what each was."""
    rng = random.Random(seed)
    document = copy.deepcopy(document)
    done = []
    for _ in range(rng.randint(1, count)):
        document, what = _one(document, rng)
        done.append(what)
    return document, done


def _one(document, rng: random.Random):
    places = list(_places(document, ()))
    if not places:
        return rng.choice(ODD_VALUES), "replaced the whole document"
    path = rng.choice(places)
    parent = _at(document, path[:-1])
    key = path[-1]
    value = parent[key]
    kind = rng.choice(["odd", "odd", "number", "drop", "copy", "swap", "string"])
    if kind == "number" and _is_number(value):
        new = rng.choice([-value, value * 10 ** rng.randint(1, 12), 0, value + 1, -abs(value) - 1, float(value) / 3])
    elif kind == "drop":
        del parent[key]
        return document, f"dropped {_shown(path)}"
    elif kind == "copy" and isinstance(parent, list):
        parent.insert(key, copy.deepcopy(value))
        return document, f"doubled {_shown(path)}"
    elif kind == "swap":
        other = _at(document, rng.choice(places))
        new = copy.deepcopy(other)
    elif kind == "string":
        strings = [v for v in (_at(document, p) for p in places) if isinstance(v, str)]
        new = rng.choice(strings) if strings else "x"
    else:
        new = rng.choice(ODD_VALUES)
    parent[key] = new
    return document, f"set {_shown(path)} to {_short(new)}"


def _places(node, path):
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return
    for key, value in list(items):
        yield (*path, key)
        yield from _places(value, (*path, key))


def _at(document, path):
    for key in path:
        document = document[key]
    return document


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _shown(path) -> str:
    return "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in path).lstrip(".") or "(root)"


def _short(value) -> str:
    text = repr(value)
    return text if len(text) < 40 else text[:37] + "..."


def to_toml(document) -> str:
    """A parsed TOML document written back (None, which TOML cannot say, is left out): tables of arrays as [[name]],
    everything else inline."""
    if not isinstance(document, dict):
        return f"value = {_toml_value(document)}\n"
    lines, tables = [], []
    for key, value in document.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            tables.append((key, value))
        elif value is not None:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for key, items in tables:
        for item in items:
            lines.append(f"\n[[{_toml_key(key)}]]")
            lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in item.items() if v is not None]
    return "\n".join(lines) + "\n"


def _toml_key(key) -> str:
    key = str(key)
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value if v is not None) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items() if v is not None) + "}"
    return json.dumps(str(value))


def npz_mutation(arrays: dict, seed: int) -> tuple[bytes, str]:
    """A .npz file made from `arrays` (not changed) with one random defect, and what it is: damaged bytes, arrays of
    other types, shapes or values, a header that lies about its array's size, pickled objects."""
    rng = random.Random(seed)
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    kind = rng.choice(["flip", "cut", "dtype", "shape", "value", "drop", "extra", "lying-header", "objects"])
    name = rng.choice(sorted(arrays))
    a = arrays[name]
    if kind == "dtype":
        arrays[name] = a.astype(
            rng.choice([np.float16, np.float64, np.int8, np.uint8, np.int64, np.bool_, np.complex64])
        )
    elif kind == "shape":
        arrays[name] = rng.choice(
            [a[:0], a[:1], a.reshape(len(a), -1), a[..., None], a.ravel()[:1].reshape(()), a[:-1]]
        )
    elif kind == "value":
        arrays[name] = a.copy()
        arrays[name].flat[rng.randrange(a.size)] = rng.choice(
            [np.nan, np.inf, -1.0, 1e12] if a.dtype.kind == "f" else [-1, 10**9]
        )
    elif kind == "drop":
        del arrays[name]
    elif kind == "extra":
        arrays[rng.choice(["groups", "z", name + "_"])] = np.arange(rng.choice([0, 3, len(a)]))
    elif kind == "objects":
        arrays[name] = np.array([{"x": 1}] * 3, dtype=object)
    members = {k: _npy(v) for k, v in arrays.items()}
    if kind == "lying-header":
        members[name] = _npy(a, (10**12, *a.shape[1:]))
    data = _zip(members)
    if kind == "flip":
        data = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        data = bytes(data)
    elif kind == "cut":
        data = data[: rng.randrange(len(data))]
    shape = f" -> {arrays[name].dtype}{arrays[name].shape}" if name in arrays and kind in ("dtype", "shape") else ""
    return data, f"{kind} {name}{shape}"


def _npy(array: np.ndarray, shape: tuple | None = None) -> bytes:
    """The .npy form of `array`, its header declaring `shape` (default: its own)."""
    out = io.BytesIO()
    if shape is None:
        np.save(out, array, allow_pickle=True)
        return out.getvalue()
    header = {"descr": np.lib.format.dtype_to_descr(array.dtype), "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(out, header)
    return out.getvalue() + array.tobytes()


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members.items():
            archive.writestr(f"{name}.npy", data)
    return out.getvalue()
