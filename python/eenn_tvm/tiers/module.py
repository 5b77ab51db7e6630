"""A host tier's segments with their exits compiled in: the one place the tiers call the host backend (its
one-call `early_exit` function, through `EarlyExitRunner`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from eenn_tvm.decision import confidence, softmax
from eenn_tvm.network import ends_in_softmax
from eenn_tvm.targets.host import EarlyExitRunner, HostModule
from eenn_tvm.tiers.deployment import LiveDeployment, LiveTier


@dataclass(frozen=True)
class Outcome:
    exit_index: int | None  # None: no exit fired here, hand `activation` on
    class_index: int = -1
    confidence: float = 0.0
    activation: np.ndarray | None = None


class TierModule:
    def __init__(self, deployment: LiveDeployment, tier: LiveTier):
        plan = deployment.plan
        module = HostModule.load(plan.named_file(deployment.folder, tier.deployed.file))
        self._runner = EarlyExitRunner(module)
        self._end = deployment.end
        self._rule = plan.decision
        # The end of the network answers with its own output's confidence: the max softmax probability, as the
        # firmware computes it, or the output itself where the model ends in a softmax.
        self._end_is_probability = ends_in_softmax(onnx.load(str(plan.artifact(deployment.folder, "model_onnx"))))

    def infer(self, x: np.ndarray) -> Outcome:
        exit_index, out = self._runner.infer(x)
        if exit_index is None:
            return Outcome(None, activation=out)
        scores = out.reshape(1, -1)
        if exit_index != self._end:
            value = confidence(scores, self._rule)
        else:
            value = scores.max(-1) if self._end_is_probability else softmax(scores).max(-1)
        return Outcome(exit_index, int(scores.argmax()), float(value[0]))
