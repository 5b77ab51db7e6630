"""The live deployment through a real Mosquitto (started here on a free loopback port): tier servers as processes,
the firmware in QEMU streaming over its UART, answers on MQTT 5 response topics; faults: a tier that does not
answer, bad frames, a killed edge, a broker restart."""

import json
import shutil
import subprocess
import time
import uuid
from dataclasses import replace

import numpy as np
import pytest
from conftest import REPO, compile_augmented
from test_cli import assert_one_line_error, run_cli

from eenn_tvm.errors import EennError
from eenn_tvm.network import Network
from eenn_tvm.targets.host import HostModule, SegmentRunner, build
from eenn_tvm.tiers.broker import Mosquitto, ServerTls, mosquitto_binary
from eenn_tvm.tiers.deployment import LiveDeployment
from eenn_tvm.tiers.device import recorded_hand_overs
from eenn_tvm.tiers.gateway import Gateway
from eenn_tvm.tiers.mqtt import Broker, Connection
from eenn_tvm.tiers.payload import Reject, decode_answer, encode_hand_over
from eenn_tvm.tiers.processes import ServerProcess

GATEWAY_PLATFORM = REPO / "examples" / "tiers" / "m4-gateway-cloud.toml"
USER, PASSWORD = "device", "s3cret"


@pytest.fixture
def broker(tmp_path):
    try:
        mosquitto_binary()
    except EennError:
        pytest.skip("mosquitto is not installed: apt-get install mosquitto (scripts/setup.sh does it)")
    with Mosquitto(tmp_path / "broker", users={USER: PASSWORD}) as running:
        yield running


def login(broker: Mosquitto) -> Broker:
    return Broker(broker.address.host, broker.port, username=USER, password=PASSWORD)


def test_a_broker_that_requires_a_password_refuses_a_client_without_it(broker):
    with pytest.raises(EennError, match="refused the connection: Not authorized"):
        Connection(broker.address, "anonymous", print).start()
    with pytest.raises(EennError, match="refused the connection"):
        Connection(Broker(broker.address.host, broker.port, username=USER, password="wrong"), "guess", print).start()
    allowed = Connection(login(broker), "allowed", print)
    allowed.start()
    allowed.stop()


def certificates(folder, *names: str) -> dict:
    """A CA and a certificate signed by it per name (EC keys; the broker's is for 127.0.0.1), made by openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")

    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1", "-subj", "/CN=eenn test CA")
    for name in names:
        openssl("req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        (folder / f"{name}.ext").write_text("subjectAltName=IP:127.0.0.1\n")
        openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", "1", "-extfile", f"{name}.ext",
        )  # fmt: skip
    return {name: (folder / f"{name}.crt", folder / f"{name}.key") for name in ("ca", *names)}


def test_a_broker_that_requires_a_client_certificate_takes_a_signed_one_and_refuses_none(tmp_path):
    try:
        mosquitto_binary()
    except EennError:
        pytest.skip("mosquitto is not installed: apt-get install mosquitto (scripts/setup.sh does it)")
    certs = certificates(tmp_path, "broker", "device")
    tls = ServerTls(certs["ca"][0], *certs["broker"])
    with Mosquitto(tmp_path / "broker", tls=tls) as broker:
        client = Connection(
            replace(broker.address, tls_cert=certs["device"][0], tls_key=certs["device"][1]), "d", print
        )
        client.start()
        client.stop()
        with pytest.raises(EennError):
            Connection(broker.address, "no-certificate", print).start(timeout_s=2)


def test_a_bad_broker_address_is_one_line():
    assert_one_line_error(["serve", "nowhere", "--tier", "edge", "--broker", "http://host:1883"], "mqtt://HOST:PORT")
    assert_one_line_error(
        ["device", "nowhere", "--data", "x.npz", "--broker", "mqtt://h:1", "--password", "p"], "--username"
    )


# Everything below needs a compiled deployment (augment, map, firmware and host modules: minutes).


@pytest.fixture(scope="session")
def deployed(augmented, fashion, tmp_path_factory):
    out = tmp_path_factory.mktemp("live") / "out"
    # Below the 1.48 s the original model takes on the device, so something is handed over, and enough for the device
    # to run the first segments: at 1 s the example's stem exit (its activation 16 times the input) makes sending the
    # input to the edge cheaper, which leaves the device nothing to run.
    code, _, stderr = compile_augmented(augmented, fashion, GATEWAY_PLATFORM, out, 1300)
    assert code == 0, stderr
    deployment = LiveDeployment(out)
    assert len(deployment.tiers) >= 2, "the placement keeps every segment on the device: nothing to hand over"
    return deployment


@pytest.fixture(scope="session")
def hand_overs(deployed, fashion):
    """What the firmware hands over on the first 80 test images, with its fallback answers."""
    return recorded_hand_overs(deployed, np.load(fashion / "test.npz")["x"][:80])


@pytest.fixture
def servers(deployed, broker):
    running = {
        t.name: ServerProcess(deployed.folder, t.name, broker.url, "--username", USER, "--password", PASSWORD).start()
        for t in deployed.tiers[1:]
    }
    yield running
    for server in running.values():
        server.kill()


def device(deployed, broker, data, *options):
    code, stdout, stderr = run_cli(
        "device", deployed.folder, "--data", data, "--broker", broker.url, "--username", USER, "--password", PASSWORD,
        "--json", *options,
    )  # fmt: skip
    assert code == 0, stderr
    return json.loads(stdout)


@pytest.mark.slow
def test_a_live_run_answers_every_image_as_the_tiered_run_does_with_the_planned_bits_on_each_link(
    deployed, broker, servers, fashion
):
    live = device(deployed, broker, fashion / "test.npz", "--deadline-ms", "60000")
    code, stdout, stderr = run_cli("run", deployed.folder, "--data", fashion / "test.npz", "--json")
    assert code == 0, stderr
    tiered = json.loads(stdout)["per_sample"]
    records = live["records"]
    assert len(records) == 1000 and live["degraded"] == 0
    assert [r["class_index"] for r in records] == tiered["class"]
    assert [r["exit_index"] for r in records] == tiered["exit"]
    stats = {name: server.stop() for name, server in servers.items()}
    # Each link carries the activation the plan prices (its bits), plus the 76-byte header per frame.
    first = deployed.tiers[1]
    handed = sum(r["tier"] != deployed.device.name for r in records)
    assert live["link"]["frames"] == handed
    assert live["link"]["payload_bits_per_frame"] == first.deployed.receives.bits
    for sender, receiver in zip(deployed.tiers[1:], deployed.tiers[2:]):
        sent = stats[sender.name]
        assert sent["handed_on"] == sum(r["tier"] == receiver.name for r in records)
        assert 8 * (sent["bytes_handed_on"] / sent["handed_on"] - 76) == receiver.deployed.receives.bits
    assert sum(s["answered"] for s in stats.values()) == handed
    assert all(s["duplicates"] == 0 and not s["rejected"] for s in stats.values())


@pytest.mark.slow
def test_the_device_answers_with_its_last_exit_marked_degraded_when_no_tier_answers(deployed, broker, fashion):
    live = device(deployed, broker, fashion / "test.npz", "--n", "40", "--deadline-ms", "300")
    x = np.load(fashion / "test.npz")["x"][:40]
    last = deployed.tiers[1].first_segment - 1  # the device's last segment, and its exit
    # the segments one by one (the saved host module chains them in one call and keeps their hand-overs private)
    host = SegmentRunner(HostModule(build(Network.from_augment(deployed.folder, deployed.plan).mod)))
    handed = [r for r in live["records"] if r["tier"] == deployed.device.name and r["degraded"]]
    assert handed and live["degraded"] == len(handed) == live["link"]["frames"]
    for r in handed:
        logits = host.run(x[r["index"] : r["index"] + 1])[last][1]
        assert r["exit_index"] == last and r["class_index"] == int(logits.argmax())
        assert 300 <= r["remote_ms"] < 2000


@pytest.mark.slow
def test_a_server_answers_bad_frames_with_a_counted_error_and_keeps_serving(deployed, broker, servers, hand_overs):
    answers = []
    client = Connection(login(broker), "prober", answers.append, subscriptions=("probe/answers",))
    client.start()
    first = deployed.tiers[1]
    good = encode_hand_over(deployed.id, uuid.uuid4().bytes, first.first_segment, hand_overs[0][0])
    bad = {
        Reject.TRUNCATED: good[:-100],
        Reject.MAGIC: b"\x80\x04garbage that is not a frame" * 4,
        Reject.CHECKSUM: good[:200] + bytes([good[200] ^ 0xFF]) + good[201:],
        Reject.DEPLOYMENT: encode_hand_over(bytes(8), uuid.uuid4().bytes, first.first_segment, hand_overs[0][0]),
    }
    for frame in [*bad.values(), good]:
        client.publish(first.topic, frame, "probe/answers", uuid.uuid4().bytes)
    deadline = time.monotonic() + 30
    while len(answers) < len(bad) + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    client.stop()
    decoded = [decode_answer(m.payload) for m in answers]
    assert sorted(a.rejected for a in decoded if a.rejected) == sorted(bad)
    assert [a.class_index >= 0 for a in decoded].count(True) == 1  # the good frame, answered after the bad ones
    stats = servers[first.name].stop()
    assert stats["rejected"] == {reason.name: 1 for reason in bad}


@pytest.mark.slow
def test_no_acknowledged_request_is_lost_when_the_edge_is_killed_or_the_broker_restarts(
    deployed, broker, servers, hand_overs
):
    gateway = Gateway(deployed, login(broker), "replayer", deadline_s=1.0)
    gateway.start()
    edge = servers[deployed.tiers[1].name]
    for k in range(120):
        live, fallback = hand_overs[k % len(hand_overs)]
        gateway.hand_over(k, live, fallback)
        time.sleep(0.02)
        if k == 30:
            edge.kill()
        if k == 60:
            edge.start()
        if k == 90:
            broker.restart()
    assert gateway.wait(30)
    deadline = time.monotonic() + 60  # the answers of what waited for the edge or the broker arrive late
    while len(gateway.answered_by_tier) < 120 and time.monotonic() < deadline:
        time.sleep(0.1)
    gateway.stop()
    assert len(gateway.resolved) == 120 and len(gateway.answered_by_tier) == 120
    assert gateway.late == sum(r.degraded for r in gateway.resolved.values()) > 0
