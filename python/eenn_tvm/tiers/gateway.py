"""The device's side of the broker: publishes its hand-overs to the next tier and collects the answers.

Each hand-over is a request with a fresh 16-byte id, sent at QoS 1 with an MQTT 5 response topic of the
gateway's own and the id as correlation data. A request the tiers do not answer within the deadline, or that a
tier rejects, is answered by the device's last exit (the firmware gives it with the hand-over), marked degraded.
A tier's answer that comes after that is counted as late; the degraded answer stands.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass

import numpy as np

from eenn_tvm.tiers.deployment import LiveDeployment
from eenn_tvm.tiers.mqtt import Broker, Connection
from eenn_tvm.tiers.payload import FrameError, decode_answer, encode_hand_over

CLOCK_TICK_S = 0.005  # how often overdue requests are looked for


@dataclass(frozen=True)
class Fallback:
    """The device's last exit: the answer when the tiers after it give none in time."""

    class_index: int
    exit_index: int
    confidence: float


@dataclass(frozen=True)
class Resolution:
    class_index: int
    exit_index: int
    confidence: float
    tier: str  # the tier that answered; the device's own name for a degraded answer
    degraded: bool
    latency_s: float  # from publishing the hand-over to the answer (or to the deadline)
    rejected: str | None = None  # why a tier refused the request, when it did


@dataclass
class _Pending:
    index: int
    sent: float
    fallback: Fallback


class Gateway:
    def __init__(self, deployment: LiveDeployment, broker: Broker, client_id: str, deadline_s: float):
        self.deployment = deployment
        self.next = deployment.next_of(deployment.device)
        self.deadline_s = deadline_s
        self.reply_topic = deployment.answers_topic(client_id)
        self.resolved: dict[int, Resolution] = {}
        self.answered_by_tier: set[bytes] = set()  # request ids a tier answered, in time or late
        self.late = 0
        self.duplicates = 0  # answers for a request already answered by a tier (a redelivery answered twice)
        self.frames_sent = 0
        self.bytes_sent = 0
        self.payload_bytes_sent = 0
        self.rejected: Counter = Counter()
        self._pending: dict[bytes, _Pending] = {}
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)
        self._running = threading.Event()
        self._connection = Connection(broker, client_id, self._on_answer, subscriptions=(self.reply_topic,))

    def start(self) -> None:
        self._connection.start()
        self._running.set()
        threading.Thread(target=self._watch_deadlines, daemon=True).start()

    def stop(self) -> None:
        self._running.clear()
        self._connection.stop(end_session=True)

    def hand_over(self, index: int, live: np.ndarray, fallback: Fallback) -> None:
        """Publish the device's live tensor for sample `index` as a new request."""
        request_id = uuid.uuid4().bytes
        frame = encode_hand_over(self.deployment.id, request_id, self.next.first_segment, live)
        self.send(index, request_id, frame, fallback, payload_bytes=live.nbytes)

    def send(self, index: int, request_id: bytes, frame: bytes, fallback: Fallback, payload_bytes: int = 0) -> None:
        """Publish a frame as it is (a benchmark sends damaged ones too) and start its deadline."""
        with self._lock:
            self._pending[request_id] = _Pending(index, time.monotonic(), fallback)
            self.frames_sent += 1
            self.bytes_sent += len(frame)
            self.payload_bytes_sent += payload_bytes
        self._connection.publish(self.next.topic, frame, self.reply_topic, request_id)

    def wait(self, timeout_s: float) -> bool:
        """Until every request sent is resolved (answered or past its deadline); False if `timeout_s` ran out."""
        with self._settled:
            return self._settled.wait_for(lambda: not self._pending, timeout_s)

    def _on_answer(self, message) -> None:
        try:
            answer = decode_answer(message.payload)
        except FrameError:
            with self._lock:
                self.rejected["BAD_ANSWER"] += 1
            return
        now = time.monotonic()
        with self._lock:
            pending = self._pending.pop(answer.request_id, None)
            if answer.rejected is None:
                if answer.request_id in self.answered_by_tier:
                    self.duplicates += 1
                    return
                self.answered_by_tier.add(answer.request_id)
            if pending is None:
                self.late += answer.rejected is None
                return
            if answer.rejected is not None:
                self.rejected[answer.rejected.name] += 1
                self._degrade(pending, now, rejected=answer.rejected.name)
            else:
                tier = self.deployment.tiers[answer.tier].name if answer.tier < len(self.deployment.tiers) else "?"
                self.resolved[pending.index] = Resolution(
                    answer.class_index, answer.exit_index, answer.confidence, tier, False, now - pending.sent
                )
            self._settled.notify_all()

    def _watch_deadlines(self) -> None:
        while self._running.is_set():
            time.sleep(CLOCK_TICK_S)
            now = time.monotonic()
            with self._lock:
                overdue = [rid for rid, p in self._pending.items() if now - p.sent > self.deadline_s]
                for rid in overdue:
                    self._degrade(self._pending.pop(rid), now)
                if overdue:
                    self._settled.notify_all()

    def _degrade(self, pending: _Pending, now: float, rejected: str | None = None) -> None:
        f = pending.fallback
        self.resolved[pending.index] = Resolution(
            f.class_index, f.exit_index, f.confidence, self.deployment.device.name, True, now - pending.sent, rejected
        )
