"""The package's shape, read from its source with `ast`: no import cycles, no relative import that climbs out of its
folder, the network and the placement independent of the microcontroller backend, and a command line that starts
without loading TVM and the other heavy libraries."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

# Where each part of the package lives in the repository (pyproject.toml's package-dir).
ROOTS = {
    "eenn_tvm": REPO / "python" / "eenn_tvm",
    "eenn_tvm.passes": REPO / "passes",
    "eenn_tvm.targets": REPO / "targets",
}
HEAVY = ("tvm", "onnx", "onnxruntime", "xgboost", "matplotlib", "scipy", "torch")


def _modules() -> dict[str, ast.Module]:
    found = {}
    for package, folder in ROOTS.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            name = ".".join((package, *(parts[:-1] if parts[-1] == "__init__" else parts)))
            found[name] = ast.parse(path.read_text(), str(path))
    return found


MODULES = _modules()
PACKAGES = {name for name in MODULES if any(other.startswith(name + ".") for other in MODULES)}


def _runtime_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, in functions too, except those under `if TYPE_CHECKING:` (never executed)."""
    skipped = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for stmt in block.body
        for node in ast.walk(stmt)
    }
    return [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom) and id(n) not in skipped]


def _named(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The modules an import statement names (`from a import b` names a.b where b is a module, else a)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        here = module.split(".") if module in PACKAGES else module.split(".")[:-1]
        base = ".".join(here[: len(here) - node.level + 1] + ([base] if base else []))
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]


def _loads(module: str, node: ast.Import | ast.ImportFrom) -> set[str]:
    """The package modules an import runs: the module, and the packages above it (their __init__ runs first) that
    are not above the importing module too (those are being initialised already)."""
    above_me = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
    loaded = set()
    for name in _named(module, node):
        parts = name.split(".")
        loaded |= {".".join(parts[:i]) for i in range(1, len(parts))} - above_me
        loaded.add(name)
    return (loaded & MODULES.keys()) - {module}


GRAPH = {m: set().union(*(_loads(m, n) for n in _runtime_imports(tree))) for m, tree in MODULES.items()}


def _reachable(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in GRAPH[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def test_the_scan_sees_the_whole_package():
    assert {"eenn_tvm.cli", "eenn_tvm.passes.split", "eenn_tvm.targets.mcu.build", "eenn_tvm.network"} <= MODULES.keys()
    assert {"eenn_tvm.documents", "eenn_tvm.placement", "eenn_tvm.placement.problem_file"} <= GRAPH["eenn_tvm.plan"]


def test_no_import_cycle():
    assert sorted(m for m in GRAPH if m in _reachable(m)) == []


def test_no_relative_import_climbs_out_of_its_folder():
    climbing = [
        f"{module}: from {'.' * node.level}{node.module or ''} import ..."
        for module, tree in MODULES.items()
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level > 1
    ]
    assert climbing == []


@pytest.mark.parametrize("module", ["eenn_tvm.network", "eenn_tvm.placement.segments", "eenn_tvm.costmodel.workloads"])
def test_the_network_and_its_placement_do_not_need_the_firmware_builder(module):
    reached = {m for m in _reachable(module) if m.startswith("eenn_tvm.targets.mcu")}
    assert reached <= {"eenn_tvm.targets.mcu", "eenn_tvm.targets.mcu.cores"}  # the cores a platform file may name


def test_the_command_line_starts_without_the_heavy_libraries():
    code = "import sys, eenn_tvm.cli; print(' '.join(sorted(set(sys.modules) & set(sys.argv[1:]))))"
    loaded = subprocess.run([sys.executable, "-c", code, *HEAVY], capture_output=True, text=True, check=True)
    assert loaded.stdout.split() == []
    eenn_tvm = Path(sys.executable).parent / "eenn-tvm"
    shown = subprocess.run([eenn_tvm, "--help"], capture_output=True, text=True)
    assert shown.returncode == 0 and all(c in shown.stdout for c in ("augment", "compile", "profile", "verify"))
