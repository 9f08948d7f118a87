"""Connecting to NATS the way every dagnats process should: reconnect forever, log one line.

Credentials come from the environment, so every process serve supervises gets them too
(the CLI's --creds/--nkey/--tls-* options set these variables):

    DAGNATS_NATS_URL       nats://host:4222 (a comma-separated list for a cluster)
    DAGNATS_NATS_CREDS     a .creds file (a user JWT and its NKEY seed, as `nsc` writes them)
    DAGNATS_NATS_NKEY      a file holding a user NKEY seed (SU...)
    DAGNATS_NATS_TLS_CA    CA bundle to verify the server (tls:// URLs use the system CAs)
    DAGNATS_NATS_TLS_CERT  client certificate, with DAGNATS_NATS_TLS_KEY, for mutual TLS
    DAGNATS_NATS_TLS_KEY

A user and password may also be given in the URL: nats://user:secret@host:4222, or in

    DAGNATS_NATS_USER      with DAGNATS_NATS_PASSWORD (how `dagnats serve` passes its
    DAGNATS_NATS_PASSWORD  children their login: never on a command line)

Given none of these, a URL served by a local `dagnats serve` of the same OS user gets that
serve's login from its registry (dagnats.local_auth).

Every connection reconnects: a client rides through a nats-server restart (its calls wait
up to their timeout, or fail with ServerUnavailable, while the server is away).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client as NATS

from dagnats import discovery
from dagnats.errors import InvalidInput, ServerUnavailable
from dagnats.local_auth import Login, lookup

log = logging.getLogger("dagnats.connection")

DEFAULT_URL = discovery.DEFAULT_URL
URL_ENV = discovery.URL_ENV
CREDS_ENV = "DAGNATS_NATS_CREDS"
NKEY_ENV = "DAGNATS_NATS_NKEY"
TLS_CA_ENV = "DAGNATS_NATS_TLS_CA"
TLS_CERT_ENV = "DAGNATS_NATS_TLS_CERT"
TLS_KEY_ENV = "DAGNATS_NATS_TLS_KEY"
#: Between two reconnect attempts, once connected.
RECONNECT_WAIT_S = 0.5
#: A connection problem that keeps repeating (NATS down) is logged again at most this often.
REPEAT_LOG_S = 60.0


class RepeatedLines:
    """Says whether a log line is worth writing: a new one always, the same one again only
    after `every_s` (a worker whose NATS is down would log it twice a second otherwise)."""

    def __init__(self, every_s: float = REPEAT_LOG_S) -> None:
        self.every_s = every_s
        self._last: dict[str, float] = {}

    def worth(self, line: str) -> bool:
        """True when `line` was not written in the last `every_s` seconds."""
        now = time.monotonic()
        if now - self._last.get(line, -self.every_s) < self.every_s:
            return False
        self._last[line] = now
        return True

    def said_any(self) -> bool:
        """True when a line was written since the last reset."""
        return bool(self._last)

    def reset(self) -> None:
        """Forget what was written (the problem is over)."""
        self._last.clear()
USER_ENV = "DAGNATS_NATS_USER"
PASSWORD_ENV = "DAGNATS_NATS_PASSWORD"
#: CLI flag -> the variable it sets (see `dagnats.cli.common.nats_url_option`).
SECURITY_FLAGS = {"--creds": CREDS_ENV, "--nkey": NKEY_ENV, "--tls-ca": TLS_CA_ENV,
                  "--tls-cert": TLS_CERT_ENV, "--tls-key": TLS_KEY_ENV}


def resolve_url(url: str | None = None) -> str:
    """The NATS URL to use: the one given, else DAGNATS_NATS_URL, else a running local serve's,
    else the local default (dagnats.discovery decides)."""
    return url or discovery.resolve(url).url


async def resolve_url_async(url: str | None = None) -> str:
    """resolve_url, its few small file reads off the event loop."""
    if url:
        return url
    found: str = await asyncio.to_thread(resolve_url)
    return found


def redact(url: str) -> str:
    """The URL with any password (or token) replaced by ***, for messages and logs."""
    def hide(match: re.Match[str]) -> str:
        user, colon, _ = match.group(1).partition(":")
        return f"://{user}:***@" if colon else "://***@"

    return re.sub(r"://([^/@,\s]*)@", hide, url)


def _existing_file(environ: Mapping[str, str], var: str) -> str | None:
    value = environ.get(var)
    if not value:
        return None
    path = os.path.expanduser(value)
    if not os.path.isfile(path):
        flag = next(f for f, v in SECURITY_FLAGS.items() if v == var)
        raise InvalidInput(f"{flag} / {var}: {value} is not a file; check the path")
    return path


def tls_context(environ: Mapping[str, str]) -> ssl.SSLContext | None:
    """The TLS context the DAGNATS_NATS_TLS_* variables ask for; None when none is set."""
    ca = _existing_file(environ, TLS_CA_ENV)
    cert = _existing_file(environ, TLS_CERT_ENV)
    key = _existing_file(environ, TLS_KEY_ENV)
    if ca is None and cert is None:
        return None
    if (cert is None) != (key is None):
        raise InvalidInput("--tls-cert and --tls-key go together: give both, or neither")
    try:
        context = ssl.create_default_context(cafile=ca)
        if cert is not None:
            context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise InvalidInput(f"cannot load the TLS files ({exc}); check --tls-ca, --tls-cert "
                           "and --tls-key") from exc
    return context


def _check_seed(path: str, flag: str, var: str, *, creds_file: bool) -> None:
    """Refuse, in one line, a file that holds no usable NKEY seed (nats-py would fail later
    with a less helpful error)."""
    import nkeys

    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{flag} / {var}: cannot read {path} ({exc})") from exc
    seeds = re.findall(r"^\s*(S[A-Z2-7]{57})\s*$", text, re.M)
    jwt_ok = not creds_file or "BEGIN NATS USER JWT" in text
    try:
        if seeds and jwt_ok:
            nkeys.from_seed(bytearray(seeds[0].encode()))
            return
    except nkeys.NkeysError:
        pass
    what = "a .creds file (a user JWT and its NKEY seed)" if creds_file else "an NKEY seed"
    raise InvalidInput(f"{flag} / {var}: {path} is not {what}; check the file")


def security_options(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The nats.connect keyword arguments for the credentials in the environment."""
    environ = os.environ if environ is None else environ
    options: dict[str, Any] = {}
    creds = _existing_file(environ, CREDS_ENV)
    nkey = _existing_file(environ, NKEY_ENV)
    if creds and nkey:
        raise InvalidInput("--creds and --nkey are two ways to sign in: give one of them")
    if creds:
        _check_seed(creds, "--creds", CREDS_ENV, creds_file=True)
        options["user_credentials"] = creds
    if nkey:
        _check_seed(nkey, "--nkey", NKEY_ENV, creds_file=False)
        options["nkeys_seed"] = nkey
    context = tls_context(environ)
    if context is not None:
        options["tls"] = context
    return options


async def connect(
    url: str | None = None,
    *,
    name: str = "dagnats",
    long_lived: bool = False,
    on_closed: Callable[[], Awaitable[None]] | None = None,
    connect_timeout_s: float = 2.0,
    login: Login | None = None,
    role: str = "admin",
) -> NATS:
    """Connect to NATS, raising ServerUnavailable (one clear line) when it cannot be reached.

    Once connected, every connection reconnects forever; long-lived processes (engine, API,
    workers) log each problem as a warning. `on_closed` runs if the connection is closed
    for good, so a supervised process can exit and be restarted. `login` signs in with
    that user and password (else see the module's docstring; `role` is the login taken
    from the registry of local serves: "admin" or "worker").
    """
    given = await resolve_url_async(url)
    security = security_options()
    if login is not None:
        security.update(user=login.user, password=login.password)
    else:
        # A few small files at most (the registry): off the event loop all the same.
        security.update(await asyncio.to_thread(_login_options, given, security, role))

    repeated = RepeatedLines()
    first_errors: list[str] = []  # why the first connection failed (nats-py then says
    # only "no servers available", having tried to reconnect)

    async def error_cb(exc: Exception) -> None:
        # Long-lived processes log each problem as one line; short-lived callers (the CLI)
        # get one ServerUnavailable instead.
        if not nc_ready:
            first_errors.append(str(exc))
        text = str(exc) or type(exc).__name__
        if long_lived and repeated.worth(text):
            log.warning("nats: %s (reconnecting; said again every %gs while it lasts)",
                        text, repeated.every_s)
        else:
            log.debug("nats: %s", text)

    async def reconnected_cb() -> None:
        if long_lived and repeated.said_any():
            log.warning("nats: reconnected")
        repeated.reset()

    async def closed_cb() -> None:
        if on_closed is not None:
            await on_closed()

    nc_ready = False
    try:
        # A bounded first connection (nats-py would retry a first connect forever when
        # reconnects are unlimited); unlimited reconnects are switched on once connected.
        nc = await nats.connect(
            [u.strip() for u in given.split(",") if u.strip()],
            name=name,
            connect_timeout=connect_timeout_s,
            allow_reconnect=True,
            max_reconnect_attempts=2 if long_lived else 1,  # 0 would mean "forever" here
            reconnect_time_wait=0.5 if long_lived else 0.1,
            error_cb=error_cb,
            reconnected_cb=reconnected_cb,
            closed_cb=closed_cb,
            **security,
        )
    except Exception as exc:  # nats-py raises several unrelated types for "cannot connect"
        if "authorization violation" in " ".join([str(exc), *first_errors]).lower():
            raise ServerUnavailable(
                f"NATS at {redact(given)} refused our credentials (authorization violation); "
                "check --creds, --nkey or the user and password in --nats-url") from exc
        raise ServerUnavailable(
            f"cannot reach NATS at {redact(given)} ({exc or type(exc).__name__}); "
            "start it with `dagnats serve`, or pass --nats-url"
        ) from exc
    # Once connected, reconnect forever: a long-lived process or client rides through any
    # restart of nats-server (`serve` restarts it within a second).
    nc_ready = True
    nc.options["max_reconnect_attempts"] = -1
    nc.options["reconnect_time_wait"] = RECONNECT_WAIT_S
    return nc


def _login_options(url: str, security: Mapping[str, Any], role: str) -> dict[str, str]:
    """user/password for nats.connect: from DAGNATS_NATS_USER/PASSWORD, else from the
    registry of local serves; none when the URL or other options already sign in."""
    if "@" in url or "user_credentials" in security or "nkeys_seed" in security:
        return {}
    user, password = os.environ.get(USER_ENV), os.environ.get(PASSWORD_ENV)
    if user and password:
        return {"user": user, "password": password}
    login = lookup(url, role)
    return {} if login is None else {"user": login.user, "password": login.password}
