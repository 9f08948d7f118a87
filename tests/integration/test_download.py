"""Downloading nats-server: a real HTTP server on loopback serves a release-shaped archive."""

from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from dagnats.errors import NatsServerNotFound
from dagnats.server.binary import find_nats_server, nats_server_version
from dagnats.server.download import (
    BASE_URL_ENV,
    CACHE_ENV,
    RELEASE,
    ProgressBar,
    archive_name,
    cached_path,
    download_nats_server,
    release_target,
    verify_cached,
)
from tests.unit.test_binary import bundled

NAME = archive_name(RELEASE, *release_target())


class Release(http.server.ThreadingHTTPServer):
    """Serves `files` ({url path: bytes}); paths in `truncate` send half the promised body."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.files: dict[str, bytes] = {}
        self.truncate: set[str] = set()
        self.requests: list[str] = []

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(http.server.BaseHTTPRequestHandler):
    server: Release

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        body = self.server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path in self.server.truncate:
            body = body[: len(body) // 2]
            self.close_connection = True
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def archive() -> bytes:
    """A release-shaped tar.gz around a copy of the real nats-server."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:
        tar.add(bundled(), arcname=f"{NAME.removesuffix('.tar.gz')}/nats-server")
    return buffer.getvalue()


@pytest.fixture
def release(archive: bytes) -> Iterator[Release]:
    server = Release()
    server.files[f"/v{RELEASE}/{NAME}"] = archive
    sums = f"{hashlib.sha256(archive).hexdigest()}  {NAME}\n{'0' * 64}  other.zip\n"
    server.files[f"/v{RELEASE}/SHA256SUMS"] = sums.encode()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def env_for(release: Release, tmp_path: Path) -> dict[str, str]:
    return {BASE_URL_ENV: release.base, CACHE_ENV: str(tmp_path / "cache"), "PATH": ""}


def test_a_good_archive_is_verified_installed_and_then_found_offline(
        release: Release, tmp_path: Path) -> None:
    env = env_for(release, tmp_path)
    seen: list[tuple[int, int]] = []
    found = find_nats_server(environ=env, bundled=False, download_missing=True,
                             progress=lambda got, total: seen.append((got, total)))
    assert found == cached_path(env)
    assert nats_server_version(found) == RELEASE
    assert verify_cached(found) == ""
    assert seen[-1][0] == seen[-1][1] == len(release.files[f"/v{RELEASE}/{NAME}"])
    assert sorted(p.name for p in found.parent.iterdir()) == ["nats-server", "nats-server.sha256"]
    release.requests.clear()
    assert find_nats_server(environ=env, bundled=False) == found  # the verified copy
    assert release.requests == []


def test_a_bad_checksum_is_refused_and_nothing_is_left_behind(
        release: Release, tmp_path: Path) -> None:
    release.files[f"/v{RELEASE}/SHA256SUMS"] = f"{'ab' * 32}  {NAME}\n".encode()
    env = env_for(release, tmp_path)
    dest = cached_path(env)
    with pytest.raises(NatsServerNotFound) as info:
        download_nats_server(dest, environ=env)
    assert "does not match its SHA256SUMS line" in info.value.message
    assert "refused" in info.value.message
    assert list(dest.parent.iterdir()) == []


def test_a_truncated_download_is_refused_and_nothing_is_left_behind(
        release: Release, tmp_path: Path) -> None:
    release.truncate.add(f"/v{RELEASE}/{NAME}")
    env = env_for(release, tmp_path)
    dest = cached_path(env)
    with pytest.raises(NatsServerNotFound) as info:
        download_nats_server(dest, environ=env)
    assert "truncated" in info.value.message or "broke off" in info.value.message
    assert list(dest.parent.iterdir()) == []


def test_a_release_without_our_archive_says_so(release: Release, tmp_path: Path) -> None:
    release.files[f"/v{RELEASE}/SHA256SUMS"] = b"0000  nothing\n"
    with pytest.raises(NatsServerNotFound, match=f"has no line for {NAME}"):
        download_nats_server(tmp_path / "nats-server", environ=env_for(release, tmp_path))


def test_no_network_is_one_line_naming_nats_server_flag(tmp_path: Path) -> None:
    with Release() as closed:  # bound and closed at once: nothing listens on its port
        base = closed.base
    env = {BASE_URL_ENV: base, CACHE_ENV: str(tmp_path / "cache"), "PATH": ""}
    with pytest.raises(NatsServerNotFound) as info:
        find_nats_server(environ=env, bundled=False, download_missing=True)
    message = info.value.message
    assert "\n" not in message
    assert "Connection refused" in message
    assert "--nats-server PATH" in message
    assert "PATH: no nats-server" in message and "user cache" in message


def test_progress_bar_without_a_terminal_prints_two_lines() -> None:
    out = io.StringIO()
    bar = ProgressBar("downloading nats-server", out)
    for got in (10, 20, 30):
        bar(got * 1_000_000, 30_000_000)
    assert out.getvalue().splitlines() == ["downloading nats-server ...",
                                           "downloading nats-server: 30.0 MB"]
