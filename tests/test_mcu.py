"""The microcontroller backend as a user meets it: `eenn-tvm build` writes a CMake firmware project that
arm-none-eabi-gcc compiles, `eenn-tvm verify` runs it in qemu-system-arm (or built for this host with
AddressSanitizer and UndefinedBehaviorSanitizer) and compares every sample with onnxruntime or TVM."""

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
import zoo
from conftest import MLPERF, REPO
from test_cli import assert_one_line_error, run_cli

from eenn_tvm.targets.mcu.qemu import run_in_qemu

CIFAR_IMAGES = MLPERF / "cifar10_20_images.npz"


@pytest.fixture(scope="session")
def firmware(tmp_path_factory):
    """firmware(source, target, *options) -> (folder, manifest), built once per session."""
    built = {}

    def get(source, target, *options):
        key = (str(source), target, options)
        if key not in built:
            out = tmp_path_factory.mktemp("firmware") / f"{target}"
            code, stdout, stderr = run_cli("build", source, "--target", target, "-o", out, "--json", *options)
            assert code == 0, stderr
            built[key] = out, json.loads(stdout)
        return built[key]

    return get


def random_data(path, shape, classes, n=8, scale=1.0):
    rng = np.random.default_rng(0)
    np.savez(path, x=(scale * rng.standard_normal((n, *shape[1:]))).astype(np.float32), y=rng.integers(0, classes, n))
    return path


def verify(folder, data, *options):
    code, stdout, stderr = run_cli("verify", folder, "--data", data, "--json", *options)
    assert code in (0, 1), stderr
    return code, json.loads(stdout)


def test_mlperf_resnet8_on_cortex_m4_matches_onnxruntime_on_real_cifar_images(firmware, mlperf_model):
    folder, _ = firmware(mlperf_model("resnet8_cifar10"), "cortex-m4")
    code, result = verify(folder, CIFAR_IMAGES)
    assert code == 0
    assert result["samples"] == 20 and result["class_mismatches"] == 0 and result["exit_mismatches"] == 0
    assert result["max_abs_error"] <= 1e-4
    assert result["accuracy"] >= 0.9  # the reference model gets 19 of these 20 right
    assert result["instructions_mean"] > 12_500_992  # at least one instruction per MAC
    assert result["flash_bytes"] > 4 * 78_000 and result["ram_bytes"] >= result["ram_lower_bound_bytes"]


def test_the_kernel_library_runs_every_layer_of_resnet8_with_its_scratch_in_an_arena_at_the_lower_bound(
    firmware, mlperf_model
):
    folder, manifest = firmware(mlperf_model("resnet8_cifar10"), "cortex-m4")
    driver = (folder / "eenn_model.c").read_text()
    assert manifest["kernels"] == "library"
    calls = {kernel: driver.count(f"  {kernel}(&") for kernel in ("eenn_conv_f32", "eenn_add_f32", "eenn_dense_f32")}
    assert calls == {"eenn_conv_f32": 9, "eenn_add_f32": 3, "eenn_dense_f32": 1} and "eenn_avg_pool_f32(&" in driver
    assert "const eenn_conv_f32_t" in (folder / "eenn_weights.c").read_text()  # parameters in flash
    memory = manifest["memory"]
    assert memory["arena_bytes"] == memory["lower_bound_bytes"] and memory["workspace_bytes"] == 0


@pytest.fixture(scope="session")
def resnet8_int8(mlperf_model, tmp_path_factory):
    """MLPerf ResNet-8 quantised by `eenn-tvm quantize` on the CIFAR images."""
    int8_model = tmp_path_factory.mktemp("quantized") / "resnet8_int8.onnx"
    code, _, stderr = run_cli("quantize", mlperf_model("resnet8_cifar10"), "--data", CIFAR_IMAGES, "-o", int8_model)
    assert code == 0, stderr
    return int8_model


def test_mlperf_resnet8_in_int8_on_cortex_m4_equals_the_integer_host_module_in_a_third_of_the_flash(
    firmware, mlperf_model, resnet8_int8
):
    folder, manifest = firmware(resnet8_int8, "cortex-m4")
    driver = (folder / "eenn_model.c").read_text()
    assert (
        manifest["dtype"] == "int8" and driver.count("  eenn_conv_s8(&") == 9 and driver.count("  eenn_add_s8(&") == 3
    )
    code, result = verify(folder, CIFAR_IMAGES, "--n", "20")
    assert code == 0, result
    assert result["max_abs_error"] <= 1e-6 and result["exit_mismatches"] == 0  # softmax after equal integers
    assert result["onnxruntime_agreement"] == 1.0  # issue 15: the same class as onnxruntime on all 20
    assert result["instructions_mean"] <= 2.0 * 12_500_992  # issue 15: <= 2 instructions per MAC on the M4
    _, float32 = firmware(mlperf_model("resnet8_cifar10"), "cortex-m4")
    assert manifest["sizes"]["flash"] <= 0.3 * float32["sizes"]["flash"]
    assert manifest["memory"]["arena_bytes"] == manifest["memory"]["lower_bound_bytes"]


def test_an_int8_firmware_hashes_its_qdq_model_and_stream_program_and_verify_refuses_a_swapped_qdq_model(
    firmware, resnet8_int8, tmp_path
):
    folder, manifest = firmware(resnet8_int8, "cortex-m4")
    qdq_model, stream_elf = manifest["int8"]["onnx"], manifest["stream_elf"]
    assert {qdq_model, stream_elf, manifest["reference"], manifest["elf"]} <= set(manifest["hashes"])
    assert (folder / stream_elf).is_file() and manifest["reference"].endswith(".so")
    copy = tmp_path / "fw"
    shutil.copytree(folder, copy)
    model = onnx.load(str(copy / qdq_model))
    model.doc_string = "edited"
    onnx.save(model, str(copy / qdq_model))
    assert_one_line_error(("verify", copy, "--data", CIFAR_IMAGES), f"{copy / qdq_model}: changed since firmware.json")


def test_eenn_infer_int8_on_inputs_quantised_with_the_header_constants_gives_eenn_infers_results_bit_for_bit(
    firmware, resnet8_int8, tmp_path
):
    """A user's int8 pipeline quantises with EENN_INPUT_SCALE and EENN_INPUT_ZERO_POINT; every other input starts
    misaligned in the verify program, so eenn_infer_int8 runs in place and from its copy."""
    folder, manifest = firmware(resnet8_int8, "cortex-m4")
    header, driver = (folder / "eenn_model.h").read_text(), (folder / "eenn_model.c").read_text()
    defines = dict(re.findall(r"^#define (EENN_\w+) (\S+)", header, re.MULTILINE))
    scale, zero_point = np.float32(defines["EENN_INPUT_SCALE"].rstrip("f")), int(defines["EENN_INPUT_ZERO_POINT"])
    assert "eenn_status_t eenn_infer_int8(const int8_t *input, eenn_result_t *out);" in header
    segment_0 = driver[driver.index("segment_0(void) {") :].split("\n}")[0]
    assert "eenn_quantize_s8" not in segment_0 and driver.count("eenn_quantize_s8(&") == 1  # moved into eenn_infer
    images = np.load(CIFAR_IMAGES)["x"][:10]
    off_grid = images + np.random.default_rng(0).uniform(-0.5, 0.5, images.shape)  # rounding half to even at work
    x = np.concatenate([images, off_grid]).astype(np.float32)
    x_q = np.clip(np.rint(x / scale) + zero_point, -128, 127).astype(np.int8)
    from_float = run_in_qemu(folder / manifest["elf"], manifest["machine"], x, manifest["classes"])
    from_int8 = run_in_qemu(folder / manifest["int8_input"]["elf"], manifest["machine"], x_q, manifest["classes"])
    for field in ("status", "class_index", "exit_index", "confidence", "scores"):
        np.testing.assert_array_equal(getattr(from_int8, field), getattr(from_float, field))
    code, result = verify(folder, CIFAR_IMAGES, "--n", "4", "--int8-input")
    assert code == 0 and result["entry"] == "eenn_infer_int8" and result["max_abs_error"] <= 1e-6, result


@pytest.mark.parametrize("dtype", ["float32", pytest.param("int8", marks=pytest.mark.slow)])
def test_firmware_without_an_int8_entry_point_says_so_to_verify_int8_input(firmware, mlperf_model, request, dtype):
    """float32, and int8 with TVM's kernels only (TVM fuses the input's quantisation into its first kernel, so the
    driver finds no call of its own to move into eenn_infer)."""
    if dtype == "int8":
        folder, manifest = firmware(request.getfixturevalue("resnet8_int8"), "cortex-m4", "--kernels", "c")
    else:
        folder, manifest = firmware(mlperf_model("resnet8_cifar10"), "cortex-m4")
    header = (folder / "eenn_model.h").read_text()
    assert "eenn_infer_int8" not in header and "EENN_INPUT_SCALE" not in header and manifest["int8_input"] is None
    args = ("verify", folder, "--data", CIFAR_IMAGES, "--int8-input")
    assert_one_line_error(args, f"{folder}: has no int8 entry point (eenn_infer_int8)")


@pytest.mark.slow
def test_the_examples_int8_early_exit_network_on_cortex_m4_is_bit_exact_and_takes_onnxruntimes_exits(
    firmware, augmented, quantized, fashion
):
    folder, manifest = firmware(quantized[0], "cortex-m4", "--dtype", "int8")
    code, result = verify(folder, fashion / "test.npz", "--n", "200")
    assert code == 0, result
    assert result["max_abs_error"] == 0  # the exits' dequantised int8 logits, bit for bit
    assert result["exit_mismatches"] == 0 and result["class_mismatches"] == 0
    assert result["onnxruntime_agreement"] >= 0.995
    assert len(result["instructions_per_exit"]) >= 2  # the exits are compiled in, and taken
    code, from_int8 = verify(folder, fashion / "test.npz", "--n", "200", "--int8-input")
    same = ("class_mismatches", "exit_mismatches", "max_abs_error", "accuracy", "onnxruntime_agreement")
    assert code == 0 and {k: from_int8[k] for k in same} == {k: result[k] for k in same}
    _, float32 = firmware(augmented[0], "cortex-m4")
    assert manifest["sizes"]["flash"] <= 0.3 * float32["sizes"]["flash"]


@pytest.mark.slow
@pytest.mark.parametrize("family", ["mobilenet", "inception", "ecg"])  # depthwise-separable, branch-and-concat, 1-D
def test_int8_models_a_new_user_brings_run_bit_exact_on_cortex_m4(firmware, zoo_model, family, tmp_path):
    model = zoo_model(family, "legacy")
    data = random_data(tmp_path / "x.npz", model.input_shape, 5, n=16)  # labels valid for every zoo classifier
    int8_model = tmp_path / "int8.onnx"
    assert run_cli("quantize", model.path, "--data", data, "-o", int8_model)[0] == 0
    folder, manifest = firmware(int8_model, "cortex-m4", "--ram", "1048576")
    code, result = verify(folder, data, "--n", "8")
    assert code == 0 and result["max_abs_error"] == 0 and result["onnxruntime_agreement"] == 1.0, result
    assert manifest["memory"]["arena_bytes"] == manifest["memory"]["lower_bound_bytes"]
    code, from_int8 = verify(folder, data, "--n", "8", "--int8-input")  # the int8 entry point, whatever comes first
    assert code == 0 and from_int8["max_abs_error"] == 0 and from_int8["onnxruntime_agreement"] == 1.0, from_int8


def test_building_a_float_model_or_a_folder_without_its_int8_network_as_int8_says_how_to_quantise(
    mlperf_model, augmented, tmp_path
):
    for source in (mlperf_model("kws_dscnn"), augmented[0]):
        args = ["build", source, "--target", "cortex-m4", "--dtype", "int8", "-o", tmp_path / "fw"]
        assert_one_line_error(args, "eenn-tvm quantize")
        assert not (tmp_path / "fw").exists()


@pytest.mark.parametrize("target", ["cortex-m3", "cortex-m0plus", "cortex-m33", "cortex-m55"])
def test_kws_dscnn_matches_onnxruntime_on_every_other_core(firmware, mlperf_model, target, tmp_path):
    bigger_part = ["--ram", "131072"] if target == "cortex-m0plus" else []  # the default M0+ part has 32 KiB
    folder, manifest = firmware(mlperf_model("kws_dscnn"), target, *bigger_part)
    code, result = verify(folder, random_data(tmp_path / "mfcc.npz", manifest["input_shape"], 12, n=2, scale=10))
    assert code == 0 and result["class_mismatches"] == 0 and result["max_abs_error"] <= 1e-4
    assert result["machine"] == {"cortex-m33": "mps2-an505", "cortex-m55": "mps3-an547"}.get(target, "mps2-an385")


@pytest.mark.slow
@pytest.mark.parametrize("target", ["cortex-m3", "cortex-m4", "cortex-m7"])
def test_early_exit_network_takes_the_same_exits_in_qemu_as_on_the_host(firmware, augmented, fashion, target):
    out, plan, _ = augmented
    folder, manifest = firmware(out, target, "--ram", "262144")  # a larger part than the M3 default
    assert manifest["kind"] == "eenn" and len(manifest["exits"]) == len(plan["exits"])
    code, result = verify(folder, fashion / "test.npz", "--n", "40")
    assert code == 0, result
    assert result["exit_mismatches"] == 0 and result["class_mismatches"] == 0 and result["max_abs_error"] <= 1e-4
    per_exit = result["instructions_per_exit"]
    assert len(per_exit) >= 2, "the samples should leave at more than one exit"
    # Leaving earlier costs fewer instructions, and the mean falls with the exit rate as the plan predicts.
    means = [row["instructions_mean"] for row in per_exit]
    assert means == sorted(means)
    p = result["plan_vs_measured"]
    assert p["measured_fraction"] < 1 and abs(p["measured_fraction"] - p["predicted_fraction"]) < 0.15


@pytest.mark.slow
def test_a_long_run_in_qemu_is_split_into_boots_that_give_the_same_records(firmware, augmented, fashion, monkeypatch):
    from eenn_tvm.targets.mcu import qemu
    from eenn_tvm.targets.mcu.manifest import FirmwareManifest

    folder, _ = firmware(augmented[0], "cortex-m4", "--ram", "262144")
    manifest = FirmwareManifest.load(folder)
    x = np.load(fashion / "test.npz")["x"][:12]
    whole = qemu.run_in_qemu(folder / manifest.elf, manifest.machine, x, manifest.classes)
    monkeypatch.setattr(qemu, "QEMU_CHUNK", 5)
    split = qemu.run_in_qemu(folder / manifest.elf, manifest.machine, x, manifest.classes)
    for field in ("status", "class_index", "exit_index", "scores"):
        assert np.array_equal(getattr(whole, field), getattr(split, field)), field
    # SysTick counts in steps of a few dozen instructions, and where a sample starts within a step depends on
    # what ran since boot: counts may differ by one step.
    assert np.abs(whole.instructions - split.instructions).max() <= 64
    assert split.stack_bytes == whole.stack_bytes and split.live == whole.live


@pytest.mark.parametrize("family", list(zoo.MODELS))
def test_generated_c_is_clean_under_asan_and_ubsan(firmware, zoo_model, family, tmp_path):
    model = zoo_model(family, "legacy")
    folder, manifest = firmware(model.path, "cortex-m4")
    code, result = verify(
        folder, random_data(tmp_path / "x.npz", model.input_shape, manifest["classes"]), "--on", "host"
    )
    assert code == 0 and result["machine"] == "host"
    assert result["max_abs_error"] <= 1e-4 and result["class_mismatches"] == 0


@pytest.mark.slow
def test_early_exit_network_is_clean_under_asan_and_ubsan(firmware, augmented, fashion):
    folder, _ = firmware(augmented[0], "cortex-m4", "--ram", "262144")
    code, result = verify(folder, fashion / "test.npz", "--n", "40", "--on", "host")
    assert code == 0 and result["exit_mismatches"] == 0


@pytest.mark.parametrize("family", ["resnet", "mobilenet", "inception"])
def test_arena_stays_within_a_quarter_of_the_lower_bound(firmware, zoo_model, family):
    _, manifest = firmware(zoo_model(family, "legacy").path, "cortex-m4")
    memory = manifest["memory"]
    assert memory["lower_bound_bytes"] <= memory["arena_bytes"] <= 1.25 * memory["lower_bound_bytes"]


def test_instruction_counts_are_deterministic(firmware, mlperf_model, tmp_path):
    folder, manifest = firmware(mlperf_model("kws_dscnn"), "cortex-m3")
    data = random_data(tmp_path / "mfcc.npz", manifest["input_shape"], 12, n=2, scale=10)
    assert verify(folder, data)[1]["instructions_mean"] == verify(folder, data)[1]["instructions_mean"]


def test_c_kernels_compiled_by_gcc_match_too(firmware, mlperf_model, tmp_path):
    folder, manifest = firmware(mlperf_model("kws_dscnn"), "cortex-m4", "--kernels", "c")
    assert manifest["kernels"] == "c" and "eenn_conv_f32" not in (folder / "eenn_model.c").read_text()
    code, result = verify(folder, random_data(tmp_path / "mfcc.npz", manifest["input_shape"], 12, n=2, scale=10))
    assert code == 0 and result["max_abs_error"] <= 1e-4


def test_the_project_builds_out_of_the_box_with_cmake(firmware, mlperf_model, tmp_path):
    folder, _ = firmware(mlperf_model("kws_dscnn"), "cortex-m3")
    toolchain = folder / "cmake" / "arm-none-eabi.cmake"
    build = tmp_path / "build"
    for command in (
        ["cmake", "-S", folder, "-B", build, f"-DCMAKE_TOOLCHAIN_FILE={toolchain}"],
        ["cmake", "--build", build],
    ):
        subprocess.run([str(c) for c in command], check=True, capture_output=True)
    assert (build / "eenn_verify.elf").is_file() and (build / "libeenn_model.a").is_file()


@pytest.mark.parametrize("cross", [False, True])
def test_the_repository_cmake_builds_the_c_runtime_for_the_host_and_for_cortex_m(cross, tmp_path):
    command = ["cmake", "-S", REPO, "-B", tmp_path, f"-DPython3_EXECUTABLE={sys.executable}"]
    if cross:
        command += [
            f"-DCMAKE_TOOLCHAIN_FILE={REPO / 'targets/mcu/cmake/arm-none-eabi.cmake'}",
            "-DEENN_CPU_FLAGS=-mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16",
        ]
    subprocess.run([str(c) for c in command], check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(tmp_path)], check=True, capture_output=True)
    assert (tmp_path / "libeenn_runtime.a").is_file()


def test_the_library_has_no_malloc_and_no_printf(firmware, mlperf_model):
    folder, _ = firmware(mlperf_model("kws_dscnn"), "cortex-m3")
    library = folder / "bin" / "libeenn_model.a"
    undefined = subprocess.run(["arm-none-eabi-nm", "-u", library], capture_output=True, text=True, check=True).stdout
    for symbol in ("malloc", "free", "printf", "puts", "fopen"):
        assert f" {symbol}\n" not in undefined


def test_builds_are_deterministic(mlperf_model, tmp_path):
    for out in ("a", "b"):
        assert run_cli("build", mlperf_model("kws_dscnn"), "--target", "cortex-m3", "-o", tmp_path / out)[0] == 0
    for name in ("eenn_model.c", "eenn_weights.c", "eenn_model.h", "kernels/kernels.c"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_a_budget_the_model_does_not_fit_is_one_clear_line_and_nothing_is_written(mlperf_model, tmp_path):
    out = tmp_path / "fw"
    code, stdout, stderr = run_cli(
        "build", mlperf_model("resnet8_cifar10"), "--target", "cortex-m4", "--ram", "65536", "-o", out
    )
    last = stderr.strip().splitlines()[-1]  # after the progress lines
    assert code == 2 and stdout == "" and last.startswith("eenn-tvm: error: ") and "RAM" in last and "65,536" in last
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("source", ["missing.onnx", "empty_folder"])
def test_a_source_that_is_neither_model_nor_augment_output_is_one_clear_line(source, tmp_path):
    (tmp_path / "empty_folder").mkdir()
    assert_one_line_error(["build", tmp_path / source, "--target", "cortex-m4", "-o", tmp_path / "fw"])


def test_verify_rejects_data_of_the_wrong_shape(firmware, mlperf_model, tmp_path):
    folder, _ = firmware(mlperf_model("kws_dscnn"), "cortex-m3")
    data = random_data(tmp_path / "x.npz", (1, 3, 32, 32), 12)
    assert_one_line_error(["verify", folder, "--data", data], "49x10")


@pytest.mark.slow
def test_relu6_networks_plain_and_early_exit_match_the_host_in_qemu(firmware, zoo_model, tmp_path):
    """ReLU6 is an ONNX Clip, which TVM's front end emits as TIR (maximum, minimum): MobileNetV2 as it is, and an
    early-exit network of it, build for a Cortex-M and take the host's exits and classes."""
    model = zoo_model("mobilenet_v2", "legacy")
    x, y = zoo.self_labelled(model.path, model.input_shape, 600)
    np.savez(tmp_path / "data.npz", x=x[:500], y=y[:500])
    np.savez(tmp_path / "test.npz", x=x[500:], y=y[500:])
    out = tmp_path / "eenn"
    code, _, stderr = run_cli(
        "augment", model.path, "--data", tmp_path / "data.npz", "--max-accuracy-drop", "0.1", "--no-cache", "-o", out
    )
    assert code == 0, stderr
    for source in (model.path, out):
        folder, manifest = firmware(source, "cortex-m4")
        code, result = verify(folder, tmp_path / "test.npz", "--n", "30")
        assert code == 0 and result["class_mismatches"] == 0 and result["exit_mismatches"] == 0
        assert result["max_abs_error"] <= 1e-4
    assert len(manifest["exits"]) >= 1, "the early-exit network should keep an exit"


def test_a_model_with_external_weight_files_builds_and_verifies_on_cortex_m7(firmware, zoo_model, tmp_path):
    model = zoo_model("resnet", "dynamo")  # torch's dynamo exporter keeps the weights in a .data file beside it
    folder, manifest = firmware(model.path, "cortex-m7")
    code, result = verify(folder, random_data(tmp_path / "x.npz", model.input_shape, manifest["classes"], n=2))
    assert code == 0 and result["machine"] == "mps2-an500" and result["max_abs_error"] <= 1e-4


@pytest.mark.parametrize(
    "edit, fragment",
    [
        (lambda m: m.pop("elf"), "firmware.json: elf: missing"),
        (lambda m: m.update(kind="cnn"), "firmware.json: kind: expected one of model, eenn, got 'cnn'"),
        (lambda m: m["memory"].update(arena_bytes="big"), "firmware.json: memory.arena_bytes: expected int"),
    ],
)
def test_a_firmware_manifest_with_a_bad_field_is_one_line_naming_it(firmware, mlperf_model, tmp_path, edit, fragment):
    folder, _ = firmware(mlperf_model("kws_dscnn"), "cortex-m3")
    manifest = json.loads((folder / "firmware.json").read_text())
    edit(manifest)
    (tmp_path / "fw").mkdir()
    (tmp_path / "fw" / "firmware.json").write_text(json.dumps(manifest))
    data = random_data(tmp_path / "x.npz", (1, 1, 49, 10), 12)
    assert_one_line_error(["verify", tmp_path / "fw", "--data", data], fragment, "run `eenn-tvm build` again")


def test_a_model_whose_tensors_are_named_like_the_drivers_own_symbols_builds_and_verifies(
    firmware, zoo_model, tmp_path
):
    """ONNX names are free text: an input called `arena` (the driver's own buffer) or a tensor called `static`
    (a C keyword) is renamed in the C, not declared twice."""
    model = onnx.load(zoo_model("mobilenet", "legacy").path)
    renames = {model.graph.input[0].name: "arena", model.graph.node[0].output[0]: "static"}
    for value in model.graph.input:
        value.name = renames.get(value.name, value.name)
    for node in model.graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    onnx.save(model, tmp_path / "named.onnx")
    folder, manifest = firmware(tmp_path / "named.onnx", "cortex-m4")
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    code, result = verify(folder, random_data(tmp_path / "x.npz", shape, manifest["classes"], n=4))
    assert code == 0 and result["class_mismatches"] == 0 and result["max_abs_error"] <= 1e-4
