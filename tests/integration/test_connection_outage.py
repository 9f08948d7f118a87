"""A long-lived connection whose NATS goes away says so once (and again only every
REPEAT_LOG_S), not at every reconnect attempt, and says when it is back."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from dagnats import jetstream
from dagnats.connection import RepeatedLines, connect
from dagnats.server.binary import find_nats_server
from dagnats.server.nats_process import NatsServer


def test_a_line_is_worth_writing_once_per_period_until_reset() -> None:
    lines = RepeatedLines(every_s=3600)
    assert lines.worth("connection refused") and lines.worth("timeout")
    assert not lines.worth("connection refused")
    assert lines.said_any()
    lines.reset()
    assert not lines.said_any() and lines.worth("connection refused")
    assert RepeatedLines(every_s=0).worth("x")


async def until(condition: object, what: str, deadline_s: float = 20.0) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def test_an_outage_is_logged_once_and_the_reconnection_too(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        server = NatsServer(find_nats_server(), tmp_path / "store", tmp_path / "nats.log",
                            port=0)
        await server.start()
        nc = await connect(server.url, long_lived=True)
        try:
            caplog.set_level(logging.DEBUG, logger="dagnats.connection")
            await server.stop()

            def attempts() -> list[logging.LogRecord]:
                return [r for r in caplog.records if r.name == "dagnats.connection"
                        and r.getMessage().startswith("nats: ")]

            await until(lambda: len(attempts()) >= 6, "several failed reconnects")
            warned = [r for r in attempts() if r.levelno >= logging.WARNING]
            texts = {r.getMessage() for r in warned}
            assert len(warned) == len(texts), [r.getMessage() for r in warned]
            assert len(warned) < len(attempts())
            await server.start()  # same port, same store
            await until(lambda: any(r.getMessage() == "nats: reconnected"
                                    for r in caplog.records), "the reconnected line")
            assert nc.is_connected
        finally:
            await jetstream.close(nc)
            await server.stop()

    asyncio.run(scenario())
