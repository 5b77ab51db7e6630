"""Random mutations of valid documents (plan.json, firmware.json, a placement problem, a platform file) and of a
data file (.npz) through the command line: whatever a mutation does, a command ends as promised (exit 0, or 2 with
one error line; verify also 1 with its MISMATCH verdict), never with an internal error. Seeded: a failure names the seed
and the mutations, and `mutate.mutations(document, seed)` (`mutate.npz_mutation(arrays, seed)`) gives the same file
again. The fast set tries a few of each; the slow set many more, and the platform through `map`, which uses every
number of it. (Seeded mutations rather than hypothesis, which the environment does not have.)"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tomllib
from conftest import REPO
from mutate import mutations, npz_mutation, to_toml
from test_bad_input import fake_firmware
from test_cli import run_cli

PRESET = REPO / "targets" / "platforms" / "m4-edge-cloud.toml"
PROBLEM = REPO / "examples" / "placement" / "small.json"
FAST, SLOW = 12, 120  # examples per document


def assert_as_promised(args, what: list[str], allowed=(0, 2)) -> int:
    code, stdout, stderr = run_cli(*args)
    lines = stderr.strip().splitlines()
    context = f"{' '.join(map(str, args))} after {'; '.join(what)}: exit {code}, stderr {stderr[-500:]!r}"
    assert "internal error" not in stderr, context
    assert code in allowed, context
    if code == 2:  # one error line, last; progress lines may come before it when the problem shows only in the work
        errors = [line for line in lines if line.startswith("eenn-tvm: error: ")]
        assert errors == lines[-1:] and stdout == "", context
    return code


def fuzz_json(original: Path, target: Path, seeds: range, args, allowed=(0, 2)) -> dict[int, int]:
    """Each seed's mutation of `original` written to `target`, then `args` run: the exit codes seen."""
    document = json.loads(original.read_text())
    seen: dict[int, int] = {}
    for seed in seeds:
        mutated, what = mutations(document, seed)
        target.write_text(json.dumps(mutated))
        code = assert_as_promised(args, [f"seed {seed}", *what], allowed)
        seen[code] = seen.get(code, 0) + 1
    return seen


@pytest.fixture
def plan_folder(mlp_assets, tmp_path):
    folder = tmp_path / "eenn"
    shutil.copytree(mlp_assets / "eenn", folder)
    return folder


def fuzz_plan(mlp_assets, folder, seeds):
    original = folder.parent / "plan.json"
    shutil.copy(folder / "plan.json", original)
    args = ["run", folder, "--data", mlp_assets / "data.npz", "--n", "2"]
    return fuzz_json(original, folder / "plan.json", seeds, args)


def test_a_mutated_plan_is_run_or_refused_in_one_line(mlp_assets, plan_folder):
    seen = fuzz_plan(mlp_assets, plan_folder, range(FAST))
    assert seen.get(2), seen


@pytest.mark.slow
def test_many_mutated_plans_are_run_or_refused_in_one_line(mlp_assets, plan_folder):
    seen = fuzz_plan(mlp_assets, plan_folder, range(FAST, SLOW))
    assert seen.get(0) and seen.get(2), seen


def fuzz_firmware(mlp_assets, firmware, seeds):
    original = firmware.parent / "firmware.json"
    shutil.copy(firmware / "firmware.json", original)
    args = ["verify", firmware, "--data", mlp_assets / "data.npz", "--n", "1"]
    return fuzz_json(original, firmware / "firmware.json", seeds, args, allowed=(0, 1, 2))


def test_a_mutated_firmware_manifest_is_verified_or_refused_in_one_line(mlp_assets, tmp_path):
    """On a folder whose files are no firmware (see test_bad_input.fake_firmware): all that verify reads before it
    runs QEMU, which then refuses the ELF."""
    firmware = tmp_path / "fw"
    fake_firmware(firmware, mlp_assets / "model.onnx")
    seen = fuzz_firmware(mlp_assets, firmware, range(FAST))
    assert seen.get(2), seen


@pytest.mark.slow
def test_many_mutated_firmware_manifests_are_verified_or_refused_in_one_line(mlp_assets, mlp_firmware, tmp_path):
    firmware = tmp_path / "fw"
    shutil.copytree(mlp_firmware, firmware)
    seen = fuzz_firmware(mlp_assets, firmware, range(SLOW))
    assert seen.get(0) and seen.get(2), seen


def test_a_mutated_problem_is_solved_or_refused_in_one_line(tmp_path):
    seen = fuzz_json(PROBLEM, tmp_path / "p.json", range(5 * FAST), ["map", "--problem", tmp_path / "p.json"])
    assert seen.get(0) and seen.get(2), seen


@pytest.mark.slow
def test_many_mutated_problems_are_solved_or_refused_in_one_line(tmp_path):
    seen = fuzz_json(PROBLEM, tmp_path / "p.json", range(5 * FAST, 5 * SLOW), ["map", "--problem", tmp_path / "p.json"])
    assert seen.get(0) and seen.get(2), seen


def fuzz_platform(seeds, args_for) -> dict[int, int]:
    document = tomllib.loads(PRESET.read_text())
    seen: dict[int, int] = {}
    for seed in seeds:
        mutated, what = mutations(document, seed)
        args, path = args_for(seed)
        path.write_text(to_toml(mutated))
        code = assert_as_promised(args, [f"seed {seed}", *what])
        seen[code] = seen.get(code, 0) + 1
    return seen


def test_a_mutated_platform_file_is_read_or_refused_in_one_line(tmp_path):
    def profile(seed):
        folder = tmp_path / str(seed)
        folder.mkdir()
        path = folder / "p.toml"
        return ["profile", "--platform", path, "--workloads", "0"], path

    seen = fuzz_platform(range(5 * FAST), profile)
    assert seen.get(0) and seen.get(2), seen


@pytest.mark.slow
def test_many_mutated_platform_files_are_used_by_map_or_refused_in_one_line(mlp_assets, plan_folder, tmp_path):
    def place(seed):
        path = tmp_path / f"p{seed}.toml"
        return ["map", plan_folder, "--platform", path], path

    seen = fuzz_platform(range(SLOW), place)
    assert seen.get(0) and seen.get(2), seen


def fuzz_npz(mlp_assets, plan_folder, tmp_path, seeds) -> dict[int, int]:
    """Each seed's damaged copy of the data `run` is given (the command that reads data and is quick to succeed)."""
    arrays = dict(np.load(mlp_assets / "data.npz"))
    seen: dict[int, int] = {}
    for seed in seeds:
        data, what = npz_mutation(arrays, seed)
        path = tmp_path / f"d{seed}.npz"
        path.write_bytes(data)
        code = assert_as_promised(["run", plan_folder, "--data", path, "--n", "2"], [f"seed {seed}", what])
        seen[code] = seen.get(code, 0) + 1
    return seen


def test_a_damaged_data_file_is_read_or_refused_in_one_line(mlp_assets, plan_folder, tmp_path):
    seen = fuzz_npz(mlp_assets, plan_folder, tmp_path, range(2 * FAST))
    assert seen.get(2), seen


@pytest.mark.slow
def test_many_damaged_data_files_are_read_or_refused_in_one_line(mlp_assets, plan_folder, tmp_path):
    seen = fuzz_npz(mlp_assets, plan_folder, tmp_path, range(2 * FAST, SLOW))
    assert seen.get(0) and seen.get(2), seen
