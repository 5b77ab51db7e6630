"""The `eenn-tvm` command line: one subcommand per stage, human tables by default, `--json` for pipelines.

Bad input ends with one line on stderr and exit code 2; see `errors.EennError`. Ctrl-C (SIGINT) ends with one line
and exit code 130, SIGTERM with 143, after removing what the command had half-written.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import traceback

import click

from eenn_tvm import __version__
from eenn_tvm.commands import register_all
from eenn_tvm.errors import EennError, Terminated
from eenn_tvm.outputs import stop_signals_raise


class _Group(click.Group):
    """Turns bad input into one line and exit code 2, instead of a traceback."""

    def invoke(self, ctx):
        try:
            with stop_signals_raise():
                return super().invoke(ctx)
        except EennError as err:
            _fail(str(err))
        except KeyboardInterrupt:
            _stop("interrupted", 128 + signal.SIGINT)
        except Terminated:
            _stop("terminated", 128 + signal.SIGTERM)
        except OSError as err:
            if err.errno == errno.ENOSPC:
                _fail(f"the disk is full ({err.filename or 'writing output'}): free some space and run again")
            _internal_error(err)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as err:  # a wrong option or value: one line too, pointing at the help
            where = " ".join(["eenn-tvm", *(err.ctx.command_path.split()[1:] if err.ctx else [])])
            _fail(f"{err.format_message()} (see `{where} --help`)")
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except Exception as err:  # a bug in eenn-tvm, not bad input: say so in one line
            _internal_error(err)


def _fail(message: str):
    click.echo(f"eenn-tvm: error: {message}", err=True)
    sys.exit(2)


def _stop(what: str, code: int):
    click.echo(f"eenn-tvm: {what}", err=True)
    sys.exit(code)


def _internal_error(err: Exception):
    if os.environ.get("EENN_DEBUG"):
        traceback.print_exc()
    first = (str(err).strip().splitlines() or [type(err).__name__])[-1]
    click.echo(
        f"eenn-tvm: internal error: {type(err).__name__}: {first} "
        "(set EENN_DEBUG=1 for the traceback; please report it)",
        err=True,
    )
    sys.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="eenn-tvm")
def main():
    """Turn a trained ONNX network into an early-exit network and deploy it with Apache TVM."""


register_all(main)
