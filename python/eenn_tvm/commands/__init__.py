"""One module per subcommand; each exposes a click command named `command`."""

from . import analyze, augment, run

COMMANDS = [analyze.command, augment.command, run.command]


def register_all(group) -> None:
    for command in COMMANDS:
        group.add_command(command)
