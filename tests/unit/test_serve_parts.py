"""The pure parts of serve: child commands, names, the banner and the generated config."""

from __future__ import annotations

import asyncio
import sys
import zipfile
from pathlib import Path

import pytest

from dagnats.errors import InvalidInput
from dagnats.server.nats_process import render_config
from dagnats.server.serve import (
    ServeOptions,
    child_specs,
    ready_banner,
    serve,
    worker_names,
)
from dagnats.server.supervisor import self_command


def test_self_command_runs_the_module_outside_a_zipapp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", [__file__])
    assert self_command("worker", "run", "w.py") == [
        sys.executable, "-m", "dagnats", "worker", "run", "w.py",
    ]


def test_self_command_reruns_the_zipapp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = tmp_path / "dagnats"
    with zipfile.ZipFile(app, "w") as z:
        z.writestr("__main__.py", "")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["dagnats"])
    assert self_command("_component", "api") == [sys.executable, str(app), "_component", "api"]


def test_worker_names_are_unique() -> None:
    paths = [Path("a/tasks.py"), Path("b/tasks.py"), Path("mail.py")]
    assert worker_names(paths) == ["worker-tasks", "worker-tasks-2", "worker-mail"]


def test_child_specs_tell_every_child_the_nats_url(tmp_path: Path) -> None:
    specs = child_specs([tmp_path / "mail.py"], "nats://127.0.0.1:4333", tmp_path)
    assert [s.name for s in specs] == ["api", "engine", "worker-mail"]
    assert {s.env["DAGNATS_NATS_URL"] for s in specs if s.env} == {"nats://127.0.0.1:4333"}
    assert specs[0].argv[-2:] == ["_component", "api"]
    assert specs[2].argv[-3:] == ["worker", "run", str(tmp_path / "mail.py")]
    assert specs[2].log_path == tmp_path / "worker-mail.log"


def test_banner_says_where_everything_is(tmp_path: Path) -> None:
    specs = child_specs([], "nats://127.0.0.1:4222", tmp_path / "logs")
    line = "nats://127.0.0.1:4222 (nats-server v2.15.1, /bin/nats-server)"
    banner = ready_banner(line, tmp_path, specs, failed=[], embedded=True)
    assert banner.splitlines() == [
        "dagnats serve: ready",
        "  NATS       nats://127.0.0.1:4222 (nats-server v2.15.1, /bin/nats-server)",
        f"  data dir   {tmp_path}",
        f"  logs       {tmp_path}/logs/{{serve,nats,api,engine}}.log",
        "Press Ctrl-C to stop.",
    ]
    failed = ready_banner(line, tmp_path, specs, failed=["engine"], embedded=True)
    assert failed.splitlines()[0].startswith("dagnats serve: running, but engine did not")
    external = ready_banner("nats://h:4222 (external)", tmp_path, specs, [], embedded=False)
    assert f"{tmp_path}/logs/{{serve,api,engine}}.log" in external


def test_config_has_limits_and_syncs_only_when_asked() -> None:
    periodic = render_config("256MB", "10GB", sync_always=False)
    assert "max_memory_store: 256MB" in periodic
    assert "max_file_store: 10GB" in periodic
    assert "sync_interval" not in periodic
    assert "store_dir" not in periodic  # -sd gives it; both at once make the server refuse
    assert "sync_interval: always" in render_config("256MB", "10GB", sync_always=True)


def test_missing_worker_file_is_refused_before_anything_starts(tmp_path: Path) -> None:
    options = ServeOptions(data_dir=tmp_path / "data", workers=[tmp_path / "nope.py"])
    with pytest.raises(InvalidInput, match=r"nope\.py does not exist"):
        asyncio.run(serve(options))
    assert not (tmp_path / "data").exists()
