"""What the commands share: the --nats-url and --json options, client sessions, output."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import click

from dagnats.cli.render import pretty_json
from dagnats.client import AsyncClient
from dagnats.connection import SECURITY_FLAGS

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

DEBUG_ENV = "DAGNATS_DEBUG"


def debug_enabled() -> bool:
    """True when DAGNATS_DEBUG asks for tracebacks and debug logs."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def nats_url_option(fn: F) -> F:
    """--nats-url (env DAGNATS_NATS_URL; default: the local serve's), and credentials."""
    fn = connection_security_options(fn)
    return click.option(
        "--nats-url", envvar="DAGNATS_NATS_URL", default=None, metavar="URL",
        help="NATS server URL [env DAGNATS_NATS_URL; default: the running local `dagnats "
             "serve`, else nats://127.0.0.1:4222].")(fn)


def connection_security_options(fn: F) -> F:
    """--creds, --nkey, --tls-ca, --tls-cert, --tls-key: each sets its DAGNATS_NATS_* variable.

    They reach dagnats.connection (and every process serve starts) through the environment,
    so commands take no extra parameters.
    """
    def remember(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
        if value:
            os.environ[SECURITY_FLAGS[param.opts[0]]] = value

    for flag, var in reversed(SECURITY_FLAGS.items()):
        fn = click.option(flag, metavar="FILE", expose_value=False, callback=remember,
                          is_eager=True, help=f"{SECURITY_HELP[flag]} [env {var}]")(fn)
    return fn


SECURITY_HELP = {
    "--creds": "NATS credentials file (JWT and NKEY seed).",
    "--nkey": "NATS NKEY seed file.",
    "--tls-ca": "CA certificates to verify the NATS server with.",
    "--tls-cert": "Client certificate for mutual TLS (with --tls-key).",
    "--tls-key": "Private key of --tls-cert.",
}


def json_option(fn: F) -> F:
    """--json: machine-readable output."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(fn)


def resolve_and_note(nats_url: str | None) -> str:
    """The URL a command uses (dagnats.discovery); when it is not the one a running local
    serve advertises, a one-line note on stderr says so."""
    from dagnats.discovery import mismatch_note, resolve

    resolution = resolve(nats_url)
    note = mismatch_note(resolution)
    if note:
        click.echo(note, err=True)
    return resolution.url


def with_client(nats_url: str | None, work: Callable[[AsyncClient], Awaitable[T]]) -> T:
    """Connect, run `work` with the client, and close: one event loop per command."""
    quiet_logging()
    url = resolve_and_note(nats_url)

    async def session() -> T:
        async with await AsyncClient.connect(url) as client:
            return await work(client)

    return asyncio.run(session())


def quiet_logging() -> None:
    """Keep library warnings (reconnect attempts and such) off a command's stderr."""
    root = logging.getLogger()
    if debug_enabled():
        logging.basicConfig(level=logging.DEBUG)
    elif not root.handlers:
        root.addHandler(logging.NullHandler())


def component_logging() -> None:
    """Logs of a long-running component: one line per record, on stderr (serve keeps a file)."""
    logging.basicConfig(
        level=logging.DEBUG if debug_enabled() else logging.INFO, force=True,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def echo_lines(lines: Iterable[str]) -> None:
    """Print lines to stdout."""
    for line in lines:
        click.echo(line)


def echo_json(value: Any) -> None:
    """Print a value as indented JSON to stdout."""
    click.echo(pretty_json(value))
