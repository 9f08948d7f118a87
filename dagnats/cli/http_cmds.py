"""`dagnats http`: the HTTP API and console against any NATS (serve runs it as `http`), and
the options it shares with `dagnats serve`."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from dagnats import aio
from dagnats.cli.common import component_logging, nats_url_option

F = TypeVar("F", bound=Callable[..., Any])

#: The default HTTP port (dagnats.http.app.DEFAULT_PORT, spelled here to keep the CLI light).
DEFAULT_HTTP_PORT = 8422


def http_options(fn: F) -> F:
    """--http-host, --http-port, --token-file, --read-token-file."""
    for option in reversed([
        click.option("--http-host", envvar="DAGNATS_HTTP_HOST", default="127.0.0.1",
                     show_default=True, help="Address of the HTTP API and console "
                     "[env DAGNATS_HTTP_HOST]; any other than loopback needs a token."),
        click.option("--http-port", envvar="DAGNATS_HTTP_PORT", default=DEFAULT_HTTP_PORT,
                     type=click.IntRange(0, 65535), show_default=True,
                     help="Port of the HTTP API and console [env DAGNATS_HTTP_PORT]; 0 turns "
                     "them off."),
        click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path),
                     help="A file holding the token every HTTP call needs [else env "
                     "DAGNATS_TOKEN; none: no token, loopback only]."),
        click.option("--read-token-file", type=click.Path(dir_okay=False, path_type=Path),
                     help="A file holding a read-only token, for viewers [else env "
                     "DAGNATS_READ_TOKEN]."),
    ]):
        fn = option(fn)
    return fn


@click.command("http")
@nats_url_option
@http_options
def http(nats_url: str | None, http_host: str, http_port: int, token_file: Path | None,
         read_token_file: Path | None) -> None:
    """Serve the HTTP API (/api/v1, /docs) and the web console, against a NATS where the
    dagnats API runs (`dagnats serve` runs this itself)."""
    from dagnats.errors import InvalidInput
    from dagnats.http.app import run_http
    from dagnats.http.security import check_binding, load_tokens
    from dagnats.server.ready import READY_FD_ENV, notify_ready

    tokens = load_tokens(token_file, read_token_file)
    check_binding(http_host, tokens)
    if http_port == 0:
        raise InvalidInput("--http-port 0 turns the HTTP API off; there is nothing to run")
    component_logging()

    supervised = READY_FD_ENV in os.environ  # by serve, which prints the URL itself

    def ready(url: str) -> None:
        notify_ready()
        if not supervised:
            click.echo(f"dagnats http: the console is at {url}, the API at {url}api/v1 "
                       f"(reference: {url}docs). Press Ctrl-C to stop.")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_http(nats_url, http_host, http_port, tokens, stop, ready)

    aio.run(main())
