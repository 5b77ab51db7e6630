"""A `compile` output seen as a live deployment: its id, and per tier the topic it listens on, the frame its first
segment expects and the tier it hands on to.

Topics live under `eenn/<deployment id>/`: a tier's hand-overs arrive on `.../in/<tier>`, and a device's answers
on `.../answers/<client id>` (the MQTT 5 response topic of its requests). Two deployments on one broker never
see each other's frames, and a frame for another deployment is rejected by its id as well.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eenn_tvm.errors import EennError
from eenn_tvm.plan import DeployedTier, Plan
from eenn_tvm.targets.mcu.manifest import FirmwareManifest
from eenn_tvm.tiers.payload import DEPLOYMENT_ID_BYTES, Expected

TOPIC_ROOT = "eenn"
HOST_DTYPE = np.dtype("<f4")  # what a host module hands on: its segments compute in float32


def deployment_id(plan: Plan) -> bytes:
    """The first 8 bytes of SHA-256 over the deployment, the exits (heads and thresholds) and the decision rule:
    what must agree between tiers for a hand-over to mean the same thing on both sides."""
    document = {
        "deployment": plan.deployment.model_dump(mode="json"),
        "exits": [e.model_dump(mode="json") for e in plan.exits],
        "decision": plan.decision,
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).digest()[:DEPLOYMENT_ID_BYTES]


@dataclass(frozen=True)
class LiveTier:
    index: int  # in the plan's deployment
    name: str  # the platform's target name
    deployed: DeployedTier
    first_segment: int
    topic: str  # where hand-overs for it arrive
    expected: Expected | None  # what its first segment takes over the wire (None: the device, fed by its sensor)


class LiveDeployment:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.plan = Plan.load(self.folder)
        if self.plan.deployment is None:
            raise EennError(
                f"{folder}: has no deployment: make one with `eenn-tvm compile MODEL --data D --platform P -o OUT`"
            )
        self.id = deployment_id(self.plan)
        self.prefix = f"{TOPIC_ROOT}/{self.id.hex()}"
        self.tiers: list[LiveTier] = []
        dtype = HOST_DTYPE
        for index, deployed in enumerate(self.plan.deployment.tiers):
            first = int(deployed.segments[0].removeprefix("segment_"))
            expected = None if index == 0 else Expected(self.id, first, dtype, tuple(deployed.receives.shape))
            self.tiers.append(
                LiveTier(index, deployed.target, deployed, first, f"{self.prefix}/in/{deployed.target}", expected)
            )
            dtype = self._hand_over_dtype(deployed)

    @property
    def device(self) -> LiveTier:
        return self.tiers[0]

    @property
    def end(self) -> int:
        """The index of the last segment of the network (the one without an exit)."""
        return len(self.plan.exits)

    def tier(self, name: str) -> LiveTier:
        for tier in self.tiers:
            if tier.name == name:
                return tier
        names = ", ".join(t.name for t in self.tiers)
        raise EennError(f"{self.folder}: the deployment has no tier {name!r}: it has {names}")

    def next_of(self, tier: LiveTier) -> LiveTier | None:
        return self.tiers[tier.index + 1] if tier.index + 1 < len(self.tiers) else None

    def answers_topic(self, client_id: str) -> str:
        return f"{self.prefix}/answers/{client_id}"

    def firmware(self) -> FirmwareManifest:
        if self.device.deployed.kind != "mcu":
            raise EennError(f"{self.folder}: the first tier ({self.device.name}) is not a microcontroller")
        deployed = self.device.deployed
        self.plan.named_file(self.folder, deployed.file)  # firmware.json itself, as compile wrote it
        return FirmwareManifest.load(self.folder / deployed.artifact)

    def _hand_over_dtype(self, deployed: DeployedTier) -> np.dtype:
        if deployed.kind == "mcu" and deployed.hands_over is not None:
            return np.dtype(self.firmware().hand_over.dtype).newbyteorder("<")
        return HOST_DTYPE
