"""`eenn-tvm broker`: a Mosquitto on this machine's loopback, set up as the live deployment needs it."""

from __future__ import annotations

import signal
import tempfile
import threading
from pathlib import Path

import click


@click.command("broker")
@click.option("--port", type=click.IntRange(1, 65535), help="Port on 127.0.0.1 (default: a free one).")
@click.option(
    "--folder",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where its configuration, log and persistent state go (default: a temporary folder).",
)
@click.option("--user", "users", multiple=True, metavar="NAME:PASSWORD", help="Require a login (repeatable).")
def command(port, folder, users):
    """Start Mosquitto on 127.0.0.1 with persistent sessions and no limit on queued messages, print its URL, and
    run until Ctrl-C or SIGTERM. For tests, demos and a deployment on one machine; docs/tiers.md says what a
    production broker needs."""
    from eenn_tvm.errors import EennError
    from eenn_tvm.tiers.broker import Mosquitto

    logins = dict(u.split(":", 1) for u in users if ":" in u)
    if len(logins) != len(users):
        raise EennError("--user takes NAME:PASSWORD")
    with tempfile.TemporaryDirectory(prefix="eenn-broker-") as scratch:
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        with Mosquitto(folder or scratch, logins, port) as broker:
            click.echo(broker.url, err=False)
            click.echo(
                f"eenn-tvm broker: Mosquitto on {broker.url} (state in {broker.folder}); Ctrl-C stops it", err=True
            )
            stop.wait()
