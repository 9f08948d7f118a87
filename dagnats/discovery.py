"""Which NATS a client talks to when it is not told: the one place that decides.

    the URL given (--nats-url, `connect(url)`)    >  DAGNATS_NATS_URL
    >  the running `dagnats serve` of the default data dir (as `doctor` finds it)
    >  the only running serve in the user's registry of serves (dagnats.local_auth)
    >  nats://127.0.0.1:4222

So `serve --nats-port 25222` and then `workflow register` with no URL talk to that serve.
When the URL used is not one a running local serve advertises, or was chosen among several
running serves, `mismatch_note` says so in one line (the CLI prints it on stderr and goes
on).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from dagnats.local_auth import endpoint, registered_serves, serve_alive

DEFAULT_URL = "nats://127.0.0.1:4222"
URL_ENV = "DAGNATS_NATS_URL"
#: The data dir serve, stop, logs, doctor and discovery use when given no --data-dir.
DATA_DIR_ENV = "DAGNATS_DATA_DIR"

#: Where a URL came from (Resolution.source).
GIVEN, FROM_ENV, FROM_SERVE, DEFAULT = "--nats-url", URL_ENV, "serve", "default"


def default_data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """DAGNATS_DATA_DIR, else the per-user data dir (such as ~/.local/share/dagnats)."""
    environ = os.environ if environ is None else environ
    return Path(environ.get(DATA_DIR_ENV) or platformdirs.user_data_dir("dagnats"))


@dataclass(frozen=True)
class LocalServe:
    """A `dagnats serve` of this user that runs now, and the URL it advertises."""

    url: str
    data_dir: Path


@dataclass(frozen=True)
class Resolution:
    """The URL to use, and why (GIVEN, FROM_ENV, FROM_SERVE or DEFAULT)."""

    url: str
    source: str
    serve: LocalServe | None = None


def _default_serve(environ: Mapping[str, str] | None) -> LocalServe | None:
    from dagnats.server.state import read_state

    folder = default_data_dir(environ).expanduser()
    try:
        state = read_state(folder)
    except OSError:
        return None
    if not state or not state.get("nats_url"):
        return None
    return LocalServe(str(state["nats_url"]), folder.resolve())


def running_serves(environ: Mapping[str, str] | None = None) -> list[LocalServe]:
    """Every running serve of this user: the default data dir's first, then the registry's."""
    found: dict[Path, LocalServe] = {}
    default = _default_serve(environ)
    registered = {entry.data_dir: entry.url for entry in registered_serves()}
    if default is not None:
        # The registry's URL is the unredacted one (an external NATS may hold a login).
        found[default.data_dir] = LocalServe(registered.get(default.data_dir, default.url),
                                             default.data_dir)
    for data_dir, url in registered.items():
        if data_dir not in found and serve_alive(data_dir):
            found[data_dir] = LocalServe(url, data_dir)
    return list(found.values())


def resolve(url: str | None = None, environ: Mapping[str, str] | None = None) -> Resolution:
    """The NATS URL to use (see the module's docstring) and where it came from."""
    environ = os.environ if environ is None else environ
    from_env = environ.get(URL_ENV) or None
    if url:
        return Resolution(url, FROM_ENV if url == from_env else GIVEN)
    if from_env:
        return Resolution(from_env, FROM_ENV)
    serves = running_serves(environ)
    default = default_data_dir(environ).expanduser().resolve()
    chosen = next((s for s in serves if s.data_dir == default), None)
    if chosen is None and len(serves) == 1:
        chosen = serves[0]
    if chosen is not None:
        return Resolution(chosen.url, FROM_SERVE, chosen)
    return Resolution(DEFAULT_URL, DEFAULT)


def _endpoints(url: str) -> set[tuple[str, int]]:
    return {e for part in url.split(",") if (e := endpoint(part)) is not None}


def mismatch_note(resolution: Resolution,
                  environ: Mapping[str, str] | None = None) -> str | None:
    """One line when the URL used is not one a running local serve advertises; else None."""
    from dagnats.connection import redact

    serves = running_serves(environ)
    if resolution.source == FROM_SERVE:
        others = [s for s in serves if resolution.serve is None
                  or s.data_dir != resolution.serve.data_dir]
        if not others or resolution.serve is None:
            return None
        where = ", ".join(f"{redact(s.url)} (data dir {s.data_dir})" for s in others)
        return (f"note: using {redact(resolution.url)} (the serve of the default data dir "
                f"{resolution.serve.data_dir}); other local serves: {where}; pass --nats-url "
                "to choose")
    used = _endpoints(resolution.url)
    if not serves or any(_endpoints(s.url) & used for s in serves):
        return None
    where = ", ".join(f"{redact(s.url)} (data dir {s.data_dir})" for s in serves)
    if resolution.source == DEFAULT:
        return (f"note: using {resolution.url} (the default); several local serves run: "
                f"{where}; pass --nats-url or set {URL_ENV} to choose")
    if len(serves) == 1:
        serve = serves[0]
        return (f"note: using {redact(resolution.url)} ({resolution.source}); the local serve "
                f"(data dir {serve.data_dir}) is at {redact(serve.url)}")
    return (f"note: using {redact(resolution.url)} ({resolution.source}); the local serves "
            f"are at {where}")
