"""`eenn-tvm serve`: one host tier of a compiled deployment, on an MQTT broker, until SIGINT or SIGTERM."""

from __future__ import annotations

import signal
import threading

import click

from eenn_tvm.commands.options import broker_from, broker_options, echo_json, json_option


@click.command("serve")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--tier", "tier_name", required=True, metavar="edge|cloud|NAME", help="The deployment's tier to run.")
@broker_options
@json_option
def command(out, tier_name, as_json, **login):
    """Run tier NAME of the deployment in OUT (from `eenn-tvm compile`): take hand-overs off its topic, run its
    segments with their exits, and answer the device or hand on to the next tier. Stops on Ctrl-C or SIGTERM
    with a status line (and the counters as JSON with --json). Protocol: docs/tiers.md."""
    from eenn_tvm.tiers.deployment import LiveDeployment
    from eenn_tvm.tiers.server import TierServer

    broker = broker_from(**login)
    server = TierServer(LiveDeployment(out), tier_name, broker)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    tier = server.tier

    def ready():
        segments = " ".join(tier.deployed.segments)
        click.echo(f"eenn-tvm serve: {tier.name} ({segments}) listening on {tier.topic} at {broker.url}", err=True)

    stats = server.serve(stop, ready)
    click.echo(f"eenn-tvm serve: {stats.status_line()}", err=True)
    if as_json:
        echo_json(stats.to_json())
