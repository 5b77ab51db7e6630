"""`eenn-tvm serve`: one host tier of a deployment as a process on an MQTT broker.

It takes hand-over frames off its topic, runs its segments on each (the early exits compiled in), and either
answers on the request's response topic (MQTT 5, with its correlation data) or hands the activation on to the
next tier, keeping the response topic and correlation data: the tier that decides answers the device directly.

Delivery: frames arrive at QoS 1 and are acknowledged only after their answer or hand-over has been published, so
a server killed before that gets the frame again from the broker when it returns. A request id seen before is
answered again from a bounded cache (or handed on again) and counted once: redeliveries cost no double count. A
frame that is not what this tier expects gets an error answer and a count; the server goes on serving.
"""

from __future__ import annotations

import queue
import threading
import time
import zlib
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field

import numpy as np

from eenn_tvm.errors import EennError
from eenn_tvm.tiers.deployment import LiveDeployment, LiveTier
from eenn_tvm.tiers.module import TierModule
from eenn_tvm.tiers.mqtt import Broker, Connection
from eenn_tvm.tiers.payload import (
    REQUEST_ID_BYTES,
    Answer,
    FrameError,
    Reject,
    decode_hand_over,
    encode_answer,
    encode_hand_over,
    peek_request_id,
)

ANSWERED_CACHE = 100_000  # request ids remembered for redeliveries (about 100 bytes each)
TIMED_REQUESTS = 100_000  # compute times kept for the percentiles
POLL_S = 0.2


@dataclass
class ServerStats:
    tier: str
    frames: int = 0  # taken off the topic, redeliveries and bad frames included
    bytes_received: int = 0
    answered: int = 0  # requests decided here, each counted once
    handed_on: int = 0  # requests passed to the next tier, each counted once
    bytes_handed_on: int = 0
    duplicates: int = 0  # request ids seen before: answered again from the cache, or handed on again
    rejected: Counter = field(default_factory=Counter)  # by Reject name
    no_response_topic: int = 0  # frames without a usable response topic (none, or a wildcard in it): dropped
    connects: int = 0
    exits: Counter = field(default_factory=Counter)
    compute_s: deque = field(default_factory=lambda: deque(maxlen=TIMED_REQUESTS))  # the latest requests

    def to_json(self) -> dict:
        ms = np.array(self.compute_s) * 1000
        return {
            "tier": self.tier,
            "frames": self.frames,
            "bytes_received": self.bytes_received,
            "answered": self.answered,
            "handed_on": self.handed_on,
            "bytes_handed_on": self.bytes_handed_on,
            "duplicates": self.duplicates,
            "rejected": dict(self.rejected),
            "no_response_topic": self.no_response_topic,
            "reconnects": max(self.connects - 1, 0),
            "exits": {str(k): v for k, v in sorted(self.exits.items())},
            "compute_ms_p50": float(np.percentile(ms, 50)) if len(ms) else None,
            "compute_ms_p99": float(np.percentile(ms, 99)) if len(ms) else None,
        }

    def status_line(self) -> str:
        rejected = sum(self.rejected.values())
        kinds = ", ".join(f"{k.lower()} {v}" for k, v in sorted(self.rejected.items()))
        p = self.to_json()
        timing = (
            f"; compute p50 {p['compute_ms_p50']:.2f} ms, p99 {p['compute_ms_p99']:.2f} ms" if self.compute_s else ""
        )
        return (
            f"{self.tier}: {self.frames} frames, {self.answered} answered here, {self.handed_on} handed on, "
            f"{self.duplicates} duplicates, {rejected} rejected{f' ({kinds})' if kinds else ''}, "
            f"{p['reconnects']} reconnects{timing}"
        )


@dataclass
class _Done:
    crc: int  # of the frame: the same id with other bytes is not a redelivery
    answer: bytes | None  # None: handed on


class TierServer:
    def __init__(self, deployment: LiveDeployment, tier_name: str, broker: Broker, cache_size: int = ANSWERED_CACHE):
        self.deployment = deployment
        self.tier: LiveTier = deployment.tier(tier_name)
        if self.tier.expected is None:
            raise EennError(
                f"{tier_name} is the deployment's first tier, where inputs arrive: run it with `eenn-tvm device`, "
                "and `eenn-tvm serve` for the tiers after it"
            )
        self.next = deployment.next_of(self.tier)
        self.broker = broker
        self.stats = ServerStats(self.tier.name)
        self._module = TierModule(deployment, self.tier)
        self._done: OrderedDict[bytes, _Done] = OrderedDict()
        self._cache_size = cache_size
        self._inbox: queue.Queue = queue.Queue()
        self._connection = Connection(
            broker,
            f"eenn-{deployment.id.hex()}-{self.tier.name}",  # fixed: the broker keeps this tier's session
            self._inbox.put,
            subscriptions=(self.tier.topic,),
            manual_ack=True,
        )

    def serve(self, stop: threading.Event, ready=lambda: None) -> ServerStats:
        """Serve until `stop` is set; `ready` is called once subscribed."""
        self._connection.start()
        ready()
        try:
            while not stop.is_set():
                try:
                    message = self._inbox.get(timeout=POLL_S)
                except queue.Empty:
                    continue
                self._handle(message)
                self._connection.ack(message)
        finally:
            self.stats.connects = self._connection.connects
            self._connection.stop()
        return self.stats

    def _handle(self, message) -> None:
        frame = message.payload
        self.stats.frames += 1
        self.stats.bytes_received += len(frame)
        reply_to = getattr(message.properties, "ResponseTopic", None)
        correlation = getattr(message.properties, "CorrelationData", None)
        if not reply_to or "#" in reply_to or "+" in reply_to:
            self.stats.no_response_topic += 1
            return
        request_id = correlation if correlation and len(correlation) == REQUEST_ID_BYTES else peek_request_id(frame)
        try:
            hand_over = decode_hand_over(frame, self.tier.expected)
            request_id = hand_over.request_id
            done = self._seen(request_id, frame)
            if done is not None and done.answer is not None:
                self._publish_answer(reply_to, correlation, done.answer)
                return
            self._run(hand_over, frame, reply_to, correlation, again=done is not None)
        except FrameError as err:
            self.stats.rejected[err.reason.name] += 1
            self._publish_answer(reply_to, correlation, self._rejection(request_id, err.reason))

    def _seen(self, request_id: bytes, frame: bytes) -> _Done | None:
        done = self._done.get(request_id)
        if done is None:
            return None
        if done.crc != zlib.crc32(frame):
            raise FrameError(Reject.REQUEST_REUSED, f"request {request_id.hex()} came before with other bytes")
        self._done.move_to_end(request_id)
        self.stats.duplicates += 1
        return done

    def _run(self, hand_over, frame: bytes, reply_to: str, correlation: bytes | None, again: bool) -> None:
        started = time.perf_counter()
        try:
            outcome = self._module.infer(hand_over.tensor)
        except Exception as err:  # a failing module must not stop the tier: the device gets an error answer
            raise FrameError(Reject.FAILED, f"{type(err).__name__}: {err}") from None
        self.stats.compute_s.append(time.perf_counter() - started)
        if outcome.exit_index is None:
            out = encode_hand_over(
                self.deployment.id, hand_over.request_id, self.next.first_segment, outcome.activation
            )
            self._connection.publish(self.next.topic, out, reply_to, correlation)
            answer = None
            if not again:
                self.stats.handed_on += 1
                self.stats.bytes_handed_on += len(out)
        else:
            answer = encode_answer(
                Answer(
                    self.deployment.id,
                    hand_over.request_id,
                    outcome.class_index,
                    outcome.exit_index,
                    outcome.confidence,
                    self.tier.index,
                )
            )
            self._publish_answer(reply_to, correlation, answer)
            if not again:
                self.stats.answered += 1
                self.stats.exits[outcome.exit_index] += 1
        self._remember(hand_over.request_id, _Done(zlib.crc32(frame), answer))

    def _remember(self, request_id: bytes, done: _Done) -> None:
        self._done[request_id] = done
        self._done.move_to_end(request_id)
        while len(self._done) > self._cache_size:
            self._done.popitem(last=False)

    def _rejection(self, request_id: bytes | None, reason: Reject) -> bytes:
        rid = request_id if request_id and len(request_id) == REQUEST_ID_BYTES else bytes(REQUEST_ID_BYTES)
        return encode_answer(Answer(self.deployment.id, rid, -1, -1, 0.0, self.tier.index, rejected=reason))

    def _publish_answer(self, reply_to: str, correlation: bytes | None, answer: bytes) -> None:
        self._connection.publish(reply_to, answer, correlation=correlation)
