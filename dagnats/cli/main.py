"""The `dagnats` command, and the one place where errors become messages and exit codes.

A DagnatsError prints `error: <message>` on stderr and exits with its `exit_code`
(dagnats.errors); anything unexpected prints one line too, with the traceback only when
DAGNATS_DEBUG=1.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any

import click

from dagnats.cli.auth_cmds import url
from dagnats.cli.bench_cmds import bench
from dagnats.cli.common import debug_enabled
from dagnats.cli.dlq_cmds import dlq
from dagnats.cli.event_cmds import event
from dagnats.cli.http_cmds import http
from dagnats.cli.ops_cmds import doctor, logs, migrate, stop, version
from dagnats.cli.python_cmd import python
from dagnats.cli.run_cmds import run
from dagnats.cli.serve_cmds import component, engine, serve, worker
from dagnats.cli.workflow_cmds import workflow
from dagnats.errors import DagnatsError
from dagnats.program import with_program

UNEXPECTED_EXIT_CODE = 1
#: What a shell reports for a process killed by SIGPIPE (128 + 13).
BROKEN_PIPE_EXIT_CODE = 141


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def report(exc: Exception) -> int:
    """Print one line for `exc` on stderr and return the exit code it maps to."""
    if debug_enabled():
        traceback.print_exception(exc)
    if isinstance(exc, DagnatsError):
        click.echo(f"error: {with_program(_first_line(exc.message))}", err=True)
        return exc.exit_code
    detail = _first_line(str(exc))
    hint = "" if debug_enabled() else " (DAGNATS_DEBUG=1 shows the traceback)"
    click.echo(f"error: unexpected {type(exc).__name__}{': ' if detail else ''}{detail}{hint}",
               err=True)
    return UNEXPECTED_EXIT_CODE


class DagnatsGroup(click.Group):
    """The root group: runs a command and maps whatever it raises to an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit,
                click.exceptions.Abort):
            raise
        except BrokenPipeError:
            # The reader went away (`dagnats run events ID | head`): stop quietly, as Unix
            # tools do, and keep the interpreter's final flush from failing again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(BROKEN_PIPE_EXIT_CODE)
        except Exception as exc:
            ctx.exit(report(exc))


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """--version: the same version as `dagnats version` (a checkout's is 0.1.0+checkout)."""
    if not value or ctx.resilient_parsing:
        return
    from dagnats.server.about import dagnats_version

    click.echo(f"dagnats, version {dagnats_version()}")
    ctx.exit()


@click.group(cls=DagnatsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True,
              callback=_print_version, help="Show the version and exit.")
def cli() -> None:
    """dagnats: durable DAG workflows on NATS JetStream."""


cli.add_command(workflow)
cli.add_command(run)
cli.add_command(dlq)
cli.add_command(event)
cli.add_command(serve)
cli.add_command(worker)
cli.add_command(engine)
cli.add_command(http)
cli.add_command(component)
cli.add_command(bench)
for _ops in (version, doctor, stop, logs, migrate, url, python):
    cli.add_command(_ops)


def main() -> None:
    """The console script and `python -m dagnats`."""
    cli(prog_name="dagnats")
