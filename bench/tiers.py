"""Benchmark: a live deployment across tiers on this machine's loopback, under load and under faults.

    python bench/tiers.py [OUT] [--devices 8] [--requests 500] [--rate 5] [--deadline-ms 2000] [--json bench/tiers.json]

OUT is a `compile` output whose placement hands over (default out/fm_tiers, which `make live-demo` makes). The
hand-overs are recorded once from the firmware in QEMU on test images; simulated devices (threads, each with its
own gateway and MQTT session) replay them at a fixed rate with fresh request ids against the tier servers
(`eenn-tvm serve` processes), each scenario on a fresh Mosquitto:

  steady      N devices x M requests
  edge killed the same, the first host tier SIGKILLed halfway and restarted --down-s later
  corrupted   the same, 1 % of the frames damaged on the way (a flipped byte, or cut short)
  fuzz        1,000 random or truncated frames at the first host tier, then 50 good requests
  auth        a broker that requires a password: clients and a server without it are refused

Per scenario: throughput, p50/p99 latency per answering tier (hand-over published -> answer), bytes per tier,
degraded answers (the device's last exit, after the deadline or a rejection), late answers (a tier's answer
after the degraded one), lost requests (no tier ever answered an undamaged one) and duplicate deliveries (answers
for a request already answered, which the device drops).
"""

import argparse
import json
import platform
import random
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

from eenn_tvm.errors import EennError
from eenn_tvm.textui import format_table
from eenn_tvm.tiers.broker import Mosquitto
from eenn_tvm.tiers.deployment import LiveDeployment
from eenn_tvm.tiers.device import recorded_hand_overs
from eenn_tvm.tiers.gateway import Gateway
from eenn_tvm.tiers.mqtt import Broker, Connection
from eenn_tvm.tiers.payload import HAND_OVER_HEADER_BYTES, encode_hand_over
from eenn_tvm.tiers.processes import ServerProcess

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RECORDED_IMAGES = 400  # test images run once through the firmware; their hand-overs are replayed
DRAIN_S = 120.0  # how long the late answers of a fault scenario may take to arrive
FUZZ_FRAMES, FUZZ_GOOD = 1000, 50
FUZZ_DEADLINE_S = 600.0


class SimulatedDevice(threading.Thread):
    """Replays recorded hand-overs at `rate` per second through a gateway of its own; damages a share of them."""

    def __init__(self, name, deployment, broker, hand_overs, requests, rate, deadline_s, corrupt, seed):
        super().__init__(daemon=True)
        self.gateway = Gateway(deployment, broker, f"bench-{name}", deadline_s)
        self.hand_overs, self.requests, self.rate, self.corrupt = hand_overs, requests, rate, corrupt
        self.rng = random.Random(seed)
        self.sent: list[bytes] = []
        self.damaged: set[bytes] = set()
        self.started = self.finished = 0.0

    def run(self) -> None:
        deployment, first = self.gateway.deployment, self.gateway.next.first_segment
        self.started = time.monotonic()
        for k in range(self.requests):
            time.sleep(max(0.0, self.started + k / self.rate - time.monotonic()))
            live, fallback = self.rng.choice(self.hand_overs)
            request_id = uuid.uuid4().bytes
            frame = encode_hand_over(deployment.id, request_id, first, live)
            if self.rng.random() < self.corrupt:
                frame = damaged(frame, self.rng)
                self.damaged.add(request_id)
            self.gateway.send(k, request_id, frame, fallback, payload_bytes=live.nbytes)
            self.sent.append(request_id)
        self.gateway.wait(self.gateway.deadline_s + 30)
        self.finished = time.monotonic()


def damaged(frame: bytes, rng: random.Random) -> bytes:
    if rng.random() < 0.5:
        return frame[: rng.randrange(len(frame))]
    position = rng.randrange(len(frame))
    return frame[:position] + bytes([frame[position] ^ (1 + rng.randrange(255))]) + frame[position + 1 :]


def start_servers(out: Path, deployment: LiveDeployment, broker: Mosquitto) -> dict[str, ServerProcess]:
    return {t.name: ServerProcess(out, t.name, broker.url).start() for t in deployment.tiers[1:]}


def load_scenario(args, deployment, hand_overs, name, corrupt=0.0, kill_edge=False) -> dict:
    with tempfile.TemporaryDirectory(prefix="eenn-bench-broker-") as folder, Mosquitto(folder) as broker:
        servers = start_servers(args.out, deployment, broker)
        devices = [
            SimulatedDevice(
                f"{name}-{i}",
                deployment,
                broker.address,
                hand_overs,
                args.requests,
                args.rate,
                args.deadline,
                corrupt,
                i,
            )
            for i in range(args.devices)
        ]
        for d in devices:
            d.gateway.start()
        for d in devices:
            d.start()
        edge = deployment.tiers[1].name
        if kill_edge:
            time.sleep(args.requests / args.rate / 2)
            servers[edge].kill()
            _say(f"  {edge} killed; restarting it in {args.down_s:g} s")
            time.sleep(args.down_s)
            servers[edge].start()
        for d in devices:
            d.join()
        drain_until = time.monotonic() + DRAIN_S
        while time.monotonic() < drain_until and any(_unanswered(d) for d in devices):
            time.sleep(0.2)
        stats = {name: server.stop() for name, server in servers.items()}
        for d in devices:
            d.gateway.stop()
    return summarise(name, deployment, devices, stats)


def _unanswered(device: SimulatedDevice) -> int:
    g = device.gateway
    return sum(rid not in g.answered_by_tier for rid in device.sent if rid not in device.damaged)


def summarise(name: str, deployment: LiveDeployment, devices: list[SimulatedDevice], stats: dict) -> dict:
    resolutions = [r for d in devices for r in d.gateway.resolved.values()]
    sent = sum(len(d.sent) for d in devices)
    elapsed = max(d.finished for d in devices) - min(d.started for d in devices)
    per_tier = {}
    for tier in deployment.tiers[1:]:
        ms = np.array([1000 * r.latency_s for r in resolutions if r.tier == tier.name and not r.degraded])
        s = stats.get(tier.name, {})
        per_tier[tier.name] = {
            "answered": len(ms),
            "p50_ms": float(np.percentile(ms, 50)) if len(ms) else None,
            "p99_ms": float(np.percentile(ms, 99)) if len(ms) else None,
            "bytes_received": s.get("bytes_received"),
            "bytes_per_frame": s["bytes_received"] / s["frames"] if s.get("frames") else None,
            "compute_ms_p50": s.get("compute_ms_p50"),
            "rejected": s.get("rejected"),
            "duplicates": s.get("duplicates"),
            "reconnects": s.get("reconnects"),
        }
    return {
        "scenario": name,
        "requests": sent,
        "answered": len(resolutions),
        "damaged": sum(len(d.damaged) for d in devices),
        "degraded": sum(r.degraded for r in resolutions),
        "rejected_answers": sum(sum(d.gateway.rejected.values()) for d in devices),
        "late": sum(d.gateway.late for d in devices),
        "lost": sum(_unanswered(d) for d in devices),
        "duplicate_deliveries": sum(d.gateway.duplicates for d in devices),
        "throughput_per_s": len(resolutions) / elapsed,
        "seconds": elapsed,
        "device_bytes_sent": sum(d.gateway.bytes_sent for d in devices),
        "tiers": per_tier,
    }


def fuzz_scenario(args, deployment, hand_overs) -> dict:
    """Random and truncated frames at the first host tier, then good ones: each bad one rejected and counted."""
    rng = random.Random(7)
    good = encode_hand_over(deployment.id, bytes(16), deployment.tiers[1].first_segment, hand_overs[0][0])
    with tempfile.TemporaryDirectory(prefix="eenn-bench-broker-") as folder, Mosquitto(folder) as broker:
        servers = start_servers(args.out, deployment, broker)
        # A deadline long enough for every answer: this scenario counts rejections, not latency.
        gateway = Gateway(deployment, broker.address, "bench-fuzz", FUZZ_DEADLINE_S)
        gateway.start()
        for k in range(FUZZ_FRAMES):
            if k % 2:
                frame = good[: rng.randrange(len(good))]
            else:
                frame = rng.randbytes(
                    rng.choice([rng.randrange(HAND_OVER_HEADER_BYTES), rng.randrange(len(good) + 500)])
                )
            gateway.send(k, uuid.uuid4().bytes, frame, hand_overs[0][1])
        for k in range(FUZZ_GOOD):
            live, fallback = hand_overs[k % len(hand_overs)]
            gateway.hand_over(FUZZ_FRAMES + k, live, fallback)
        started = time.monotonic()
        gateway.wait(FUZZ_DEADLINE_S)
        seconds = time.monotonic() - started
        stats = {name: server.stop() for name, server in servers.items()}
        gateway.stop()
    good_answers = [gateway.resolved[FUZZ_FRAMES + k] for k in range(FUZZ_GOOD)]
    first = stats[deployment.tiers[1].name]
    return {
        "scenario": "fuzz",
        "bad_frames": FUZZ_FRAMES,
        "rejected_by_server": sum(first["rejected"].values()),
        "rejections_by_reason": first["rejected"],
        "rejection_answers_at_device": sum(gateway.rejected.values()),
        "good_requests": FUZZ_GOOD,
        "good_answered_by_a_tier": sum(not r.degraded for r in good_answers),
        "seconds": seconds,
    }


def auth_scenario(args, deployment) -> dict:
    """A broker with a password file: who gets in."""
    with (
        tempfile.TemporaryDirectory(prefix="eenn-bench-broker-") as folder,
        Mosquitto(folder, users={"device": "s3cret"}) as broker,
    ):
        outcomes = {}
        for label, login in [
            ("no credentials", Broker(broker.address.host, broker.port)),
            ("wrong password", Broker(broker.address.host, broker.port, username="device", password="guess")),
            ("right password", Broker(broker.address.host, broker.port, username="device", password="s3cret")),
        ]:
            client = Connection(login, f"bench-auth-{len(outcomes)}", lambda _: None)
            try:
                client.start()
                client.stop()
                outcomes[label] = "connected"
            except EennError as err:
                outcomes[label] = f"refused ({str(err).rsplit(': ', 1)[-1]})"
        try:
            ServerProcess(args.out, deployment.tiers[1].name, broker.url).start().stop()
            outcomes["eenn-tvm serve without credentials"] = "connected"
        except EennError as err:
            outcomes["eenn-tvm serve without credentials"] = f"refused ({str(err).rsplit(': ', 1)[-1]})"
    return {"scenario": "auth", "outcomes": outcomes}


def note(doc: dict) -> str:
    steady = doc["load"][0]["tiers"]
    compute = ", ".join(f"{tier} {t['compute_ms_p50']:.1f} ms" for tier, t in steady.items())
    return (
        f"Offered load {doc['devices'] * doc['rate_per_device']:g} requests/s; the servers' compute per request "
        f"(p50, steady): {compute}; the rest of the latency is MQTT, the broker and Python on 2 shared cores. In "
        "'edge killed' the edge server is SIGKILLed halfway and started again after "
        f"{doc['down_s']:g} s (it listens again once its module is loaded): what was published meanwhile waits "
        "in the broker's queue, is answered late after its degraded answer, and none is lost; its row's edge "
        "figures are the restarted process's."
    )


def tiers_table(doc: dict) -> str:
    rows = []
    for r in doc["load"]:
        cells = [
            r["scenario"],
            f"{r['requests']:,}",
            f"{r['answered']:,}",
            str(r["degraded"]),
            str(r["late"]),
            str(r["lost"]),
            str(r["duplicate_deliveries"]),
            f"{r['throughput_per_s']:.1f}/s",
        ]
        for tier in doc["tiers"]:
            t = r["tiers"][tier]
            p50, p99 = t["p50_ms"], t["p99_ms"]
            cells.append("-" if p50 is None else f"{p50:.0f} / {p99:.0f} ms")
            cells.append("-" if t["bytes_per_frame"] is None else f"{t['bytes_per_frame']:,.0f} B")
        rows.append(cells)
    headers = ["scenario", "requests", "answered", "degraded", "late", "lost", "dup. deliveries", "throughput"]
    for tier in doc["tiers"]:
        headers += [f"{tier} p50 / p99", f"{tier} bytes/frame"]
    text = format_table(headers, rows)
    fuzz, auth = doc["fuzz"], doc["auth"]
    reasons = ", ".join(f"{k.lower()} {v}" for k, v in sorted(fuzz["rejections_by_reason"].items()))
    text += (
        f"\nfuzz: {fuzz['bad_frames']:,} random or truncated frames, {fuzz['rejected_by_server']:,} rejected and "
        f"counted by the server ({reasons}), "
        f"{fuzz['rejection_answers_at_device']:,} error answers at the device; then {fuzz['good_answered_by_a_tier']} "
        f"of {fuzz['good_requests']} good requests answered by a tier"
    )
    text += "\nauth: " + "; ".join(f"{k}: {v}" for k, v in auth["outcomes"].items())
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=REPO / "out" / "fm_tiers")
    parser.add_argument("--test-data", type=Path, default=REPO / "examples" / "fashion_mnist" / "test.npz")
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--requests", type=int, default=500, help="per device")
    parser.add_argument("--rate", type=float, default=5.0, help="requests per second per device")
    parser.add_argument("--deadline-ms", type=float, default=2000.0)
    parser.add_argument("--down-s", type=float, default=5.0, help="how long the killed edge stays down")
    parser.add_argument("--json", type=Path, default=HERE / "tiers.json")
    args = parser.parse_args()
    args.deadline = args.deadline_ms / 1000
    deployment = LiveDeployment(args.out)
    _say(f"recording the firmware's hand-overs on {RECORDED_IMAGES} test images (QEMU)")
    hand_overs = recorded_hand_overs(deployment, np.load(args.test_data)["x"][:RECORDED_IMAGES])
    _say(f"{len(hand_overs)} hand-overs of {hand_overs[0][0].nbytes:,} bytes")
    load = []
    for name, options in [("steady", {}), ("edge killed", {"kill_edge": True}), ("1 % corrupted", {"corrupt": 0.01})]:
        _say(f"{name}: {args.devices} devices x {args.requests} requests at {args.rate:g}/s each")
        load.append(load_scenario(args, deployment, hand_overs, name, **options))
    _say("fuzz")
    fuzz = fuzz_scenario(args, deployment, hand_overs)
    _say("auth")
    auth = auth_scenario(args, deployment)
    document = {
        "command": "python " + " ".join(sys.argv),
        "machine": f"{platform.machine()}, {platform.python_version()}, loopback, 2 shared cores",
        "deployment": args.out.name,
        "platform": deployment.plan.deployment.platform,
        "tiers": [t.name for t in deployment.tiers[1:]],
        "devices": args.devices,
        "requests_per_device": args.requests,
        "rate_per_device": args.rate,
        "deadline_ms": args.deadline_ms,
        "down_s": args.down_s,
        "load": load,
        "fuzz": fuzz,
        "auth": auth,
    }
    document["note"] = note(document)
    args.json.write_text(json.dumps(document, indent=2) + "\n")
    print(tiers_table(document))
    print(f"wrote {args.json}")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
