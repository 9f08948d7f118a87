"""Who may call the HTTP API and the console, and what they may do.

- No token set: anyone who can reach the port may do anything, so `serve` binds to
  loopback only unless a token is set (`check_binding`).
- A token set (DAGNATS_TOKEN or a file): every call needs it, as `Authorization: Bearer`
  or as the console's session cookie (HttpOnly, SameSite=Strict), set once by the login
  page. A second, read-only token (DAGNATS_READ_TOKEN) may read everything and change
  nothing (403 on any other method).
- CSRF: a state-changing request that a browser sends (it carries `Origin` or
  `Sec-Fetch-Site`) must come from the console's own origin and carry the `X-CSRF-Token`
  header equal to the `dagnats_csrf` cookie, which only a page of this origin can read. A
  body must be JSON, which a cross-site HTML form cannot send. Scripts and other services
  (curl, the Python `requests`) send none of these headers and use the bearer token.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from starlette.requests import Request

from dagnats.errors import InvalidInput, ServeError
from dagnats.http.problems import HttpError

TOKEN_ENV = "DAGNATS_TOKEN"
READ_TOKEN_ENV = "DAGNATS_READ_TOKEN"
SESSION_COOKIE = "dagnats_session"
CSRF_COOKIE = "dagnats_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: The shortest token accepted (a guessable token is no protection).
MIN_TOKEN_CHARS = 16

Role = Literal["full", "read"]


@dataclass(frozen=True)
class Tokens:
    """The full token and the read-only one (either may be unset)."""

    full: str | None = None
    read: str | None = None

    @property
    def required(self) -> bool:
        """True when calls need a token."""
        return bool(self.full or self.read)

    def role_of_token(self, given: str) -> Role | None:
        """The role a bearer token grants; None for a wrong one."""
        if self.full and hmac.compare_digest(given.encode(), self.full.encode()):
            return "full"
        if self.read and hmac.compare_digest(given.encode(), self.read.encode()):
            return "read"
        return None

    def session(self, role: Role) -> str:
        """The session cookie's value for `role`: derived from its token, so the cookie
        never holds the token itself."""
        token = self.full if role == "full" else self.read
        assert token, role
        return hmac.new(token.encode(), b"dagnats console session", hashlib.sha256).hexdigest()

    def role_of_session(self, cookie: str) -> Role | None:
        """The role a session cookie grants; None for a stale or forged one."""
        roles: list[Role] = ["full", "read"]
        for role in roles:
            if not (self.full if role == "full" else self.read):
                continue
            if hmac.compare_digest(cookie.encode(), self.session(role).encode()):
                return role
        return None


def load_tokens(token_file: Path | None = None, read_token_file: Path | None = None,
                environ: Mapping[str, str] | None = None) -> Tokens:
    """The tokens from their files, else from DAGNATS_TOKEN and DAGNATS_READ_TOKEN
    (never from the command line, where `ps` shows them). InvalidInput for an unreadable
    or too short token, or a read-only token equal to the full one."""
    env = os.environ if environ is None else environ
    full = _token(token_file, env.get(TOKEN_ENV), "--token-file", TOKEN_ENV)
    read = _token(read_token_file, env.get(READ_TOKEN_ENV), "--read-token-file",
                  READ_TOKEN_ENV)
    if full and read and full == read:
        raise InvalidInput("the read-only token is the same as the full one; give viewers a "
                           "token of their own")
    return Tokens(full, read)


def _token(path: Path | None, value: str | None, flag: str, env: str) -> str | None:
    if path is not None:
        try:
            value = path.read_text()
        except OSError as exc:
            raise InvalidInput(f"cannot read {flag} {path}: {exc.strerror or exc}") from None
    if value is None or not value.strip():
        if path is not None:
            raise InvalidInput(f"{flag} {path} is empty")
        return None
    token = value.strip()
    if len(token) < MIN_TOKEN_CHARS or any(ch.isspace() for ch in token):
        source = f"{flag} {path}" if path is not None else env
        raise InvalidInput(f"the token in {source} must be at least {MIN_TOKEN_CHARS} "
                           "characters without spaces (make one with: openssl rand -hex 24)")
    return token


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (127.0.0.1, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_binding(host: str, tokens: Tokens) -> None:
    """Refuse (ServeError, one line) to serve HTTP beyond loopback without a token."""
    if not tokens.full and not is_loopback(host):
        raise ServeError(f"the HTTP API would listen on {host} without a token: anyone who "
                         f"can reach it could start and cancel runs; set {TOKEN_ENV} or "
                         "--token-file (or keep --http-host 127.0.0.1)")


def new_csrf() -> str:
    """A fresh value for the CSRF cookie."""
    return secrets.token_urlsafe(24)


@dataclass(frozen=True)
class Caller:
    """Who sent a request: the role it has, and whether it came by the session cookie."""

    role: Role
    by_cookie: bool = False


def authorize(request: Request, tokens: Tokens) -> Caller:
    """The caller of a request, or HttpError: 401 without a valid token, 403 for a
    read-only caller asking to change something, 403 for a cross-site or CSRF-less
    browser request that changes something."""
    caller = _caller(request, tokens)
    if request.method in SAFE_METHODS:
        return caller
    check_same_origin(request)
    if _from_browser(request):
        cookie = request.cookies.get(CSRF_COOKIE, "")
        header = request.headers.get(CSRF_HEADER, "")
        if not cookie or not hmac.compare_digest(cookie.encode(), header.encode()):
            raise HttpError(403, "CsrfRefused", "a browser request that changes something "
                            f"needs the {CSRF_HEADER} header equal to the {CSRF_COOKIE} "
                            "cookie (the console sends it); reload the page")
    if caller.role != "full":
        raise HttpError(403, "ReadOnly", "this token is read-only: it can look at "
                        "everything and change nothing")
    return caller


def _caller(request: Request, tokens: Tokens) -> Caller:
    if not tokens.required:
        return Caller("full")
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, given = header.partition(" ")
        role = tokens.role_of_token(given.strip()) if scheme.lower() == "bearer" else None
        if role is None:
            raise _unauthorized("the bearer token is wrong")
        return Caller(role)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        role = tokens.role_of_session(cookie)
        if role is None:
            raise _unauthorized("the console session is no longer valid (the token changed); "
                                "log in again")
        return Caller(role, by_cookie=True)
    raise _unauthorized("this dagnats needs a token: send `Authorization: Bearer TOKEN`")


def _unauthorized(message: str) -> HttpError:
    return HttpError(401, "Unauthorized", message, {"WWW-Authenticate": "Bearer"})


def _from_browser(request: Request) -> bool:
    """True for a request a browser sent (it adds these headers; scripts do not)."""
    return "origin" in request.headers or "sec-fetch-site" in request.headers


def check_same_origin(request: Request) -> None:
    """HttpError 403 for a request a browser sent from another site."""
    site = request.headers.get("sec-fetch-site", "")
    origin = request.headers.get("origin")
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    if site in ("cross-site", "same-site") or (origin is not None and origin != own):
        raise HttpError(403, "CrossSiteRefused", "a request from another site may not "
                        "change anything here")
