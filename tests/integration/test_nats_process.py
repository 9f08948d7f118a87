"""NatsServer against the real binary: JetStream works, ports, clean stop, restarts keep data."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from pathlib import Path

import nats
import pytest

from dagnats.errors import PortInUse, ServeError
from dagnats.server.binary import find_nats_server
from dagnats.server.nats_process import NatsServer, server_environment


def new_server(root: Path, **kwargs: object) -> NatsServer:
    return NatsServer(find_nats_server(), root / "store", root / "nats.log", **kwargs)  # type: ignore[arg-type]


async def publish_one(url: str, stream: str) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.add_stream(name=stream, subjects=[f"{stream.lower()}.>"])
        await js.publish(f"{stream.lower()}.one", b"kept")
    finally:
        await nc.close()


async def stored_messages(url: str, stream: str) -> int:
    nc = await nats.connect(url)
    try:
        return (await nc.jetstream().stream_info(stream)).state.messages
    finally:
        await nc.close()


def test_fixture_server_has_jetstream(nats_server: NatsServer) -> None:
    assert nats_server.url.startswith("nats://127.0.0.1:")
    asyncio.run(publish_one(nats_server.url, "FIXTURE"))
    assert asyncio.run(stored_messages(nats_server.url, "FIXTURE")) == 1


def test_the_server_gets_half_the_cpus_as_go_threads_unless_told_otherwise(
        nats_server: NatsServer) -> None:
    environ = (Path("/proc") / str(nats_server.pid) / "environ").read_bytes().split(b"\0")
    expected = os.environ.get("GOMAXPROCS") or str(max(1, (os.cpu_count() or 1) // 2))
    assert f"GOMAXPROCS={expected}".encode() in environ
    assert server_environment({"PATH": "/bin"}, 8) == {"PATH": "/bin", "GOMAXPROCS": "4"}
    assert server_environment({}, 1)["GOMAXPROCS"] == "1"
    assert server_environment({}, None)["GOMAXPROCS"] == "1"
    assert server_environment({"GOMAXPROCS": "6"}, 2)["GOMAXPROCS"] == "6"


def test_taken_port_is_port_in_use_naming_the_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortInUse) as info:
            asyncio.run(new_server(tmp_path, port=port).start())
    message = info.value.message
    assert f"port {port} on 127.0.0.1 is taken" in message
    assert f"pid {os.getpid()}" in message
    assert message.endswith("choose another with --nats-port")


def test_stop_is_clean_and_quick(tmp_path: Path) -> None:
    async def scenario() -> tuple[int | None, float]:
        server = new_server(tmp_path, port=0)
        await server.start()
        began = time.monotonic()
        code = await server.stop()
        return code, time.monotonic() - began

    code, took_s = asyncio.run(scenario())
    assert code == 0
    assert took_s < 2.0


def test_a_new_server_on_the_same_store_keeps_the_data(tmp_path: Path) -> None:
    async def scenario() -> int:
        async with new_server(tmp_path, port=0) as first:
            await publish_one(first.url, "KEPT")
        async with new_server(tmp_path, port=0) as second:
            return await stored_messages(second.url, "KEPT")

    assert asyncio.run(scenario()) == 1


def test_restart_after_a_crash_keeps_port_and_data(tmp_path: Path) -> None:
    async def scenario(server: NatsServer) -> tuple[int, int, int]:
        await server.start()
        port = server.port
        await publish_one(server.url, "CRASH")
        os.kill(server.pid or 0, signal.SIGKILL)
        code = await server.wait()
        await server.start()  # straight away: the TIME_WAIT sockets must not count as taken
        try:
            return code, port, await stored_messages(server.url, "CRASH")
        finally:
            await server.stop()

    server = new_server(tmp_path, port=0, sync_always=True)
    code, port, messages = asyncio.run(scenario(server))
    assert (code, server.port, messages) == (-signal.SIGKILL, port, 1)
    assert "sync_interval: always" in server.config_path.read_text()
    assert server.returncode == 0  # the restarted one stopped cleanly


def test_server_that_dies_while_starting_reports_its_log(tmp_path: Path) -> None:
    server = new_server(tmp_path, port=0, max_file_store="lots")
    with pytest.raises(ServeError) as info:
        asyncio.run(server.start())
    first_line, _, tail = info.value.message.partition("\n")
    assert first_line.startswith("nats-server exited with code")
    assert str(server.log_path) in first_line
    assert tail  # the end of the server's own log says why


def test_a_picked_port_taken_before_the_server_listens_is_picked_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Port 0: the server picks free ports, which another process (a parallel test) can take
    before nats-server listens on them. It picks again instead of failing."""
    from dagnats.server import nats_process

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    real_free_port = nats_process.free_port
    handed = iter([taken.getsockname()[1]])  # the first pick is taken by the time it binds
    monkeypatch.setattr(nats_process, "free_port",
                        lambda host="127.0.0.1": next(handed, None) or real_free_port(host))
    server = new_server(tmp_path, port=0)
    try:
        asyncio.run(server.start())
        assert server.port != taken.getsockname()[1]
        assert server.running
    finally:
        asyncio.run(server.stop())
        taken.close()
