"""Bad and hostile input through the command line, as a demanding new user would try it (issue 13).

Every case ends with exit code 2 and exactly one line on stderr, `eenn-tvm: error: ...`, never an internal error;
nothing is left behind (no temporary folders, no partial files) and nothing else is touched: the whole folder the
case runs in is snapshotted (names, sizes, modification times) before and after. The case runs with that folder
as the current one, so that `-o .` and `-o ..` mean it.

Then what cannot be a table row: signals during a write, a killed run's leftovers, a damaged feature cache, and
what an output folder looks like when it is replaced.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import REPO
from test_cli import run_cli

from eenn_tvm.heads import Head
from eenn_tvm.outputs import MARKER

AUGMENT = ["augment", "model.onnx", "--data", "data.npz", "--no-cache"]
PRESET = REPO / "targets" / "platforms" / "m4-edge.toml"
PROBLEM = REPO / "examples" / "placement" / "small.json"


# --- what a case sets up in its folder (beside model.onnx and data.npz) --------------------------------------------


def eenn(work: Path, mlp_assets: Path) -> None:
    shutil.copytree(mlp_assets / "eenn", work / "eenn", symlinks=True)


def user_folder(work, _assets):
    (work / "mine").mkdir()
    (work / "mine" / "notes.txt").write_text("the user's own work\n")


def inputs_in_a_folder(work, mlp_assets):
    (work / "inputs").mkdir()
    for name in ("model.onnx", "data.npz"):
        shutil.copy(mlp_assets / name, work / "inputs" / name)


def symlink(work, _assets):
    (work / "elsewhere").mkdir()
    (work / "link").symlink_to(work / "elsewhere")


def text_file(name):
    def setup(work, _assets):
        (work / name).write_text("x,y\n0.1,3\n")

    return setup


def arrays(name, **values):
    def setup(work, _assets):
        np.savez(work / name, **values)

    return setup


def npy(work, _assets):
    np.save(work / "plain.npy", np.zeros((3, 1, 28, 28), np.float32))
    (work / "plain.npy").rename(work / "plain.npz")


def pickled(work, _assets):
    objects = np.empty(300, object)
    objects[:] = [{"not": "numbers"}] * 300
    np.savez(work / "pickled.npz", x=objects, y=np.arange(300) % 10)


def data_with(name, edit):
    def setup(work, mlp_assets):
        d = dict(np.load(mlp_assets / "data.npz"))
        edit(d)
        np.savez(work / name, **d)

    return setup


def streams(**arrays):
    """data.npz as windows of 10 streams (stream, order), then with `arrays` set (None: dropped)."""

    def edit(d):
        n = len(d["y"])
        d["stream"], d["order"] = np.arange(n) // (n // 10), np.arange(n) % (n // 10)
        for name, value in arrays.items():
            d.pop(name) if value is None else d.__setitem__(name, value(n))

    return data_with("s.npz", edit)


def plan_edited(edit):
    def setup(work, mlp_assets):
        eenn(work, mlp_assets)
        path = work / "eenn" / "plan.json"
        path.write_text(edit(json.loads(path.read_text())))

    return setup


def plan_with(path, *value):
    """The plan with the field at `path` set to `value`, or dropped without one."""
    return plan_edited(lambda doc: json.dumps(edited(doc, path, *value)))


def edited(doc, path, *value):
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if value:
        parent[path[-1]] = value[0]
    else:
        del parent[path[-1]]
    return doc


def threshold(value):
    return plan_with(("exits", 0, "threshold"), value)


def widened_exit(doc):
    """Exit 0 said to sit on a map one channel wider than its head was trained on."""
    doc["exits"][0]["shape"][1] += 1
    return doc


def removed(name):
    return lambda work, _assets: (work / name).unlink()


def overwritten(name, data: bytes):
    return lambda work, _assets: (work / name).write_bytes(data)


def symlinked(name, target):
    """`name` (in the folder) made a symlink to `target` beside the folder, outside it."""

    def setup(work, _assets):
        (work / name).unlink()
        (work / name).symlink_to(work / target)

    return setup


def heads_moved_out(work, _assets):
    """eenn/heads replaced by a symlink to a copy of it outside the folder: the same files, reached from outside."""
    shutil.move(work / "eenn" / "heads", work / "heads-elsewhere")
    (work / "eenn" / "heads").symlink_to(work / "heads-elsewhere")


def head_replaced(make):
    """Exit 0's weights replaced: `make(head, path)` writes the file in their place."""

    def setup(work, mlp_assets):
        eenn(work, mlp_assets)
        plan = json.loads((work / "eenn" / "plan.json").read_text())
        path = work / "eenn" / plan["exits"][0]["weights"]
        make(path, plan["exits"][0])

    return setup


def head_of_another_kind(path, planned):
    w, b = np.zeros((planned["shape"][1], 32), np.float32), np.zeros(32, np.float32)
    Head("pool2_mlp", [(w, b), (np.zeros((32, 10), np.float32), np.zeros(10, np.float32))]).save(path)


def firmware_json(text):
    def setup(work, _assets):
        (work / "fw").mkdir()
        (work / "fw" / "firmware.json").write_text(text)

    return setup


def fake_firmware(folder: Path, model: Path) -> None:
    """A firmware folder whose files are no firmware but whose manifest is whole and names them with their SHA-256:
    what verify checks before it runs anything (the data then does not fit its input)."""
    (folder / "bin").mkdir(parents=True)
    (folder / ELF).write_bytes(b"\x7fELF, but no firmware")
    (folder / "reference").mkdir()
    shutil.copy(model, folder / "reference" / "model.onnx")
    names = [ELF, "reference/model.onnx"]
    hashes = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in names}
    manifest = {**MANIFEST, "elf": names[0], "reference": names[1], "hashes": hashes}
    (folder / "firmware.json").write_text(json.dumps(manifest))


def firmware(work, _assets):
    fake_firmware(work / "fw", work / "model.onnx")


def firmware_with(path, *value):
    def setup(work, assets):
        firmware(work, assets)
        manifest = work / "fw" / "firmware.json"
        manifest.write_text(json.dumps(edited(json.loads(manifest.read_text()), path, *value)))

    return setup


def cost_model_with(path, value):
    """A cost model file `profile` could have written (no trees, nothing measured) with one field set."""

    def setup(work, _assets):
        from eenn_tvm.costmodel.features import FEATURES

        doc = {"format": "eenn-tvm-costmodel", "version": 1, "platform": "m4-edge", "features": FEATURES}
        doc |= {"measured": {}, "boosters": {}}
        (work / "t.json").write_text(json.dumps(edited(doc, path, value)))

    return setup


def platform_edited(old, new):
    def setup(work, _assets):
        text = PRESET.read_text()
        assert old in text
        (work / "bad.toml").write_text(text.replace(old, new))

    return setup


def problem_edited(edit):
    def setup(work, _assets):
        doc = json.loads(PROBLEM.read_text())
        (work / "p.json").write_text(json.dumps(edit(doc)))

    return setup


def node_field(i, key, value):
    return lambda doc: edited(doc, ("nodes", i, key), value)


def block_field(i, key, value):
    return lambda doc: edited(doc, ("blocks", i, key), value)


def locked(name):
    """A folder nobody may write: chmod for a normal user, the immutable flag for root (whom modes do not stop)."""

    def setup(work, mlp_assets):
        if name == "eenn":
            eenn(work, mlp_assets)
        else:
            (work / name).mkdir()
        folder = work / name
        if os.geteuid() != 0:
            folder.chmod(0o555)
        elif not shutil.which("chattr") or subprocess.run(["chattr", "+i", folder], capture_output=True).returncode:
            pytest.skip("cannot make a folder unwritable for root here (no chattr +i)")

    return setup


def unlock(work: Path) -> None:
    for folder in (work / "locked", work / "eenn"):
        if folder.exists() and os.geteuid() == 0 and shutil.which("chattr"):
            subprocess.run(["chattr", "-i", folder], capture_output=True)
        elif folder.exists():
            folder.chmod(0o755)


@dataclass
class Case:
    name: str
    args: list[str]
    fragment: str
    setup: tuple = ()
    env: dict = field(default_factory=dict)


def c(name, args, fragment, *setup, env=None):
    return Case(name, [str(a) for a in args], fragment, setup, env or {})


OUT = ["-o", "out"]
RUN = ["run", "eenn", "--data", "data.npz"]
BUILD = ["build", "eenn", "--target", "cortex-m4", *OUT]
MAP = ["map", "eenn", "--platform", "m4-edge"]
VERIFY = ["verify", "fw", "--data", "data.npz"]
COSTED = [*AUGMENT, "--platform", "m4-edge", "--cost-model", "t.json", *OUT]
PROFILE = ["profile", "--platform", "bad.toml", "--workloads", "0"]
MAP_PROBLEM = ["map", "--problem", "p.json"]
Q_DATA = ["--data", "data.npz"]
QUANTIZE = ["quantize", "model.onnx", *Q_DATA]
QUANTIZE_EENN = ["quantize", "eenn", *Q_DATA]
ELF = "bin/eenn_verify.elf"
MANIFEST = {"format": "eenn-tvm-firmware", "version": 2, "kind": "model", "model": "m", "target": "cortex-m4"}
MANIFEST |= {"machine": "mps2-an386", "kernels": "llvm", "input_name": "x", "input_shape": [1, 1, 28, 28]}
MANIFEST |= {"classes": 10, "segments": 1, "device_segments": 1, "hand_over": None, "exits": [], "total_macs": None}
MANIFEST |= {
    "memory": {"arena_bytes": 1, "lower_bound_bytes": 1, "workspace_bytes": 0, "stack_reserved_bytes": 8},
    "sizes": {"code": 1, "weights": 1, "data": 0, "arena": 1, "workspace": 0, "other_bss": 0, "stack": 8},
    "budget": {"flash": 1024, "ram": 1024},
}
CASES = [
    # -o: never the user's files, the command's inputs, the current or home folder, a parent, or through a link
    c("o-a-folder-of-the-users", [*AUGMENT, "-o", "mine"], "eenn-tvm did not write (it holds notes.txt)", user_folder),
    c("o-the-current-folder", [*AUGMENT, "-o", "."], "-o .: is the current folder"),
    c("o-the-current-folder-forced", [*AUGMENT, "-o", ".", "--force"], "-o .: is the current folder"),
    c("o-a-parent-of-the-current-folder", [*AUGMENT, "-o", "..", "--force"], "is a parent of the current folder"),
    c("o-the-root", [*AUGMENT, "-o", "/", "--force"], "is a parent of the current folder"),
    c("o-the-home-folder", [*AUGMENT, "-o", Path.home(), "--force"], "give -o a new folder"),
    c(
        "o-the-folder-of-the-inputs-forced",
        ["augment", "inputs/model.onnx", "--data", "inputs/data.npz", "--no-cache", "-o", "inputs", "--force"],
        "holds inputs/model.onnx, an input of this command",
        inputs_in_a_folder,
    ),
    c(
        "o-builds-over-its-own-augment-folder",
        ["build", "eenn", "--target", "cortex-m4", "-o", "eenn", "--force"],
        "-o eenn: is eenn, an input of this command",
        eenn,
    ),
    c(
        "o-an-augment-output-given-to-build",
        ["build", "model.onnx", "--target", "cortex-m4", "-o", "eenn"],
        "holds an eenn-tvm augment output, not firmware",
        eenn,
    ),
    c("o-a-symlink-forced", [*AUGMENT, "-o", "link", "--force"], "-o link: is a symlink", symlink),
    c("o-a-file", [*AUGMENT, "-o", "data.npz"], "is a file"),
    c("o-under-a-file", [*AUGMENT, "-o", "data.npz/out"], "data.npz is a file, not a folder"),
    c("o-in-an-unwritable-folder", [*AUGMENT, "-o", "locked/out"], "locked is not writable", locked("locked")),
    c(
        "map-into-an-unwritable-folder",
        ["map", "eenn", "--platform", "m4-edge"],
        "eenn is not writable",
        locked("eenn"),
    ),
    # data: checked before anything is inflated, never unpickled, one minimum per class for both files
    c(
        "data-a-text-file",
        ["augment", "model.onnx", "--data", "t.npz", *OUT],
        "is a text file, not an .npz",
        text_file("t.npz"),
    ),
    c("data-a-single-npy", ["augment", "model.onnx", "--data", "plain.npz", *OUT], "is a single .npy array", npy),
    c("data-an-empty-npz", ["augment", "model.onnx", "--data", "e.npz", *OUT], "has no array x or y", arrays("e.npz")),
    c(
        "data-no-samples",
        ["augment", "model.onnx", "--data", "z.npz", *OUT],
        "holds no samples",
        arrays("z.npz", x=np.zeros((0, 1, 28, 28), np.float32), y=np.zeros(0, np.int64)),
    ),
    c(
        "data-x-and-y-of-other-lengths",
        ["augment", "model.onnx", "--data", "d.npz", *OUT],
        "the same number of samples",
        data_with("d.npz", lambda d: d.update(y=d["y"][:-1])),
    ),
    c(
        "data-labels-not-integers",
        ["augment", "model.onnx", "--data", "d.npz", *OUT],
        "labels must be integers 0..9",
        data_with("d.npz", lambda d: d.update(y=d["y"] + 0.5)),
    ),
    c(
        "data-negative-labels",
        ["augment", "model.onnx", "--data", "d.npz", *OUT],
        "labels run from -1 to 8, but the model has 10 classes",
        data_with("d.npz", lambda d: d.update(y=d["y"] - 1)),
    ),
    c(
        "data-nan-in-x",
        ["augment", "model.onnx", "--data", "d.npz", *OUT],
        "x holds NaN or infinite values (in 1 of 1000 samples, the first is sample 7)",
        data_with("d.npz", lambda d: d["x"].__setitem__((7, 0, 3, 3), np.inf)),
    ),
    c(
        "data-pickled-objects",
        ["augment", "model.onnx", "--data", "pickled.npz", *OUT],
        "x holds Python objects",
        pickled,
    ),
    c(
        "data-over-the-size-limit",
        [*AUGMENT, *OUT],
        "over the 0.0001 GB limit: raise it with EENN_MAX_DATA_GB=1",
        env={"EENN_MAX_DATA_GB": "0.0001"},
    ),
    c("data-a-limit-that-is-no-number", [*AUGMENT, *OUT], "EENN_MAX_DATA_GB=lots", env={"EENN_MAX_DATA_GB": "lots"}),
    c(
        "data-too-few-of-a-class",
        ["augment", "model.onnx", "--data", "d.npz", *OUT],
        "too few samples of class 3 (4): at least 10 per class are needed",
        data_with("d.npz", lambda d: d.update(y=np.where((d["y"] == 3) & (np.cumsum(d["y"] == 3) > 4), 4, d["y"]))),
    ),
    c(
        "calibration-too-few-of-a-class",
        [*AUGMENT, "--calibration-data", "d.npz", *OUT],
        "too few samples of class 3 (4): at least 10 per class are needed",
        data_with("d.npz", lambda d: d.update(y=np.where((d["y"] == 3) & (np.cumsum(d["y"] == 3) > 4), 4, d["y"]))),
    ),
    c("data-not-a-regular-file", [*AUGMENT[:2], "--data", "/dev/null", *OUT], "/dev/null: not a regular file"),
    c(
        "cost-model-not-json",
        [*AUGMENT, "--platform", "m4-edge", "--cost-model", "t.json", *OUT],
        "t.json: not valid JSON",
        text_file("t.json"),
    ),
    c("calibration-a-text-file", [*AUGMENT, "--calibration-data", "t.npz", *OUT], "is a text file", text_file("t.npz")),
    c("run-on-a-text-file", ["run", "eenn", "--data", "t.npz"], "is a text file", eenn, text_file("t.npz")),
    # options: checked before any work, the option named
    c("val-fraction-zero", [*AUGMENT, "--val-fraction", "0.0", *OUT], "--val-fraction 0: must be > 0 and < 1"),
    c("val-fraction-one", [*AUGMENT, "--val-fraction", "1", *OUT], "--val-fraction 1: must be > 0 and < 1"),
    c("val-fraction-too-small-a-share", [*AUGMENT, "--val-fraction", "0.001", *OUT], "--val-fraction 0.001: leaves 1"),
    c("seed-negative", [*AUGMENT, "--seed", "-1", *OUT], "--seed -1: must be 0 or more"),
    c("workers-zero", [*AUGMENT, "--workers", "0", *OUT], "--workers 0: must be 1 or more"),
    c("confidence-above-one", [*AUGMENT, "--confidence", "1.5", *OUT], "--confidence 1.5: must be > 0 and < 1"),
    c("tolerance-nan", [*AUGMENT, "--max-accuracy-drop", "nan", *OUT], "--max-accuracy-drop nan"),
    c("flash-zero", ["build", "model.onnx", "--target", "cortex-m4", "--flash", "0", *OUT], "--flash 0: must be > 0"),
    c("ram-negative", ["build", "model.onnx", "--target", "cortex-m4", "--ram", "-1", *OUT], "--ram -1: must be > 0"),
    c("stack-zero", ["build", "model.onnx", "--target", "cortex-m4", "--stack", "0", *OUT], "--stack 0: must be > 0"),
    c("input-shape-zero-dims", ["analyze", "model.onnx", "--input-shape", "x=1x1x0x0"], "every dim must be 1 or more"),
    c(
        "latency-bound-zero",
        ["map", "eenn", "--platform", "m4-edge", "--max-latency-ms", "0"],
        "--max-latency-ms 0",
        eenn,
    ),
    c(
        "profile-seed-negative",
        ["profile", "--platform", "m4-edge", "--seed", "-1"],
        "'--seed': -1 is not in the range",
    ),
    # documents of an output folder: whole and of their format, thresholds that can fire, the plan's own heads
    c("plan-a-list", RUN, "plan.json: expected an object, got a list", plan_edited(lambda _: "[]")),
    c("plan-empty", RUN, "plan.json: not valid JSON", plan_edited(lambda _: "")),
    c("plan-of-version-1", RUN, "plan.json: version: expected 2, got 1", plan_with(("version",), 1)),
    c("plan-missing-a-field", RUN, "plan.json: exits[0].binding: missing", plan_with(("exits", 0, "binding"))),
    c("plan-threshold-null", BUILD, "exits[0].threshold: expected float, got None", threshold(None)),
    c("plan-threshold-above-one", RUN, "exits[0].threshold: must be a number between 0 and 1", threshold(5.0)),
    c("plan-threshold-nan", RUN, "exits[0].threshold: must be a number between 0 and 1", threshold(math.nan)),
    c("plan-threshold-a-string", MAP, "exits[0].threshold: expected float, got 'high'", threshold("high")),
    c(
        "plan-decision-unknown",
        RUN,
        "decision: expected one of maxprob, margin, entropy, got 'vote'",
        plan_with(("decision",), "vote"),
    ),
    c(
        "plan-accuracy-nan",
        RUN,
        "validation.accuracy: must be a finite number between 0 and 1, got nan",
        plan_with(("validation", "accuracy"), math.nan),
    ),
    c(
        "plan-macs-negative",
        MAP,
        "exits[0].macs_to_reach: must not be negative, got -5",
        plan_with(("exits", 0, "macs_to_reach"), -5),
    ),
    c("plan-no-samples", MAP, "validation.samples: must be > 0, got 0", plan_with(("validation", "samples"), 0)),
    c(
        "plan-histogram-of-other-samples",
        MAP,
        "validation.exit_histogram: adds up to",
        plan_with(("validation", "exit_histogram", 0), 10**6),
    ),
    # files an output folder names: inside it (symlinks resolved), there, and the very files it was written with
    c("plan-artefact-missing", RUN, "eenn: eenn.onnx is missing", eenn, removed("eenn/eenn.onnx")),
    c(
        "plan-artefact-absolute",
        RUN,
        "artifacts.eenn_onnx: must be a path relative to the folder and inside it, got '/etc/passwd'",
        plan_with(("artifacts", "eenn_onnx"), "/etc/passwd"),
    ),
    c(
        "plan-artefact-climbs-out",
        RUN,
        "artifacts.host_module: must be a path relative to the folder and inside it, got '../model.onnx'",
        plan_with(("artifacts", "host_module"), "../model.onnx"),
    ),
    c(
        "plan-artefact-a-symlink-out",
        RUN,
        "eenn: eenn.onnx leads outside the folder",
        eenn,
        symlinked("eenn/eenn.onnx", "model.onnx"),
    ),
    c(
        "plan-host-module-swapped",
        ["run", "eenn", "--data", "data.npz", "--engine", "tvm"],
        "eenn/eenn_host.so: changed since plan.json was written (its SHA-256 differs): run `eenn-tvm augment` again",
        eenn,
        overwritten("eenn/eenn_host.so", b"\x7fELF, but not the module augment built"),
    ),
    c("plan-hash-missing", RUN, "hashes: no SHA-256 for eenn.onnx", plan_with(("hashes", "eenn.onnx"))),
    c(
        "plan-hash-not-hex",
        RUN,
        "hashes.eenn.onnx: must be a SHA-256 (64 lowercase hex digits), got 'md5'",
        plan_with(("hashes", "eenn.onnx"), "md5"),
    ),
    c("head-missing", BUILD, "eenn: heads/exit_0.npz is missing", eenn, removed("eenn/heads/exit_0.npz")),
    c(
        "head-swapped",
        BUILD,
        "eenn/heads/exit_0.npz: changed since plan.json was written (its SHA-256 differs)",
        head_replaced(head_of_another_kind),
    ),
    c(
        "head-edited",
        BUILD,
        "eenn/heads/exit_0.npz: changed since plan.json was written (its SHA-256 differs)",
        head_replaced(lambda path, _: path.write_text("weights\n")),
    ),
    c(
        "head-weights-climb-out",
        BUILD,
        "exits[0].weights: must be a path relative to the folder and inside it, got '../data.npz'",
        plan_with(("exits", 0, "weights"), "../data.npz"),
    ),
    c(
        "head-folder-a-symlink-out",
        BUILD,
        "eenn: heads/exit_0.npz leads outside the folder",
        eenn,
        heads_moved_out,
    ),
    c(
        "plan-head-of-another-kind",
        BUILD,
        "head where the plan has a pool2_mlp head (swapped files?)",
        plan_with(("exits", 0, "head"), "pool2_mlp"),
    ),
    c(
        "plan-head-at-another-point",
        BUILD,
        "its layers do not fit a",
        plan_edited(lambda doc: json.dumps(widened_exit(doc))),
    ),
    c("firmware-json-empty", VERIFY, "firmware.json: not valid JSON", firmware_json("")),
    c("firmware-json-a-list", VERIFY, "firmware.json: expected an object, got a list", firmware_json("[1, 2]")),
    c(
        "firmware-json-partial",
        VERIFY,
        "firmware.json: kind: missing",
        firmware_json('{"format": "eenn-tvm-firmware", "version": 2}'),
    ),
    c("firmware-of-version-1", VERIFY, "firmware.json: version: expected 2, got 1", firmware_with(("version",), 1)),
    c("firmware-elf-missing", VERIFY, "fw: bin/eenn_verify.elf is missing", firmware, removed(f"fw/{ELF}")),
    c(
        "firmware-elf-absolute",
        VERIFY,
        "elf: must be a path relative to the folder and inside it, got '/bin/true'",
        firmware_with(("elf",), "/bin/true"),
    ),
    c(
        "firmware-reference-climbs-out",
        VERIFY,
        "reference: must be a path relative to the folder and inside it, got '../model.onnx'",
        firmware_with(("reference",), "../model.onnx"),
    ),
    c(
        "firmware-elf-a-symlink-out",
        VERIFY,
        "fw: bin/eenn_verify.elf leads outside the folder",
        firmware,
        symlinked(f"fw/{ELF}", "model.onnx"),
    ),
    c(
        "firmware-reference-swapped",
        VERIFY,
        "fw/reference/model.onnx: changed since firmware.json was written (its SHA-256 differs): run `eenn-tvm build`",
        firmware,
        overwritten("fw/reference/model.onnx", b"another model"),
    ),
    c("firmware-hash-missing", VERIFY, f"hashes: no SHA-256 for {ELF}", firmware_with(("hashes", ELF))),
    c(
        "firmware-on-another-board",
        VERIFY,
        "machine: cortex-m4 runs on mps2-an386, not 'virt'",
        firmware_with(("machine",), "virt"),
    ),
    c(
        "firmware-reference-of-another-kind",
        VERIFY,
        "reference: a eenn is checked against a .so file, not 'reference/model.onnx'",
        firmware_with(("kind",), "eenn"),
    ),
    c(
        "firmware-float-with-an-int8-entry",
        VERIFY,
        "int8_input: only an int8 firmware has an int8 entry point",
        firmware_with(("int8_input",), {"scale": 0.5, "zero_point": 0, "elf": "bin/eenn_verify_int8.elf"}),
    ),
    c(
        "firmware-classes-beyond-reason",
        VERIFY,
        "classes: must be <= 65536, got 1000000000",
        firmware_with(("classes",), 10**9),
    ),
    # the cost model a platform is priced with: its schema, numbers and trees
    c(
        "cost-model-latency-nan",
        COSTED,
        "measured.device.k: must be a finite number > 0, got nan",
        cost_model_with(("measured",), {"device": {"k": math.nan}}),
    ),
    c(
        "cost-model-other-features",
        COSTED,
        "features: made with other features than this eenn-tvm computes",
        cost_model_with(("features",), ["log_work"]),
    ),
    c(
        "cost-model-base-a-string",
        COSTED,
        "boosters.device.base[0]: expected a number, got 'a'",
        cost_model_with(("boosters",), {"device": {"base": ["a", 0, 0], "trees": {}}}),
    ),
    c(
        "cost-model-trees-garbage",
        COSTED,
        "boosters.device.trees: not a model XGBoost can read",
        cost_model_with(("boosters",), {"device": {"base": [1e-6, 0, 1e-9], "trees": {"learner": 1}}}),
    ),
    # physics in platform and problem files: finite, numbers, > 0 where a rate divides, names unique
    c(
        "platform-throughput-zero",
        PROFILE,
        "targets[1].macs_per_s: must be a finite number > 0, got 0",
        platform_edited("macs_per_s = 2.0e9", "macs_per_s = 0"),
    ),
    c(
        "platform-clock-zero",
        ["map", "eenn", "--platform", "bad.toml"],
        "targets[0].clock_hz: must be a finite number > 0, got 0.0",
        eenn,
        platform_edited("clock_hz = 64e6", "clock_hz = 0.0"),
    ),
    c(
        "platform-clock-a-string",
        PROFILE,
        "targets[0].clock_hz: expected a number, got 'fast'",
        platform_edited("clock_hz = 64e6", 'clock_hz = "fast"'),
    ),
    c(
        "platform-latency-nan",
        PROFILE,
        "links[0].latency_s: must be a finite number >= 0, got nan",
        platform_edited("latency_s = 0.0075", "latency_s = nan"),
    ),
    c(
        "platform-duplicate-targets",
        PROFILE,
        "targets: names must be unique, 'device' appears 2 times",
        platform_edited('name = "edge"', 'name = "device"'),
    ),
    c(
        "problem-throughput-zero",
        MAP_PROBLEM,
        "nodes[0].macs_per_s: must be a finite number > 0, got 0",
        problem_edited(node_field(0, "macs_per_s", 0)),
    ),
    c(
        "problem-power-negative",
        MAP_PROBLEM,
        "nodes[1].power_w: must be a finite number >= 0, got -6",
        problem_edited(node_field(1, "power_w", -6)),
    ),
    c(
        "problem-macs-negative",
        MAP_PROBLEM,
        "blocks[1].macs: must be a finite number >= 0, got -1",
        problem_edited(block_field(1, "macs", -1)),
    ),
    c(
        "problem-macs-nan",
        MAP_PROBLEM,
        "blocks[0].macs: must be a finite number >= 0, got nan",
        problem_edited(block_field(0, "macs", math.nan)),
    ),
    c(
        "problem-macs-a-string",
        MAP_PROBLEM,
        "blocks[0].macs: expected a number, got '770000'",
        problem_edited(block_field(0, "macs", "770000")),
    ),
    c(
        "problem-share-above-one",
        MAP_PROBLEM,
        "blocks[0].exit.exit_fraction: must be a finite number between 0 and 1, got 1.5",
        problem_edited(
            lambda d: {**d, "blocks": [{**d["blocks"][0], "exit": {"exit_fraction": 1.5}}, *d["blocks"][1:]]}
        ),
    ),
    c(
        "problem-duplicate-nodes",
        MAP_PROBLEM,
        "nodes: names must be unique, 'device' appears 2 times",
        problem_edited(lambda d: {**d, "nodes": d["nodes"] + d["nodes"][:1]}),
    ),
    c(
        "problem-a-list",
        MAP_PROBLEM,
        "p.json: expected an object, got a list",
        problem_edited(lambda d: [d]),
    ),
    # quantize: a model into one new file, an augment output in place or into a new folder; the data augment had
    c("quantize-model-missing", ["quantize", "nope.onnx", *Q_DATA, "-o", "q.onnx"], "Path 'nope.onnx' does not exist"),
    c(
        "quantize-model-broken",
        ["quantize", "t.onnx", *Q_DATA, "-o", "q.onnx"],
        "t.onnx: not an ONNX model",
        text_file("t.onnx"),
    ),
    c(
        "quantize-data-of-another-shape",
        ["quantize", "model.onnx", "--data", "d.npz", "-o", "q.onnx"],
        "d.npz: samples are 1x10x28 but the model takes 1x28x28",
        data_with("d.npz", lambda d: d.update(x=d["x"][:, :, :10])),
    ),
    c(
        "quantize-data-a-text-file",
        ["quantize", "model.onnx", "--data", "t.npz", "-o", "q.onnx"],
        "is a text file",
        text_file("t.npz"),
    ),
    c("quantize-without-o", QUANTIZE, "give -o FILE.onnx"),
    c(
        "quantize-o-an-existing-file",
        [*QUANTIZE, "-o", "old.onnx"],
        "-o old.onnx: exists: give -o a new file, or add --force to replace it",
        text_file("old.onnx"),
    ),
    c(
        "quantize-o-the-model-forced",
        [*QUANTIZE, "-o", "model.onnx", "--force"],
        "is model.onnx, an input of this command",
    ),
    c("quantize-o-the-data-forced", [*QUANTIZE, "-o", "data.npz", "--force"], "is data.npz, an input of this command"),
    c("quantize-o-a-folder", [*QUANTIZE, "-o", "mine"], "-o mine: is a folder: give -o the file to write", user_folder),
    c("quantize-o-a-symlink-forced", [*QUANTIZE, "-o", "link", "--force"], "-o link: is a symlink", symlink),
    c(
        "quantize-o-in-an-unwritable-folder",
        [*QUANTIZE, "-o", "locked/q.onnx"],
        "locked is not writable",
        locked("locked"),
    ),
    c(
        "quantize-no-calibration-samples",
        [*QUANTIZE, "--calibration-samples", "0", "-o", "q.onnx"],
        "0 is not in the range",
    ),
    c(
        "quantize-o-a-folder-of-the-users",
        [*QUANTIZE_EENN, "-o", "mine"],
        "-o mine: is a folder eenn-tvm did not write (it holds notes.txt)",
        eenn,
        user_folder,
    ),
    c(
        "quantize-o-its-source",
        [*QUANTIZE_EENN, "-o", "eenn", "--force"],
        "-o eenn: is eenn, an input of this command",
        eenn,
    ),
    c("quantize-o-the-current-folder", [*QUANTIZE_EENN, "-o", "."], "-o .: is the current folder", eenn),
    c(
        "quantize-in-place-a-folder-eenn-tvm-did-not-write",
        QUANTIZE_EENN,
        "eenn: eenn-tvm did not write this folder",
        eenn,
        removed(f"eenn/{MARKER}"),
    ),
    c(
        "quantize-data-not-augments",
        ["quantize", "eenn", "--data", "d.npz", "-o", "q"],
        "d.npz: not the data augment was given",
        eenn,
        data_with("d.npz", lambda d: d.update(y=d["y"][::-1].copy())),
    ),
    c(
        "quantize-a-file-swapped",
        [*QUANTIZE_EENN, "-o", "q"],
        "eenn/eenn.onnx: changed since plan.json was written (its SHA-256 differs)",
        eenn,
        overwritten("eenn/eenn.onnx", b"another model"),
    ),
    c(
        "quantize-a-file-leads-out",
        [*QUANTIZE_EENN, "-o", "q"],
        "eenn: heads/exit_0.npz leads outside the folder",
        eenn,
        heads_moved_out,
    ),
    c(
        "quantize-plan-data-hash-not-hex",
        [*QUANTIZE_EENN, "-o", "q"],
        "search.data_sha256: must be a SHA-256",
        plan_with(("search", "data_sha256"), "abc"),
    ),
    c(
        "plan-int8-file-climbs-out",
        [*RUN, "--dtype", "int8"],
        "artifacts.eenn_int8_onnx: must be a path relative to the folder and inside it, got '../model.onnx'",
        plan_with(("artifacts", "eenn_int8_onnx"), "../model.onnx"),
    ),
    c("run-int8-without-an-int8-network", [*RUN, "--dtype", "int8"], "run `eenn-tvm quantize eenn", eenn),
    c(
        "stream-without-order",
        ["run", "eenn", "--data", "s.npz"],
        "s.npz: stream data need both stream and order (N,): order is missing",
        eenn,
        streams(order=None),
    ),
    c(
        "stream-order-repeated",
        ["run", "eenn", "--data", "s.npz"],
        "s.npz: stream 0 has two windows at order 0: each position once per stream",
        eenn,
        streams(order=lambda n: np.arange(n) % 50 // 2),
    ),
    c(
        "stream-ids-not-integers",
        ["run", "eenn", "--data", "s.npz"],
        "s.npz: stream is float64 (1000,): it must be integers, one per sample (1000)",
        eenn,
        streams(stream=lambda n: np.zeros(n)),
    ),
    c(
        "stream-order-negative",
        ["run", "eenn", "--data", "s.npz"],
        "s.npz: order holds negative positions (-1)",
        eenn,
        streams(order=lambda n: np.arange(n) - 1),
    ),
    c(
        "stream-spanning-two-groups",
        ["run", "eenn", "--data", "s.npz"],
        "s.npz: stream 0 holds windows of two groups: a stream is the recording of one group",
        eenn,
        streams(groups=lambda n: np.arange(n) % 2),
    ),
    c(
        "augment-stream-with-calibration-data",
        [*AUGMENT, "--stream", "--calibration-data", "data.npz", *OUT],
        "--stream sets its rule on whole streams held out of --data: drop --calibration-data",
    ),
    c(
        "augment-stream-on-data-without-streams",
        [*AUGMENT, "--stream", *OUT],
        "data.npz: --stream needs stream data: arrays stream (N,) and order (N,)",
    ),
]


def snapshot(folder: Path) -> dict:
    """Every path under `folder` (and itself) with its kind, size and modification time."""
    paths = [folder, *folder.rglob("*")]
    return {str(p.relative_to(folder)): (p.is_dir(), p.lstat().st_size, p.lstat().st_mtime_ns) for p in paths}


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_is_one_line_and_touches_nothing(case, mlp_assets, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    for name in ("model.onnx", "data.npz"):
        shutil.copy(mlp_assets / name, work / name)
    monkeypatch.chdir(work)
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    try:
        for setup in case.setup:
            setup(work, mlp_assets)
        before = snapshot(tmp_path)
        code, stdout, stderr = run_cli(*case.args)
        after = snapshot(tmp_path)
    finally:
        unlock(work)
    lines = stderr.strip().splitlines()
    assert code == 2 and stdout == "", stderr
    assert len(lines) == 1 and lines[0].startswith("eenn-tvm: error: "), stderr
    assert case.fragment in lines[0]
    assert after == before, "the case wrote, removed or changed something"


# --- beyond the table ---------------------------------------------------------------------------------------------


def start_augment(work: Path, out: str) -> subprocess.Popen:
    """augment in a child process (signals need one), with the dense model on its data."""
    args = [*AUGMENT, "--max-accuracy-drop", "0.05", "-o", out]
    return subprocess.Popen(
        [Path(sys.executable).parent / "eenn-tvm", *args],
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell without job control starts background jobs with SIGINT ignored, and eenn-tvm (rightly) keeps an
        # ignored SIGINT ignored: the child gets the default disposition, however the tests were started.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def wait_for_temporary_folder(work: Path, out: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while not any(p.name.startswith(f".{out}.tmp-") for p in work.iterdir()):
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "augment never started writing"
        time.sleep(0.05)
    time.sleep(0.3)  # well inside the write: the host module is being built


def workspace(mlp_assets: Path, tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    for name in ("model.onnx", "data.npz"):
        shutil.copy(mlp_assets / name, work / name)
    return work


@pytest.mark.slow
@pytest.mark.parametrize("sig, code, word", [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")])
def test_a_signal_during_the_write_leaves_nothing_and_says_so_in_one_line(mlp_assets, tmp_path, sig, code, word):
    work = workspace(mlp_assets, tmp_path)
    before = sorted(p.name for p in work.iterdir())
    process = start_augment(work, "out")
    wait_for_temporary_folder(work, "out", process)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == code
    assert stderr.strip().splitlines()[-1] == f"eenn-tvm: {word}" and "Traceback" not in stderr
    assert sorted(p.name for p in work.iterdir()) == before


@pytest.mark.slow
def test_what_a_killed_run_left_is_removed_by_the_next_run_which_says_so(mlp_assets, tmp_path):
    work = workspace(mlp_assets, tmp_path)
    process = start_augment(work, "out")
    wait_for_temporary_folder(work, "out", process)
    process.kill()
    process.wait()
    (left,) = [p.name for p in work.iterdir() if p.name.startswith(".out.tmp-")]
    code, _, stderr = run_cli(
        *[work / a if a in ("model.onnx", "data.npz") else a for a in AUGMENT], "-o", work / "out"
    )
    assert code == 0, stderr
    assert f"eenn-tvm: removed {work / left}, left by an interrupted run" in stderr.splitlines()
    assert sorted(p.name for p in work.iterdir()) == ["data.npz", "model.onnx", "out"]


def test_the_previous_output_of_a_run_killed_between_its_renames_is_restored(mlp_assets, tmp_path):
    """Killed after moving the old output aside and before moving the new one in: the next run into the same place
    puts the old output back, so that it survives even when that run fails too."""
    work = workspace(mlp_assets, tmp_path)
    gone = subprocess.Popen(["true"])
    gone.wait()
    aside = work / f".eenn.old-{gone.pid}-0123abcd"
    shutil.copytree(mlp_assets / "eenn", aside)
    code, _, stderr = run_cli(
        *[work / a if a in ("model.onnx", "data.npz") else a for a in AUGMENT],
        "--val-fraction",
        "0.001",
        "-o",
        work / "eenn",
    )
    assert (
        code == 2
        and stderr.splitlines()[0]
        == f"eenn-tvm: restored {work / 'eenn'} from {aside.name}, left by an interrupted run"
    )
    assert (work / "eenn" / "plan.json").read_bytes() == (mlp_assets / "eenn" / "plan.json").read_bytes()
    assert sorted(p.name for p in work.iterdir()) == ["data.npz", "eenn", "model.onnx"]


def test_an_eenn_tvm_output_is_replaced_whole_with_the_users_permissions(mlp_assets, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [mlp_assets / "model.onnx", "--data", mlp_assets / "data.npz", "--no-cache", "--max-accuracy-drop", "0.05"]
    (tmp_path / "out").mkdir()  # an empty folder may be written into
    old = os.umask(0o027)
    try:
        for _ in range(2):  # the second run replaces the first's output: marked as eenn-tvm's
            code, _, stderr = run_cli("augment", *args, "-o", "out")
            assert code == 0, stderr
    finally:
        os.umask(old)
    assert json.loads((tmp_path / "out" / MARKER).read_text())["kind"] == "augment"
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o750
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_damaged_feature_cache_is_computed_again_and_said_so(mlp_assets, tmp_path):
    args = [mlp_assets / "model.onnx", "--data", mlp_assets / "data.npz", "--cache-dir", tmp_path / "cache"]
    args += ["--max-accuracy-drop", "0.05", "--json"]
    code, first, stderr = run_cli("augment", *args, "-o", tmp_path / "a")
    assert code == 0, stderr
    (entry,) = (tmp_path / "cache" / "features").iterdir()
    objects = np.empty(3, object)
    np.save(entry / "final.npy", objects, allow_pickle=True)  # never to be unpickled
    code, again, stderr = run_cli("augment", *args, "-o", tmp_path / "b")
    assert code == 0, stderr
    assert f"the cached features in {entry} are damaged: computing them again" in stderr
    strip = [json.loads(doc) for doc in (first, again)]
    for doc in strip:
        doc["search"].pop("seconds")
        doc["hashes"].pop("report.md")  # it holds the timings
    assert strip[0] == strip[1]


@pytest.mark.slow
def test_quantize_in_place_hashes_the_int8_files_and_a_swapped_one_is_refused(mlp_assets, tmp_path):
    folder = tmp_path / "eenn"
    shutil.copytree(mlp_assets / "eenn", folder, symlinks=True)
    code, _, stderr = run_cli("quantize", folder, "--data", mlp_assets / "data.npz")
    assert code == 0, stderr
    plan = json.loads((folder / "plan.json").read_text())
    for name in ("eenn_int8.onnx", "eenn_int8_host.so", "eenn.onnx", "report.md"):
        assert plan["hashes"][name] == hashlib.sha256((folder / name).read_bytes()).hexdigest(), name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eenn"]  # nothing left beside it
    shutil.copy(folder / "eenn_host.so", folder / "eenn_int8_host.so")
    code, stdout, stderr = run_cli("run", folder, "--data", mlp_assets / "data.npz", "--dtype", "int8", "--n", "5")
    assert (code, stdout) == (2, "")
    assert stderr.strip().splitlines() == [
        f"eenn-tvm: error: {folder}/eenn_int8_host.so: changed since plan.json was written (its SHA-256 differs): "
        "run `eenn-tvm augment` again"
    ]


@pytest.mark.slow
def test_quantize_replaces_an_existing_model_file_only_with_force(mlp_assets, tmp_path):
    target = tmp_path / "int8.onnx"
    target.write_text("the user's file\n")
    args = ["quantize", mlp_assets / "model.onnx", "--data", mlp_assets / "data.npz", "-o", target]
    code, _, stderr = run_cli(*args)
    assert code == 2 and "exists" in stderr and target.read_text() == "the user's file\n"
    code, _, stderr = run_cli(*args, "--force")
    assert code == 0, stderr
    assert any(node.op_type == "QuantizeLinear" for node in onnx.load(str(target)).graph.node)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["int8.onnx"]
