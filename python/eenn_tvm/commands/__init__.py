"""One module per subcommand; each exposes a click command named `command`."""

from eenn_tvm.commands import (
    analyze,
    augment,
    broker,
    build,
    compile,
    device,
    map,
    profile,
    quantize,
    run,
    serve,
    tune,
    verify,
)

COMMANDS = [
    analyze.command,
    augment.command,
    quantize.command,
    run.command,
    build.command,
    verify.command,
    profile.command,
    map.command,
    compile.command,
    tune.command,
    broker.command,
    serve.command,
    device.command,
]


def register_all(group) -> None:
    for command in COMMANDS:
        group.add_command(command)
