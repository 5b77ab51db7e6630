"""One module per subcommand; each exposes a click command named `command`."""

from eenn_tvm.commands import analyze, augment, build, compile, map, profile, quantize, run, tune, verify

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
]


def register_all(group) -> None:
    for command in COMMANDS:
        group.add_command(command)
