"""Seeded random mutations of a document (parsed JSON or TOML), for the fuzz tests: what a careless edit, a bad
merge or a hostile hand leaves in a file. Deterministic for a seed; each mutation says what it did."""

from __future__ import annotations

import copy
import json
import math
import random
import re

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
