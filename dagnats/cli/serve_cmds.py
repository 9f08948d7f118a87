"""`dagnats serve`, `dagnats worker run`, and the hidden `_component` processes serve runs."""

from __future__ import annotations

import asyncio
import os
import runpy
import sys
import traceback
from pathlib import Path

import click

from dagnats import aio
from dagnats.cli.common import component_logging, connection_security_options, nats_url_option
from dagnats.cli.worker_file import check_worker_file
from dagnats.errors import DagnatsError, InvalidInput

#: Set in the environment of a serve started by `serve --detach`.
DETACHED_ENV = "DAGNATS_DETACHED"


@click.command()
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where the store and logs live [default: the user data dir].")
@click.option("--nats-port", type=click.IntRange(0, 65535), default=4222, show_default=True,
              help="NATS client port (0 picks a free one).")
@click.option("--nats-server", envvar="DAGNATS_NATS_SERVER", metavar="PATH",
              help="The nats-server binary to use [env DAGNATS_NATS_SERVER].")
@click.option("--nats-url", metavar="URL",
              help="Use this NATS (nats://host:4222) and start no nats-server.")
@connection_security_options
@click.option("--worker", "workers", multiple=True, type=click.Path(path_type=Path),
              help="A Python worker file to run and supervise (repeatable).")
@click.option("--sync", type=click.Choice(["always", "periodic"]), default="periodic",
              show_default=True, help="fsync every JetStream write (survives power loss), "
              "or periodically (survives a crash of any process).")
@click.option("--detach", is_flag=True,
              help="Run in the background; `dagnats stop` ends it, `dagnats logs` shows it.")
@click.pass_context
def serve(ctx: click.Context, data_dir: Path | None, nats_port: int, nats_server: str | None,
          nats_url: str | None, workers: tuple[Path, ...], sync: str, detach: bool) -> None:
    """Run NATS, the API, the engine and your workers until Ctrl-C (or `dagnats stop`)."""
    from dagnats.server.serve import ServeOptions, default_data_dir
    from dagnats.server.serve import serve as run_serve

    if nats_url and sync == "always":
        raise InvalidInput("--sync always applies to the nats-server serve starts; with "
                           "--nats-url, set `jetstream { sync_interval: always }` on that server")
    if detach:
        from dagnats.server.detach import run_detached

        folder = (data_dir or default_data_dir()).expanduser().resolve()
        click.echo(run_detached(sys.argv[1:], folder))
        return
    options = ServeOptions(data_dir=data_dir, nats_port=nats_port, nats_server=nats_server,
                           workers=list(workers), sync_always=sync == "always",
                           nats_url=nats_url, detached=bool(os.environ.get(DETACHED_ENV)))
    ctx.exit(asyncio.run(run_serve(options)))


@click.group()
def worker() -> None:
    """Run workers."""


@worker.command("run")
@click.argument("file", type=click.Path(path_type=Path))
@click.pass_context
def worker_run(ctx: click.Context, file: Path) -> None:
    """Run the worker file FILE with dagnats' own Python (as `python FILE` would).

    An exception from FILE is printed with its traceback: it is the user's code.
    """
    path = file.expanduser()
    check_worker_file(path)
    sys.argv = [str(path)]
    sys.path.insert(0, str(path.resolve().parent))  # as python does for a script
    try:
        runpy.run_path(str(path), run_name="__main__")
    except DagnatsError:
        raise
    except Exception:
        traceback.print_exc()
        ctx.exit(1)


@click.group("_component", hidden=True)
def component() -> None:
    """Processes `dagnats serve` supervises (internal)."""


@component.command("api")
@nats_url_option
def component_api(nats_url: str | None) -> None:
    """The API service."""
    from dagnats.api import run_api

    component_logging()
    aio.run(run_api(nats_url))


@component.command("engine")
@nats_url_option
def component_engine(nats_url: str | None) -> None:
    """The engine."""
    from dagnats.engine.main import run_engine

    component_logging()
    aio.run(run_engine(nats_url))
