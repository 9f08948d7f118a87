"""dagnats.local_auth and the secrets around it: logins kept private, found by URL only for a
running serve, and never printed (dagnats.connection.redact)."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from dagnats import local_auth
from dagnats.connection import redact
from dagnats.server.auth import authorization_config, worker_permissions
from dagnats.server.lock import DataDirLock


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("url", "shown"), [
    ("nats://u:secret@127.0.0.1:4222", "nats://u:***@127.0.0.1:4222"),
    ("nats://s3cr3t-token@host:4222", "nats://***@host:4222"),
    ("nats://a:x@h1:4222,nats://b:y@h2:4222", "nats://a:***@h1:4222,nats://b:***@h2:4222"),
    ("tls://u:p%40ss@h", "tls://u:***@h"),
    ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
    ("on nats://dagnats:pw@127.0.0.1:1 now", "on nats://dagnats:***@127.0.0.1:1 now"),
])
def test_redact_hides_passwords_and_tokens(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_logins_are_generated_once_and_private(tmp_path: Path) -> None:
    data_dir = local_auth.private_dir(tmp_path / "data")
    first = local_auth.ensure_logins(data_dir)
    assert local_auth.ensure_logins(data_dir) == first == local_auth.load_logins(data_dir)
    assert first["admin"].user == "dagnats" and first["worker"].user == "dagnats-worker"
    assert first["admin"].password != first["worker"].password
    assert len(first["admin"].password) >= 40
    assert _mode(data_dir) == 0o700 and _mode(data_dir / "auth.json") == 0o600
    assert [p.name for p in data_dir.iterdir()] == ["auth.json"]  # no temporary file left


def test_url_with_login_round_trips(tmp_path: Path) -> None:
    login = local_auth.Login("dagnats", "a/b:c@d")
    url = local_auth.url_with_login("nats://old:pw@127.0.0.1:4222", login)
    parts = urlsplit(url)
    assert (unquote(parts.username or ""), unquote(parts.password or "")) == login
    assert (parts.hostname, parts.port) == ("127.0.0.1", 4222)


def test_lookup_finds_a_running_serve_by_url_only(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(local_auth.STATE_DIR_ENV, str(tmp_path / "state"))
    running, stale = tmp_path / "running", tmp_path / "stale"
    for data_dir in (running, stale):
        local_auth.private_dir(data_dir)
        local_auth.ensure_logins(data_dir)
    local_auth.register(stale, "nats://127.0.0.1:4222")  # its serve died: no lock held
    assert local_auth.lookup("nats://127.0.0.1:4222") is None
    with DataDirLock(running):
        local_auth.register(running, "nats://127.0.0.1:4222")
        logins = local_auth.load_logins(running)
        assert logins is not None
        for url in ("nats://127.0.0.1:4222", "nats://localhost:4222", "127.0.0.1",
                    "localhost:4222"):
            assert local_auth.lookup(url) == logins["admin"], url
        assert local_auth.lookup("nats://127.0.0.1:4222", "worker") == logins["worker"]
        assert local_auth.lookup("nats://127.0.0.1:4223") is None
        assert local_auth.lookup("nats://10.0.0.1:4222") is None
        assert local_auth.lookup("nats://127.0.0.1:4222,nats://127.0.0.1:4223") is None
        serves = tmp_path / "state" / "serves"
        assert _mode(serves) == 0o700 and _mode(serves.parent) == 0o700
        assert {_mode(p) for p in serves.glob("*.json")} == {0o600}
        local_auth.unregister(running)
        assert local_auth.lookup("nats://127.0.0.1:4222") is None


def test_a_broken_registry_entry_is_skipped(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(local_auth.STATE_DIR_ENV, str(tmp_path))
    local_auth.private_dir(tmp_path / "serves")
    (tmp_path / "serves" / "x.json").write_text("{not json")
    (tmp_path / "serves" / "y.json").write_text(json.dumps({"url": 1}))
    assert local_auth.lookup("nats://127.0.0.1:4222") is None


def test_the_server_config_admits_both_logins_and_limits_the_worker() -> None:
    logins = {"admin": local_auth.Login("dagnats", "pa"),
              "worker": local_auth.Login("dagnats-worker", "pw")}
    config = authorization_config(logins)
    assert config.startswith("authorization {") and '"password": "pa"' in config
    allowed = worker_permissions()["publish"]["allow"]
    assert "history.*.*.event" in allowed and "$JS.ACK.WORKFLOW_HISTORY.>" in allowed
    assert "history.>" not in allowed  # a worker reports outcomes, it never dispatches
    assert not any(s.startswith(("dagnats.api", "task.", "timer.", "event.")) for s in allowed)
    assert not any(".STREAM.CREATE" in s or ".STREAM.DELETE" in s for s in allowed)
    # It creates only consumers filtered on tasks, and deletes none (the engine's is safe).
    creates = [s for s in allowed if ("CONSUMER.CREATE." in s or "DURABLE.CREATE." in s)
               and "WORKFLOW_HISTORY" in s]
    assert creates == ["$JS.API.CONSUMER.CREATE.WORKFLOW_HISTORY.*.history.*.*.task.*"]
    assert not any("CONSUMER.DELETE.WORKFLOW_HISTORY" in s for s in allowed)
    assert worker_permissions()["subscribe"]["allow"] == ["_INBOX.>"]
