"""`compile` and the tiered `run`: one command from a model to firmware and host modules placed on a platform,
and the deployment executed tier by tier on held-out data.

compile: augment (on the platform's predicted cost) -> map (exact placement) -> AnnotatePartition -> build:
firmware for the segments on the microcontroller (the last one hands its activation over when its exit does
not fire), one TVM module per host target for its segments. The plan's `deployment` says which tier runs
which segments, from which artefact, and what it receives and hands on.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tvm

from eenn_tvm.augment import Settings, augment
from eenn_tvm.catalog import platform_file
from eenn_tvm.costmodel.model import CostModel
from eenn_tvm.costs import PredictedCost
from eenn_tvm.data import Dataset
from eenn_tvm.errors import EennError
from eenn_tvm.network import Network
from eenn_tvm.outputs import Output, atomic_folder
from eenn_tvm.passes import AnnotatePartition, ChainExits, functions_on, segments_only
from eenn_tvm.placement.segments import place
from eenn_tvm.plan import DeployedTier, Deployment, Plan, Transfer
from eenn_tvm.platform import HostTarget, Link, McuTarget, Platform
from eenn_tvm.targets.host import EarlyExitRunner, HostModule, build
from eenn_tvm.targets.mcu.build import write_firmware
from eenn_tvm.targets.mcu.cores import core_named
from eenn_tvm.targets.mcu.manifest import FirmwareManifest
from eenn_tvm.targets.mcu.qemu import run_in_qemu

FIRMWARE = "firmware"
PLATFORM = "platform.toml"


def compile_model(
    model: str | Path,
    data: str | Path,
    platform_name: str,
    out: Output,
    settings: Settings,
    objective: str = "energy",
    max_latency_s: float | None = None,
    cost_model_path: Path | None = None,
    input_shapes: dict | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> Plan:
    out.check(log)
    platform = Platform.load(platform_name)
    cost_model = CostModel.for_platform(platform, cost_model_path)
    device = platform.device.name

    def cost(m, a):
        return PredictedCost(m, a, cost_model, device, objective, settings.decision)

    with atomic_folder(out, log) as tmp:
        plan = augment(model, data, Output.of(tmp, "augment"), settings, input_shapes, cost=cost, log=log)
        network = Network.from_augment(tmp, plan)
        log(f"placing {len(network.segments)} segments on {platform.name}")
        plan.placement = place(plan, network, platform, cost_model, objective, max_latency_s)
        mod = AnnotatePartition(plan.placement.segments)(network.mod)
        tiers = []
        for target in sorted(platform.targets, key=lambda t: t.tier):
            segments = functions_on(mod, target.name)
            if segments:
                log(f"building {', '.join(segments)} for {target.name}")
                tiers.append(_build_tier(tmp, network, mod, target, segments, platform, settings.database))
        shutil.copyfile(platform_file(platform_name), tmp / PLATFORM)  # the deployment is read back with it
        plan.deployment = Deployment(platform=platform.name, platform_file=PLATFORM, tiers=tiers)
        plan.record_hashes(tmp)
        plan.save(tmp)
    return plan


def _build_tier(
    folder: Path,
    network: Network,
    mod: tvm.IRModule,
    target: McuTarget | HostTarget,
    segments: list[str],
    platform: Platform,
    database: Path | None,
) -> DeployedTier:
    first = network.segments.index(segments[0])
    receives = mod[segments[0]].params[0].ty
    last_out = mod[segments[-1]].ret_ty.fields[0]
    ends_network = segments[-1] == network.segments[-1]
    if target.kind == "mcu":
        if first != 0:
            raise EennError(f"{target.name} is a microcontroller but the placement gives it later segments only")
        write_firmware(
            network,
            core_named(target.core),
            Output.of(folder / FIRMWARE, "firmware"),
            flash_budget=target.flash_bytes,
            ram_budget=target.memory_bytes,
            device_segments=len(segments),
        )
        artifact = FIRMWARE
    else:
        artifact = f"{target.name}.so"
        HostModule(build(host_tier_module(mod, segments), database=database)).export(folder / artifact)
    return DeployedTier(
        target=target.name,
        kind=target.kind,
        segments=segments,
        artifact=artifact,
        receives=Transfer(
            shape=[int(d) for d in receives.shape],
            bits=None if target.name == platform.device.name else platform.transfer_bits(receives.shape),
        ),
        hands_over=None
        if ends_network
        else Transfer(shape=[int(d) for d in last_out.shape], bits=platform.transfer_bits(last_out.shape)),
    )


def host_tier_module(mod: tvm.IRModule, segments: list[str]) -> tvm.IRModule:
    """What a host tier's module is built from: its segments, chained into one call (`ChainExits`)."""
    return ChainExits()(segments_only(mod, segments))


@dataclass
class TierFigures:
    target: str
    samples_in: int
    samples_decided: int
    seconds_mean: float  # compute per sample that reached the tier
    energy_j_mean: float
    received_bits_mean: float  # per sample that reached the tier


def run_tiers(folder: Path, plan: Plan, data: Dataset, log: Callable[[str], None] = lambda _: None) -> dict:
    """Every sample through the tiers in order: the microcontroller tier in QEMU, host tiers as TVM modules."""
    platform = Platform.load(plan.named_file(folder, plan.deployment.platform_file))
    n = len(data)
    predictions = np.full(n, -1)
    exit_index = np.full(n, -1)
    carry: dict[int, np.ndarray] = {i: data.x[i : i + 1] for i in range(n)}
    figures, transfer_energy, transfer_seconds = [], np.zeros(n), np.zeros(n)
    previous = platform.device.name
    for tier in plan.deployment.tiers:
        target = platform.target(tier.target)
        if target.kind != tier.kind:
            raise EennError(f"{folder}: plan.json: its {tier.target} tier is {tier.kind}, its platform's {target.kind}")
        alive = sorted(carry)
        bits = tier.receives.bits or 0
        if target.name != previous:
            link = _link(platform, previous, target.name)
            transfer_energy[alive] += bits * link.energy_j_per_bit
            transfer_seconds[alive] += bits * link.seconds_per_bit + link.latency_s
        log(f"{target.name}: {len(alive)} samples")
        run = _run_mcu if target.kind == "mcu" else _run_host
        seconds, results, handed = run(folder, tier, target, plan, carry, alive)
        for i, (exit_at, klass) in results.items():
            exit_index[i], predictions[i] = exit_at, klass
        carry = handed
        figures.append(
            TierFigures(
                target.name,
                len(alive),
                len(results),
                float(np.mean(seconds)) if len(seconds) else 0.0,
                float(np.mean(seconds)) * target.active_power_w if len(seconds) else 0.0,
                float(bits),
            )
        )
        previous = target.name
    if carry:
        raise EennError("some samples were handed over past the last tier: the deployment is inconsistent")
    compute_energy = sum(f.energy_j_mean * f.samples_in for f in figures) / n
    compute_seconds = sum(f.seconds_mean * f.samples_in for f in figures) / n
    return {
        "samples": n,
        "accuracy": float((predictions == data.y).mean()),
        "exit_histogram": np.bincount(exit_index, minlength=len(plan.exits) + 1).tolist(),
        "per_sample": {"class": predictions.tolist(), "exit": exit_index.tolist()},  # what a live run is checked on
        "decided_per_tier": {f.target: f.samples_decided for f in figures},
        "tiers": [f.__dict__ for f in figures],
        "measured": {
            "energy_j": compute_energy + float(transfer_energy.mean()),
            "expected_latency_s": compute_seconds + float(transfer_seconds.mean()),
        },
        "predicted": {
            "energy_j": plan.placement.energy_j,
            "expected_latency_s": plan.placement.expected_latency_s,
        },
    }


def _link(platform: Platform, sender: str, receiver: str) -> Link:
    for link in platform.links:
        if (link.sender, link.receiver) == (sender, receiver):
            return link
    raise EennError(f"platform {platform.name} has no link from {sender} to {receiver}: compile again")


def _run_mcu(folder: Path, tier: DeployedTier, target: McuTarget, plan: Plan, carry: dict, alive: list[int]):
    firmware = plan.named_file(folder, tier.file).parent
    manifest = FirmwareManifest.load(firmware)
    x = np.concatenate([carry[i] for i in alive])
    device = run_in_qemu(manifest.artifact(firmware, "elf"), manifest.machine, x, manifest.classes)
    seconds = device.instructions * target.cycles_per_instruction / target.clock_hz
    results, handed = {}, {}
    hand_over = manifest.hand_over
    live = np.frombuffer(device.live, np.float32).reshape(-1, *hand_over.shape) if hand_over else None
    continued = 0
    for row, i in enumerate(alive):
        if device.status[row] == 1:  # EENN_CONTINUE
            handed[i] = live[continued].copy()
            continued += 1
        elif device.status[row] == 0:
            results[i] = (int(device.exit_index[row]), int(device.class_index[row]))
        else:
            raise EennError(f"the firmware failed on sample {i} (status {device.status[row]})")
    return seconds, results, handed


def _run_host(folder: Path, tier: DeployedTier, target: HostTarget, plan: Plan, carry: dict, alive: list[int]):
    runner = EarlyExitRunner(HostModule.load(plan.named_file(folder, tier.file)))
    seconds, results, handed = [], {}, {}
    for i in alive:
        started = time.perf_counter()
        exit_at, out = runner.infer(carry[i])
        seconds.append(time.perf_counter() - started)
        if exit_at is None:
            handed[i] = out
        else:
            results[i] = (exit_at, int(out.argmax()))
    return np.array(seconds), results, handed
