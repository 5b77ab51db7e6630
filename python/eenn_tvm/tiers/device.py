"""`eenn-tvm device`: the firmware in QEMU on a stream of inputs, its hand-overs published through a gateway, every
image's answer recorded (class, exit, tier, degraded, latency)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from eenn_tvm.data import Dataset
from eenn_tvm.errors import EennError
from eenn_tvm.platform import Platform
from eenn_tvm.targets.mcu.qemu import run_in_qemu
from eenn_tvm.targets.mcu.stream import BoardStream
from eenn_tvm.textui import progress
from eenn_tvm.tiers.deployment import LiveDeployment
from eenn_tvm.tiers.gateway import Fallback, Gateway
from eenn_tvm.tiers.mqtt import Broker
from eenn_tvm.tiers.payload import HAND_OVER_HEADER_BYTES

EENN_OK, EENN_CONTINUE = 0, 1
SETTLE_MARGIN_S = 5.0  # beyond the deadline, for the last answers to arrive before the run gives up on them


@dataclass(frozen=True)
class ImageRecord:
    index: int
    label: int
    class_index: int
    exit_index: int
    tier: str  # where the answer came from
    degraded: bool
    confidence: float
    device_ms: float  # the device's compute, from QEMU's instruction count at the platform's clock
    remote_ms: float | None  # hand-over published -> answer received (wall clock); None if decided on the device
    rejected: str | None = None


def run_device(
    deployment: LiveDeployment,
    data: Dataset,
    broker: Broker,
    deadline_s: float,
    log: Callable[[str], None] = lambda _: None,
) -> dict:
    manifest = deployment.firmware()
    platform = Platform.load(deployment.plan.named_file(deployment.folder, deployment.plan.deployment.platform_file))
    target = platform.target(deployment.device.name)
    seconds_per_instruction = target.cycles_per_instruction / target.clock_hz
    gateway = None
    if deployment.next_of(deployment.device) is not None:
        gateway = Gateway(deployment, broker, f"eenn-device-{uuid.uuid4().hex[:12]}", deadline_s)
        gateway.start()
    local: dict[int, tuple] = {}
    device_ms = np.zeros(len(data))
    try:
        with BoardStream(deployment.folder / deployment.device.deployed.artifact, manifest) as board:
            log(f"{manifest.machine}: {len(data)} inputs over UART0")
            board.feed(data.x)
            for record in progress(board.records(), manifest.machine, total=len(data)):
                i = record.index
                device_ms[i] = 1000 * record.instructions * seconds_per_instruction
                if record.status == EENN_OK:
                    local[i] = (record.class_index, record.exit_index, record.confidence)
                elif record.status == EENN_CONTINUE and gateway is not None:
                    live = np.frombuffer(record.live, manifest.hand_over.dtype).reshape(manifest.hand_over.shape)
                    gateway.hand_over(i, live, Fallback(record.class_index, record.exit_index, record.confidence))
                else:
                    raise EennError(f"the firmware failed on input {i} (status {record.status})")
        if gateway is not None and not gateway.wait(deadline_s + SETTLE_MARGIN_S):
            raise EennError("some requests were neither answered nor timed out: the gateway's clock stopped")
    finally:
        if gateway is not None:
            gateway.stop()
    records = _records(deployment, data, local, gateway, device_ms)
    return _summary(deployment, records, gateway, deadline_s)


def _records(deployment, data, local, gateway, device_ms) -> list[ImageRecord]:
    device = deployment.device.name
    records = []
    for i in range(len(data)):
        if i in local:
            klass, exit_index, confidence = local[i]
            records.append(
                ImageRecord(i, int(data.y[i]), klass, exit_index, device, False, confidence, device_ms[i], None)
            )
            continue
        r = gateway.resolved[i]
        records.append(
            ImageRecord(
                i,
                int(data.y[i]),
                r.class_index,
                r.exit_index,
                r.tier,
                r.degraded,
                r.confidence,
                device_ms[i],
                1000 * r.latency_s,
                r.rejected,
            )
        )
    return records


def _summary(
    deployment: LiveDeployment, records: list[ImageRecord], gateway: Gateway | None, deadline_s: float
) -> dict:
    classes = np.array([r.class_index for r in records])
    labels = np.array([r.label for r in records])
    tiers = []
    for tier in deployment.tiers:
        mine = [r for r in records if r.tier == tier.name]
        remote = np.array([r.remote_ms for r in mine if r.remote_ms is not None and not r.degraded])
        tiers.append(
            {
                "tier": tier.name,
                "answered": len(mine),
                "degraded": sum(r.degraded for r in mine),
                "accuracy": float(np.mean([r.class_index == r.label for r in mine])) if mine else None,
                "remote_ms_p50": float(np.percentile(remote, 50)) if len(remote) else None,
                "remote_ms_p99": float(np.percentile(remote, 99)) if len(remote) else None,
            }
        )
    link = None
    if gateway is not None:
        receiver = gateway.next
        frames = max(gateway.frames_sent, 1)
        link = {
            "from": deployment.device.name,
            "to": receiver.name,
            "frames": gateway.frames_sent,
            "payload_bits_per_frame": 8 * gateway.payload_bytes_sent / frames if gateway.frames_sent else 0,
            "plan_bits_per_frame": receiver.deployed.receives.bits,
            "header_bytes_per_frame": HAND_OVER_HEADER_BYTES,
            "bytes": gateway.bytes_sent,
        }
    return {
        "samples": len(records),
        "accuracy": float((classes == labels).mean()),
        "exit_histogram": np.bincount([r.exit_index for r in records], minlength=deployment.end + 1).tolist(),
        "degraded": sum(r.degraded for r in records),
        "deadline_ms": 1000 * deadline_s,
        "tiers": tiers,
        "link": link,
        "late_answers": gateway.late if gateway else 0,
        "duplicate_answers": gateway.duplicates if gateway else 0,
        "rejected": dict(gateway.rejected) if gateway else {},
        "device_ms_mean": float(np.mean([r.device_ms for r in records])),
        "records": [asdict(r) for r in records],
    }


def recorded_hand_overs(deployment: LiveDeployment, x: np.ndarray) -> list[tuple[np.ndarray, Fallback]]:
    """The hand-overs the firmware makes on `x` (QEMU, file I/O), each with its fallback: what a simulated device
    replays."""
    manifest = deployment.firmware()
    folder = deployment.folder / deployment.device.deployed.artifact
    run = run_in_qemu(manifest.artifact(folder, "elf"), manifest.machine, x, manifest.classes)
    handed = np.flatnonzero(run.status == EENN_CONTINUE)
    tensors = np.frombuffer(run.live, manifest.hand_over.dtype).reshape(-1, *manifest.hand_over.shape)
    return [
        (tensors[k], Fallback(int(run.class_index[i]), int(run.exit_index[i]), float(run.confidence[i])))
        for k, i in enumerate(handed)
    ]
