"""Authentication on by default: `serve`'s NATS admits only its logins, which the same OS
user's CLI and client find by themselves; `dagnats url` hands one to other NATS tools;
secrets stay out of logs and banners; files are private; a client rides through a restart
of nats-server."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import urllib.request
from pathlib import Path

import nats
import pytest

from dagnats import names
from dagnats.client import AsyncClient
from dagnats.errors import ServerUnavailable
from dagnats.local_auth import state_dir
from tests.e2e.harness import DAGNATS, ROOT, external_nats, wait_until

EXAMPLE = ROOT / "examples" / "hello-pipeline"


async def _try_connect(url: str, **options: str) -> nats.NATS:
    async def quiet(exc: Exception) -> None:
        pass

    return await nats.connect(url, allow_reconnect=False, connect_timeout=2, error_cb=quiet,
                              **options)


async def _stream_names(url: str) -> list[str]:
    nc = await _try_connect(url)
    try:
        return [info.config.name or "" for info in await nc.jetstream().streams_info()]
    finally:
        await nc.close()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_nats_refuses_a_connection_without_credentials_and_dagnats_url_signs_in(
        start_serve) -> None:
    serve = start_serve([])
    with pytest.raises(Exception, match=r"(?i)authorization violation"):
        asyncio.run(_stream_names(serve.url))

    printed = serve.cli("url", "--data-dir", str(serve.data_dir))
    assert printed.returncode == 0, printed.stderr
    url = printed.stdout.strip()
    assert url.startswith("nats://dagnats:") and url.endswith(f"@127.0.0.1:{serve.port}")
    assert names.HISTORY_STREAM in asyncio.run(_stream_names(url))  # plain nats-py

    # The CLI of the same user needs no flag: it finds the login in the registry.
    listed = serve.cli("workflow", "list")
    assert (listed.returncode, listed.stderr) == (0, ""), listed.stderr


def test_the_worker_login_may_not_call_the_api_nor_change_streams(start_serve) -> None:
    serve = start_serve([])
    serve.violations_expected = True
    worker_url = serve.cli("url", "--worker", "--data-dir", str(serve.data_dir)).stdout.strip()
    assert worker_url.startswith("nats://dagnats-worker:")
    refused: list[str] = []

    async def attempt() -> None:
        async def note(exc: Exception) -> None:
            refused.append(str(exc))

        nc = await nats.connect(worker_url, allow_reconnect=False, error_cb=note)
        try:
            with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
                await nc.request(names.api_subject("run.list"), b"{}", timeout=1)
            with pytest.raises((nats.errors.TimeoutError, nats.errors.Error)):
                await nc.jetstream().delete_stream(names.HISTORY_STREAM)
            await nc.jetstream().stream_info(names.HISTORY_STREAM)  # what a worker needs works
        finally:
            await nc.close()

    asyncio.run(attempt())
    assert any("permissions violation" in why for why in refused), refused
    assert names.HISTORY_STREAM in asyncio.run(_stream_names(
        serve.cli("url", "--data-dir", str(serve.data_dir)).stdout.strip()))


def test_logins_registry_logs_and_state_are_private(start_serve, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    serve = start_serve([EXAMPLE / "worker.py"], data_dir=data_dir)
    assert serve.cli("workflow", "register", str(EXAMPLE / "pipeline.json")).returncode == 0
    done = serve.cli("run", "start", "hello-pipeline", '"World"', "--watch")
    assert done.returncode == 0, done.stdout + done.stderr

    for folder in (data_dir, data_dir / "logs", data_dir / "store", state_dir(),
                   state_dir() / "serves"):
        assert _mode(folder) == 0o700, folder
    files = [data_dir / "auth.json", data_dir / "serve.json", data_dir / "serve.lock",
             *(data_dir / "logs").glob("*.log"), *(state_dir() / "serves").glob("*.json"),
             data_dir / "store" / "nats-server.conf"]
    assert len(files) > 8
    for path in files:
        assert _mode(path) == 0o600, path

    # No secret in any log, state file or banner.
    logins = json.loads((data_dir / "auth.json").read_text())
    secrets = [login["password"] for login in logins.values()]
    serve.stop()
    texts = {str(p): p.read_text(errors="replace") for p in (data_dir / "logs").glob("*")}
    texts["banner"] = "\n".join(serve.output)
    texts["serve.json"] = (data_dir / "serve.json").read_text() if (
        data_dir / "serve.json").exists() else ""
    assert "auth       on" in texts["banner"]
    leaks = [where for where, text in texts.items() if any(s in text for s in secrets)]
    assert not leaks


def test_a_password_in_nats_url_never_reaches_a_log(start_serve, tmp_path: Path) -> None:
    with external_nats(["--user", "ops", "--pass", "Sup3rSecretPw"], tmp_path / "ext") as port:
        url = f"nats://ops:Sup3rSecretPw@127.0.0.1:{port}"
        serve = start_serve([EXAMPLE / "worker.py"], env={"DAGNATS_NATS_URL": url},
                            args=["--nats-url", url])
        assert serve.cli("workflow", "register", str(EXAMPLE / "pipeline.json")).returncode == 0
        assert serve.cli("run", "start", "hello-pipeline", '"x"', "--watch").returncode == 0
        assert "nats://ops:***@127.0.0.1" in "\n".join(serve.output)
        serve.stop()
    logs = {p.name: p.read_text(errors="replace") for p in (tmp_path / "data" / "logs").glob("*")}
    assert "API serving" in logs["api.log"]
    assert [name for name, text in logs.items() if "Sup3rSecretPw" in text] == []
    assert "Sup3rSecretPw" not in "\n".join(serve.output)


def test_no_auth_says_so_and_admits_anyone(start_serve) -> None:
    serve = start_serve([], args=["--no-auth"])
    assert any(line.startswith("  auth       OFF (--no-auth)") for line in serve.output)
    assert names.HISTORY_STREAM in asyncio.run(_stream_names(serve.url))
    assert serve.cli("url", "--data-dir", str(serve.data_dir)).stdout.strip() == serve.url
    assert not (serve.data_dir / "auth.json").exists()


def test_another_local_user_is_refused(start_serve) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run a command as another user (nobody)")
    serve = start_serve([])
    probe = subprocess.run(
        ["python3", "-c", "import sys\nfor p in sys.argv[1:]:\n try: open(p).read(); "
         "print('read', p)\n except OSError: pass", str(serve.data_dir / "auth.json"),
         *map(str, (state_dir() / "serves").glob("*.json"))],
        capture_output=True, text=True, timeout=30, user="nobody", cwd="/")
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout == ""  # nobody could read neither the logins nor the registry
    # ...and without them NATS refuses a connection (the first test).


def test_a_client_rides_through_a_kill_9_of_nats_server(start_serve) -> None:
    """serve restarts nats-server on the same port and store; the same client carries on:
    calls in the outage fail with ServerUnavailable (or wait), calls after it work."""
    serve = start_serve([])

    async def scenario() -> list[str]:
        failures: list[str] = []
        async with await AsyncClient.connect(serve.url, request_timeout_s=2) as client:
            assert await client.list_workflows() == []
            nats_server = serve.child("nats-server")
            nats_server.kill()
            nats_server.wait(10)
            deadline = asyncio.get_running_loop().time() + 60
            while True:
                try:
                    assert await client.list_workflows() == []
                    break
                except ServerUnavailable as exc:
                    failures.append(exc.message)
                    assert asyncio.get_running_loop().time() < deadline, failures[-3:]
                    await asyncio.sleep(0.2)
            assert serve.child("nats-server").pid != nats_server.pid
            await client.register_workflow(EXAMPLE / "pipeline.json")
            assert [w.name for w in await client.list_workflows()] == ["hello-pipeline"]
        return failures

    failures = asyncio.run(scenario())
    assert all("\n" not in failure for failure in failures)
    wait_until(lambda: "nats-server exited" in (serve.data_dir / "logs" / "serve.log"
                                                 ).read_text(), 10, "serve to log the crash")


def test_dagnats_url_without_a_serve_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run([DAGNATS, "url", "--data-dir", str(tmp_path)], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 1
    assert done.stderr == (f"error: no dagnats serve is running on data dir {tmp_path}; start "
                           f"one with `{DAGNATS} serve`, or pass --data-dir\n")  # as run


def test_a_worker_started_by_hand_signs_in_as_the_worker(start_serve) -> None:
    serve = start_serve([])
    assert serve.cli("workflow", "register", str(EXAMPLE / "pipeline.json")).returncode == 0
    worker = subprocess.Popen([DAGNATS, "worker", "run", str(EXAMPLE / "worker.py")],
                              env=serve.env, cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        done = serve.cli("run", "start", "hello-pipeline", '"World"', "--watch")
        assert done.returncode == 0, done.stdout + done.stderr
        argv = serve.child("nats-server").cmdline()
        monitor = int(argv[argv.index("-m") + 1])
        with urllib.request.urlopen(f"http://127.0.0.1:{monitor}/connz?auth=1",
                                    timeout=10) as reply:
            users = {c.get("name"): c.get("authorized_user")
                     for c in json.load(reply)["connections"]}
    finally:
        worker.terminate()
        worker.wait(timeout=20)
    workers = [user for name, user in users.items() if name.startswith("dagnats-worker-")]
    assert workers == ["dagnats-worker"], users
    assert users["dagnats-engine"] == users["dagnats-api"] == "dagnats", users
