"""MQTT 5 connections through paho-mqtt: broker address, credentials, and a client with a persistent session.

Every client connects with clean_start=False, a fixed client id and a session expiry, and subscribes at QoS 1:
while it is away (its process killed, the broker restarted) the broker keeps its subscriptions and queues what
arrives for it, and on its return delivers the queue and every message it received but did not acknowledge.
paho reconnects by itself (with back-off) and sends the QoS 1 messages it published while disconnected.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from eenn_tvm.errors import EennError

SESSION_EXPIRY_S = 3600  # how long the broker keeps an absent client's subscriptions and queue
KEEPALIVE_S = 10
RECONNECT_DELAY_S = (1, 4)  # paho's back-off, from the first retry to the longest wait
CONNECT_TIMEOUT_S = 10.0
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


def paho():
    """paho.mqtt.client, or one line saying how to install it."""
    try:
        import paho.mqtt.client as client
    except ImportError:
        raise EennError(
            "the live deployment needs paho-mqtt: pip install 'eenn-tvm[tiers]' (scripts/setup.sh --dev installs it)"
        ) from None
    return client


@dataclass(frozen=True)
class Broker:
    """Where the broker is and how to log in: mqtt://HOST:PORT (or mqtts:// for TLS), a user and password,
    or TLS files (a CA to trust, and a client certificate and key where the broker asks for one)."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @classmethod
    def from_url(cls, url: str, **login) -> Broker:
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = -1
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname or port == -1 or parts.path not in ("", "/"):
            raise EennError(f"--broker {url!r}: expected mqtt://HOST:PORT or mqtts://HOST:PORT")
        tls = parts.scheme == "mqtts" or login.get("tls_ca") is not None
        if (login.get("tls_cert") is None) != (login.get("tls_key") is None):
            raise EennError("--tls-cert and --tls-key go together: give both or neither")
        if login.get("password") is not None and login.get("username") is None:
            raise EennError("--password needs --username")
        return cls(parts.hostname, port or DEFAULT_PORTS[parts.scheme], tls, **login)

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


class Connection:
    """One client: connects (and reconnects) with its persistent session, subscribes on every connect, and hands
    each message to `on_message` on paho's network thread. With `manual_ack`, a QoS 1 message is acknowledged
    only when `ack` is called: a receiver that dies before that gets it again."""

    def __init__(
        self,
        broker: Broker,
        client_id: str,
        on_message: Callable[[object], None],
        subscriptions: tuple[str, ...] = (),
        manual_ack: bool = False,
    ):
        mqtt = paho()
        from paho.mqtt.enums import CallbackAPIVersion

        self.broker = broker
        self.subscriptions = subscriptions
        self.connects = 0
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, manual_ack=manual_ack
        )
        if broker.username is not None:
            self._client.username_pw_set(broker.username, broker.password)
        if broker.tls:
            self._client.tls_set(
                ca_certs=_readable(broker.tls_ca),
                certfile=_readable(broker.tls_cert),
                keyfile=_readable(broker.tls_key),
            )
        self._client.reconnect_delay_set(*RECONNECT_DELAY_S)
        self._client.max_queued_messages_set(0)  # keep every QoS 1 message published while the broker is away
        self._client.on_socket_open = _no_delay
        self._client.on_connect = self._connected
        self._client.on_subscribe = self._subscribed
        self._client.on_message = lambda _client, _userdata, message: on_message(message)
        self._ready = threading.Event()
        self._refused: str | None = None

    def start(self, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        """Connect and subscribe; an unreachable broker or a refused login is one EennError line."""
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = SESSION_EXPIRY_S
        self._client.connect_async(
            self.broker.host, self.broker.port, KEEPALIVE_S, clean_start=False, properties=properties
        )
        self._client.loop_start()
        if not self._ready.wait(timeout_s) or self._refused:
            self.stop()
            if self._refused:
                raise EennError(f"the broker at {self.broker.url} refused the connection: {self._refused}")
            tls = " and does it accept this client's TLS certificate (--tls-ca, --tls-cert, --tls-key)?"
            raise EennError(
                f"no answer from a broker at {self.broker.url} within {timeout_s:.0f} s: is it running"
                f"{tls if self.broker.tls else '? (`eenn-tvm broker` starts one)'}"
            )

    def stop(self, end_session: bool = False) -> None:
        """Disconnect. The broker keeps the session (and queues for it) unless `end_session`: a server stopped
        for a restart gets what arrived meanwhile; a device's run that is over leaves nothing behind."""
        properties = None
        if end_session:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            properties = Properties(PacketTypes.DISCONNECT)
            properties.SessionExpiryInterval = 0
        self._client.disconnect(properties=properties)
        self._client.loop_stop()

    def publish(self, topic: str, payload: bytes, response_topic: str | None = None, correlation: bytes | None = None):
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        properties = Properties(PacketTypes.PUBLISH)
        if response_topic is not None:
            properties.ResponseTopic = response_topic
        if correlation is not None:
            properties.CorrelationData = correlation
        return self._client.publish(topic, payload, qos=1, properties=properties)

    def ack(self, message) -> None:
        self._client.ack(message.mid, message.qos)

    def _connected(self, client, _userdata, _flags, reason_code, _properties) -> None:
        if reason_code.is_failure:
            self._refused = str(reason_code)
            self._ready.set()
            client.disconnect()  # no retry: a refused login does not get better by trying again
            return
        self.connects += 1
        if self.subscriptions:
            from paho.mqtt.subscribeoptions import SubscribeOptions

            client.subscribe([(topic, SubscribeOptions(qos=1)) for topic in self.subscriptions])
        else:
            self._ready.set()

    def _subscribed(self, _client, _userdata, _mid, reason_codes, _properties) -> None:
        failed = [str(code) for code in reason_codes if code.is_failure]
        if failed:
            self._refused = f"subscribing to {', '.join(self.subscriptions)}: {failed[0]}"
        self._ready.set()


def _no_delay(_client, _userdata, sock) -> None:
    """Send small packets (answers, acknowledgements) at once: with Nagle's algorithm and delayed acknowledgements
    each exchange can wait some 40 ms."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _readable(path: Path | None) -> str | None:
    if path is None:
        return None
    if not Path(path).is_file():
        raise EennError(f"{path}: no such file (a TLS certificate or key)")
    return str(path)
