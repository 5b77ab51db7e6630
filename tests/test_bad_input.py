"""Bad and hostile input through the command line, as a demanding new user would try it (issue 13).

Every case ends with exit code 2 and exactly one line on stderr, `eenn-tvm: error: ...`, never an internal error;
nothing is left behind (no temporary folders, no partial files) and nothing else is touched: the whole folder the
case runs in is snapshotted (names, sizes, modification times) before and after. The case runs with that folder
as the current one, so that `-o .` and `-o ..` mean it.

Then what cannot be a table row: signals during a write, a killed run's leftovers, a damaged feature cache, and
what an output folder looks like when it is replaced.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import zoo
from conftest import REPO
from test_cli import run_cli

from eenn_tvm.heads import Head
from eenn_tvm.outputs import MARKER

AUGMENT = ["augment", "model.onnx", "--data", "data.npz", "--no-cache"]
PRESET = REPO / "targets" / "platforms" / "m4-edge.toml"
PROBLEM = REPO / "examples" / "placement" / "small.json"


@pytest.fixture(scope="module")
def assets(tmp_path_factory, zoo_model):
    """The dense zoo model, 300 samples it labels itself, and an `augment` output of it with at least one exit."""
    folder = tmp_path_factory.mktemp("assets")
    model = zoo_model("mlp", "legacy")
    shutil.copy(model.path, folder / "model.onnx")
    x, y = zoo.self_labelled(model.path, model.input_shape, 300)
    np.savez(folder / "data.npz", x=x, y=y)
    args = [*AUGMENT, "--max-accuracy-drop", "0.05", "-o", folder / "eenn"]
    code, _, stderr = run_cli(*[folder / a if a in ("model.onnx", "data.npz") else a for a in args])
    assert code == 0, stderr
    assert json.loads((folder / "eenn" / "plan.json").read_text())["exits"], "the fixture needs an exit"
    return folder


# --- what a case sets up in its folder (beside model.onnx and data.npz) --------------------------------------------


def eenn(work: Path, assets: Path) -> None:
    shutil.copytree(assets / "eenn", work / "eenn", symlinks=True)


def user_folder(work, _assets):
    (work / "mine").mkdir()
    (work / "mine" / "notes.txt").write_text("the user's own work\n")


def inputs_in_a_folder(work, assets):
    (work / "inputs").mkdir()
    for name in ("model.onnx", "data.npz"):
        shutil.copy(assets / name, work / "inputs" / name)


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
    def setup(work, assets):
        d = dict(np.load(assets / "data.npz"))
        edit(d)
        np.savez(work / name, **d)

    return setup


def plan_edited(edit):
    def setup(work, assets):
        eenn(work, assets)
        path = work / "eenn" / "plan.json"
        path.write_text(edit(json.loads(path.read_text())))

    return setup


def set_threshold(value):
    def edit(doc):
        doc["exits"][0]["threshold"] = value
        return json.dumps(doc)

    return edit


def without_binding(doc):
    del doc["exits"][0]["binding"]
    return json.dumps(doc)


def head_replaced(make):
    """Exit 0's weights replaced: `make(head, path)` writes the file in their place."""

    def setup(work, assets):
        eenn(work, assets)
        plan = json.loads((work / "eenn" / "plan.json").read_text())
        path = work / "eenn" / plan["exits"][0]["weights"]
        make(path, plan["exits"][0])

    return setup


def head_of_another_kind(path, planned):
    w, b = np.zeros((planned["shape"][1], 32), np.float32), np.zeros(32, np.float32)
    Head("pool2_mlp", [(w, b), (np.zeros((32, 10), np.float32), np.zeros(10, np.float32))]).save(path)


def head_of_another_point(path, planned):
    Head(planned["head"], [(np.zeros((planned["shape"][1] + 1, 10), np.float32), np.zeros(10, np.float32))]).save(path)


def firmware_json(text):
    def setup(work, _assets):
        (work / "fw").mkdir()
        (work / "fw" / "firmware.json").write_text(text)

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
    def edit(doc):
        doc["nodes"][i][key] = value
        return doc

    return edit


def locked(name):
    """A folder nobody may write: chmod for a normal user, the immutable flag for root (whom modes do not stop)."""

    def setup(work, assets):
        if name == "eenn":
            eenn(work, assets)
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
MANIFEST = {"format": "eenn-tvm-firmware", "version": 1, "kind": "model", "model": "m", "target": "cortex-m4"}
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
        "x holds NaN or infinite values (in 1 of 300 samples, the first is sample 7)",
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
        "t.json: not a cost model eenn-tvm wrote",
        text_file("t.json"),
    ),
    c("calibration-a-text-file", [*AUGMENT, "--calibration-data", "t.npz", *OUT], "is a text file", text_file("t.npz")),
    c("run-on-a-text-file", ["run", "eenn", "--data", "t.npz"], "is a text file", eenn, text_file("t.npz")),
    # options: checked before any work, the option named
    c("val-fraction-zero", [*AUGMENT, "--val-fraction", "0.0", *OUT], "--val-fraction 0: must be > 0 and < 1"),
    c("val-fraction-one", [*AUGMENT, "--val-fraction", "1", *OUT], "--val-fraction 1: must be > 0 and < 1"),
    c("val-fraction-too-small-a-share", [*AUGMENT, "--val-fraction", "0.001", *OUT], "--val-fraction 0.001: leaves 1"),
    c("seed-negative", [*AUGMENT, "--seed", "-1", *OUT], "--seed -1: must be 0 or more"),
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
    c(
        "plan-a-list",
        ["run", "eenn", "--data", "data.npz"],
        "plan.json: (the document): expected an object, got a list",
        plan_edited(lambda _: "[]"),
    ),
    c("plan-empty", ["run", "eenn", "--data", "data.npz"], "plan.json: not valid JSON", plan_edited(lambda _: "")),
    c(
        "plan-missing-a-field",
        ["run", "eenn", "--data", "data.npz"],
        "plan.json: exits[0].binding: missing",
        plan_edited(without_binding),
    ),
    c(
        "plan-threshold-null",
        ["build", "eenn", "--target", "cortex-m4", *OUT],
        "exits[0].threshold: expected float, got None",
        plan_edited(set_threshold(None)),
    ),
    c(
        "plan-threshold-above-one",
        ["run", "eenn", "--data", "data.npz"],
        "exits[0].threshold: must be a number between 0 and 1",
        plan_edited(set_threshold(5.0)),
    ),
    c(
        "plan-threshold-a-string",
        ["map", "eenn", "--platform", "m4-edge"],
        "exits[0].threshold: expected float, got 'high'",
        plan_edited(set_threshold("high")),
    ),
    c(
        "firmware-json-empty",
        ["verify", "fw", "--data", "data.npz"],
        "firmware.json: not valid JSON",
        firmware_json(""),
    ),
    c(
        "firmware-json-a-list",
        ["verify", "fw", "--data", "data.npz"],
        "firmware.json: (the document): expected an object, got a list",
        firmware_json("[1, 2]"),
    ),
    c(
        "firmware-json-partial",
        ["verify", "fw", "--data", "data.npz"],
        "firmware.json: kind: missing",
        firmware_json('{"format": "eenn-tvm-firmware", "version": 1}'),
    ),
    c(
        "firmware-files-missing",
        ["verify", "fw", "--data", "data.npz"],
        "fw: its reference (reference/model.onnx) is missing: run `eenn-tvm build` again",
        firmware_json(json.dumps({**MANIFEST, "reference": "reference/model.onnx", "elf": "bin/eenn_verify.elf"})),
    ),
    c(
        "plan-artefact-missing",
        ["run", "eenn", "--data", "data.npz"],
        "eenn: its eenn_onnx (eenn.onnx) is missing",
        eenn,
        lambda work, _: (work / "eenn" / "eenn.onnx").unlink(),
    ),
    c(
        "head-missing",
        ["build", "eenn", "--target", "cortex-m4", *OUT],
        "the exit head's weights are missing",
        head_replaced(lambda path, _: path.unlink()),
    ),
    c(
        "head-of-another-kind",
        ["build", "eenn", "--target", "cortex-m4", *OUT],
        "a pool2_mlp head where the plan has a gap_linear head",
        head_replaced(head_of_another_kind),
    ),
    c(
        "head-of-another-point",
        ["build", "eenn", "--target", "cortex-m4", *OUT],
        "do not fit a gap_linear head",
        head_replaced(head_of_another_point),
    ),
    c(
        "head-a-text-file",
        ["build", "eenn", "--target", "cortex-m4", *OUT],
        "is a text file, not an .npz",
        head_replaced(lambda path, _: path.write_text("weights\n")),
    ),
    # physics in platform and problem files: finite, and > 0 where a rate divides
    c(
        "platform-throughput-zero",
        ["profile", "--platform", "bad.toml", "--workloads", "0"],
        "targets[1].macs_per_s: must be > 0, got 0",
        platform_edited("macs_per_s = 2.0e9", "macs_per_s = 0"),
    ),
    c(
        "platform-clock-zero",
        ["map", "eenn", "--platform", "bad.toml"],
        "targets[0].clock_hz: must be > 0",
        eenn,
        platform_edited("clock_hz = 64e6", "clock_hz = 0.0"),
    ),
    c(
        "platform-latency-nan",
        ["profile", "--platform", "bad.toml", "--workloads", "0"],
        "links[0].latency_s: must be a finite number, got nan",
        platform_edited("latency_s = 0.0075", "latency_s = nan"),
    ),
    c(
        "problem-throughput-zero",
        ["map", "--problem", "p.json"],
        "nodes[0].macs_per_s: must be finite and > 0",
        problem_edited(node_field(0, "macs_per_s", 0)),
    ),
    c(
        "problem-power-negative",
        ["map", "--problem", "p.json"],
        "nodes[1].power_w: must be finite and >= 0, got -6",
        problem_edited(node_field(1, "power_w", -6)),
    ),
    c(
        "problem-duplicate-nodes",
        ["map", "--problem", "p.json"],
        "nodes: names must be unique",
        problem_edited(lambda d: {**d, "nodes": d["nodes"] + d["nodes"][:1]}),
    ),
    c(
        "problem-a-list",
        ["map", "--problem", "p.json"],
        "p.json: (the document): expected an object, got a list",
        problem_edited(lambda d: [d]),
    ),
]


def snapshot(folder: Path) -> dict:
    """Every path under `folder` (and itself) with its kind, size and modification time."""
    paths = [folder, *folder.rglob("*")]
    return {str(p.relative_to(folder)): (p.is_dir(), p.lstat().st_size, p.lstat().st_mtime_ns) for p in paths}


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_is_one_line_and_touches_nothing(case, assets, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    for name in ("model.onnx", "data.npz"):
        shutil.copy(assets / name, work / name)
    monkeypatch.chdir(work)
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    try:
        for setup in case.setup:
            setup(work, assets)
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
    )


def wait_for_temporary_folder(work: Path, out: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while not any(p.name.startswith(f".{out}.tmp-") for p in work.iterdir()):
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "augment never started writing"
        time.sleep(0.05)
    time.sleep(0.3)  # well inside the write: the host module is being built


def workspace(assets: Path, tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    for name in ("model.onnx", "data.npz"):
        shutil.copy(assets / name, work / name)
    return work


@pytest.mark.slow
@pytest.mark.parametrize("sig, code, word", [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")])
def test_a_signal_during_the_write_leaves_nothing_and_says_so_in_one_line(assets, tmp_path, sig, code, word):
    work = workspace(assets, tmp_path)
    before = sorted(p.name for p in work.iterdir())
    process = start_augment(work, "out")
    wait_for_temporary_folder(work, "out", process)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == code
    assert stderr.strip().splitlines()[-1] == f"eenn-tvm: {word}" and "Traceback" not in stderr
    assert sorted(p.name for p in work.iterdir()) == before


@pytest.mark.slow
def test_what_a_killed_run_left_is_removed_by_the_next_run_which_says_so(assets, tmp_path):
    work = workspace(assets, tmp_path)
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


def test_the_previous_output_of_a_run_killed_between_its_renames_is_restored(assets, tmp_path):
    """Killed after moving the old output aside and before moving the new one in: the next run into the same place
    puts the old output back, so that it survives even when that run fails too."""
    work = workspace(assets, tmp_path)
    gone = subprocess.Popen(["true"])
    gone.wait()
    aside = work / f".eenn.old-{gone.pid}-0123abcd"
    shutil.copytree(assets / "eenn", aside)
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
    assert (work / "eenn" / "plan.json").read_bytes() == (assets / "eenn" / "plan.json").read_bytes()
    assert sorted(p.name for p in work.iterdir()) == ["data.npz", "eenn", "model.onnx"]


def test_an_eenn_tvm_output_is_replaced_whole_with_the_users_permissions(assets, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [assets / "model.onnx", "--data", assets / "data.npz", "--no-cache", "--max-accuracy-drop", "0.05"]
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


def test_a_damaged_feature_cache_is_computed_again_and_said_so(assets, tmp_path):
    args = [assets / "model.onnx", "--data", assets / "data.npz", "--cache-dir", tmp_path / "cache"]
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
    assert strip[0] == strip[1]
