"""A Mosquitto broker for tests, demos and benchmarks: on a free loopback port, with a generated configuration
(and a password file when users are given), its state persisted in its folder so that a restart keeps the
sessions and queued messages of absent clients."""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from eenn_tvm.errors import EennError
from eenn_tvm.tiers.mqtt import Broker

HOST = "127.0.0.1"
START_TIMEOUT_S = 10.0
# Mosquitto's default (1000) drops QoS 1 messages queued for an absent client beyond it: a tier restarted under
# load would lose requests. The limit that stays is memory.
MAX_QUEUED_MESSAGES = 1_000_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise EennError("mosquitto is not installed: apt-get install mosquitto (scripts/setup.sh does it)")
    return found


@dataclass(frozen=True)
class ServerTls:
    """The broker's side of TLS: the CA its clients' certificates must come from, its own certificate and key.
    Clients then log in with a certificate (its common name is their user name) instead of a password."""

    ca: Path
    cert: Path
    key: Path


class Mosquitto:
    """`with Mosquitto(folder) as broker:` ... `broker.address`; `restart()` stops and starts it on the same port."""

    def __init__(
        self,
        folder: str | Path,
        users: dict[str, str] | None = None,
        port: int | None = None,
        tls: ServerTls | None = None,
    ):
        self.folder = Path(folder)
        self.users = users or {}
        self.port = port or free_port()
        self.tls = tls
        self._process: subprocess.Popen | None = None

    @property
    def address(self) -> Broker:
        """Where it is; TLS clients add their certificate and key."""
        return Broker(HOST, self.port, tls=self.tls is not None, tls_ca=self.tls.ca if self.tls else None)

    @property
    def url(self) -> str:
        return self.address.url

    def start(self) -> None:
        binary = mosquitto_binary()
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / "mosquitto.conf"
        config.write_text(self._config())
        log = self.folder / "mosquitto.log"
        self._process = subprocess.Popen([binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                message = self._process.stderr.read().decode(errors="replace").strip().splitlines()
                tail = log.read_text().strip().splitlines() if log.exists() else []
                raise EennError(f"mosquitto stopped at start: {(message or tail or ['no message'])[-1]}")
            try:
                socket.create_connection((HOST, self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise EennError(f"mosquitto did not listen on {HOST}:{self.port} within {START_TIMEOUT_S:.0f} s")

    def stop(self) -> None:
        """SIGTERM: Mosquitto writes its persistent state, then exits."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def restart(self, pause_s: float = 0.0) -> None:
        self.stop()
        time.sleep(pause_s)
        self.start()

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.stop()

    def _config(self) -> str:
        lines = [
            f"listener {self.port} {HOST}",
            f"allow_anonymous {'false' if self.users or self.tls else 'true'}",
            "persistence true",
            f"persistence_location {self.folder.resolve()}/",
            f"max_queued_messages {MAX_QUEUED_MESSAGES}",
            "set_tcp_nodelay true",  # answers are small: send them at once, not after a delayed acknowledgement
            f"log_dest file {(self.folder / 'mosquitto.log').resolve()}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            # Run as ourselves: as root Mosquitto would switch to its own user, which cannot write this folder.
            f"user {getpass.getuser()}",
        ]
        if self.users:
            lines.append(f"password_file {self._password_file().resolve()}")
        if self.tls:
            lines += [
                f"cafile {Path(self.tls.ca).resolve()}",
                f"certfile {Path(self.tls.cert).resolve()}",
                f"keyfile {Path(self.tls.key).resolve()}",
                "require_certificate true",
                "use_identity_as_username true",
            ]
        return "\n".join(lines) + "\n"

    def _password_file(self) -> Path:
        path = self.folder / "passwords"
        path.unlink(missing_ok=True)
        path.touch(mode=0o600)
        for user, password in self.users.items():
            subprocess.run(["mosquitto_passwd", "-b", str(path), user, password], check=True, capture_output=True)
        return path
