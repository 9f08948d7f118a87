"""The credentials of a local `dagnats serve`, and how the same OS user's processes find them.

`serve` generates one login per role on first start and keeps them in `<data_dir>/auth.json`
(mode 0600, in a 0700 data dir):

    {"admin": {"user": "dagnats", "password": "..."},          the API, the engine, the CLI
     "worker": {"user": "dagnats-worker", "password": "..."}}  workers (fewer permissions)

While it runs, serve registers itself in the user's state dir (`DAGNATS_STATE_DIR`, else
platformdirs' user state dir), one 0600 file per data dir in a 0700 folder:

    <state_dir>/serves/<digest of the data dir>.json   {"url", "data_dir", "pid", "auth"}

(every running serve registers, so clients find it: dagnats.discovery; "auth" is false for
--no-auth or an external NATS, whose logins are not ours to give).

`dagnats.connection.connect` looks a URL up there when it was given no credentials, so the
CLI and the Python client of the user who runs serve need no configuration, and another
local user (who cannot read either file) is refused by nats-server.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote, urlsplit

import platformdirs

STATE_DIR_ENV = "DAGNATS_STATE_DIR"
AUTH_NAME = "auth.json"
ROLES = ("admin", "worker")
USERS = {"admin": "dagnats", "worker": "dagnats-worker"}
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
DEFAULT_PORT = 4222


class Login(NamedTuple):
    """A NATS user name and password."""

    user: str
    password: str


# --- private files ---------------------------------------------------------------------------

def private_dir(path: Path) -> Path:
    """Create `path` (and its parents) if needed and make it 0700; return it."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` atomically, readable by its owner only (0600)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


# --- the logins of a data dir ----------------------------------------------------------------

def load_logins(data_dir: Path) -> dict[str, Login] | None:
    """The logins kept in `<data_dir>/auth.json`; None when there are none (or unreadable)."""
    try:
        raw = json.loads((Path(data_dir) / AUTH_NAME).read_text(encoding="utf-8"))
        return {role: Login(raw[role]["user"], raw[role]["password"]) for role in ROLES}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def ensure_logins(data_dir: Path) -> dict[str, Login]:
    """The data dir's logins, generated (random 32-byte passwords) on first use."""
    found = load_logins(data_dir)
    if found is not None:
        os.chmod(Path(data_dir) / AUTH_NAME, 0o600)
        return found
    logins = {role: Login(USERS[role], secrets.token_urlsafe(32)) for role in ROLES}
    body = {role: login._asdict() for role, login in logins.items()}
    write_private(Path(data_dir) / AUTH_NAME, json.dumps(body, indent=2) + "\n")
    return logins


def url_with_login(url: str, login: Login) -> str:
    """`url` with the login in it (nats://user:password@host:port), for other NATS tools."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    userinfo = f"{quote(login.user, safe='')}:{quote(login.password, safe='')}"
    return parts._replace(netloc=f"{userinfo}@{netloc}").geturl()


# --- the registry of running serves ----------------------------------------------------------

def state_dir() -> Path:
    """Where this user's running serves are registered."""
    return Path(os.environ.get(STATE_DIR_ENV) or platformdirs.user_state_dir("dagnats"))


def _entry_path(data_dir: Path) -> Path:
    digest = hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:16]
    return state_dir() / "serves" / f"{digest}.json"


def register(data_dir: Path, url: str, *, auth: bool = True) -> None:
    """Record that this process serves `url` (with the logins of `data_dir` when `auth`)."""
    path = _entry_path(data_dir)
    private_dir(path.parent.parent)
    private_dir(path.parent)
    body = {"url": url, "data_dir": str(Path(data_dir).resolve()), "pid": os.getpid(),
            "auth": auth}
    write_private(path, json.dumps(body, indent=2) + "\n")


def unregister(data_dir: Path) -> None:
    """Forget the serve of `data_dir` (it is stopping)."""
    with contextlib.suppress(FileNotFoundError):
        _entry_path(data_dir).unlink()


def endpoint(url: str) -> tuple[str, int] | None:
    """(host, port) a single NATS URL names, loopback names made one; None if unparsable."""
    text = url.strip()
    if "://" not in text:
        text = f"nats://{text}"
    try:
        parts = urlsplit(text)
        host, port = (parts.hostname or "").lower(), parts.port or DEFAULT_PORT
    except ValueError:
        return None
    return ("127.0.0.1" if host in LOOPBACK else host), port


class Registered(NamedTuple):
    """One entry of the registry: a serve that said it serves `url` from `data_dir`."""

    url: str
    data_dir: Path
    auth: bool


def registered_serves() -> list[Registered]:
    """Every entry of the registry, in a stable order; unreadable ones are skipped. Entries
    of serves that died without unregistering are included: see `serve_alive`."""
    try:
        paths = sorted((state_dir() / "serves").glob("*.json"))
    except OSError:  # not ours to read
        return []
    found = []
    for path in paths:
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
            found.append(Registered(str(entry["url"]), Path(entry["data_dir"]),
                                    entry.get("auth") is not False))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


def serve_alive(data_dir: Path) -> bool:
    """True when a serve of `data_dir` runs now (its lock and pid say so)."""
    from dagnats.server.state import running_pid

    return running_pid(data_dir) is not None


def lookup(url: str, role: str = "admin") -> Login | None:
    """The login of the running local serve that serves `url`; None when there is none."""
    wanted = endpoint(url)
    if wanted is None or "," in url:
        return None
    for entry in registered_serves():
        # --no-auth, or an external NATS: no login of ours
        if entry.auth and endpoint(entry.url) == wanted and serve_alive(entry.data_dir):
            logins = load_logins(entry.data_dir)
            if logins is not None:
                return logins[role]
    return None
