"""The engine never dead-letters a valid event because of a transient or resource failure:
it puts the event back with a growing delay, says why in its log, and handles it once the
failure is gone. Provoked for real: the server refuses every snapshot write (the runs
bucket's stream is given a tiny maximum message size), then accepts them again."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from dagnats import jetstream, names, worker
from dagnats.connection import connect
from dagnats.dag.state import RunStatus
from dagnats.engine.engine import Engine, retry_delay_s
from dagnats.store import dead_letters
from dagnats.store.snapshots import Snapshots
from tests.integration.test_engine import DEADLINE_S, pipeline, start_run, wait_terminal

pytestmark = pytest.mark.timeout(120)

#: More deliveries than the engine used to allow before dead-lettering a valid event (5).
PAST_THE_OLD_LIMIT = 7


class Retries(logging.Handler):
    """The engine's "will retry" log lines, as they come."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "will retry" in message:
            self.lines.append(message)


async def set_max_msg_size(js: Any, size: int) -> None:
    """Make the server refuse (or accept again) snapshots larger than `size` bytes."""
    info = await js.stream_info(names.kv_stream(names.RUNS_BUCKET))
    info.config.max_msg_size = size
    await js.update_stream(info.config)


async def until(probe: Any, what: str) -> Any:
    async def loop() -> Any:
        while True:
            result = probe()
            if result:
                return result
            await asyncio.sleep(0.02)
    try:
        return await asyncio.wait_for(loop(), DEADLINE_S * 2)
    except TimeoutError:
        raise AssertionError(f"timed out: {what}") from None


def echo_worker(url: str) -> worker.Worker:
    w = worker.Worker(url, lease=5)

    @w.task("echo")
    def echo(ctx: worker.TaskContext, value: Any) -> Any:
        return value

    return w


def test_the_backoff_doubles_up_to_its_cap() -> None:
    assert [retry_delay_s(n, 1.0, 60.0) for n in (1, 2, 3, 4, 7, 8, 1000)] == [
        1.0, 2.0, 4.0, 8.0, 60.0, 60.0, 60.0]


def test_a_refused_snapshot_write_is_retried_until_it_works_never_dead_lettered(
        nats_server: Any) -> None:
    retries = Retries()
    logging.getLogger("dagnats.engine").addHandler(retries)

    async def scenario() -> None:
        nc = await connect(nats_server.url)
        js = nc.jetstream()
        await jetstream.provision(js)
        stop = asyncio.Event()
        engine = Engine(js, await Snapshots.open(js), retry_first_s=0.05, retry_max_s=0.2)
        tasks = [asyncio.create_task(engine.run(stop)),
                 asyncio.create_task(echo_worker(nats_server.url).run_async(stop))]
        try:
            await set_max_msg_size(js, 64)  # every snapshot is larger: the server refuses it
            run_id = await start_run(js, pipeline("refused", [
                {"id": "a", "task": "echo"}, {"id": "b", "task": "echo", "depends_on": ["a"]}]),
                {"order": 7})
            await until(lambda: any(f"(delivery {PAST_THE_OLD_LIMIT})" in line and run_id in line
                                    for line in retries.lines),
                        "the started event retried past the old dead-letter limit")
            assert "maximum" in retries.lines[-1] or "size" in retries.lines[-1], retries.lines
            await set_max_msg_size(js, -1)  # the failure is gone
            state, _ = await wait_terminal(js, run_id)
            assert state.status is RunStatus.COMPLETED and state.output == {"order": 7}
            assert await dead_letters.list_all(js) == []
            stored = await until_snapshot(js, run_id)
            assert stored.status is RunStatus.COMPLETED
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), DEADLINE_S)
            await jetstream.close(nc)

    try:
        asyncio.run(scenario())
    finally:
        logging.getLogger("dagnats.engine").removeHandler(retries)


async def until_snapshot(js: Any, run_id: str) -> Any:
    snapshots = await Snapshots.open(js)

    async def loop() -> Any:
        while True:
            stored = await snapshots.get(run_id)
            if stored is not None and stored.run.status.terminal:
                return stored.run
            await asyncio.sleep(0.02)
    return await asyncio.wait_for(loop(), DEADLINE_S)


def test_raw_events_that_are_not_strict_json_are_poison_with_their_cause(
        nats_server: Any) -> None:
    """Any NATS client may publish on event.<type>: NaN or deep nesting is kept as a
    poison dead letter saying why (it used to be retried for ever, or become null)."""
    from tests.integration.test_engine import running

    async def scenario() -> None:
        async with running(nats_server.url, echo_worker(nats_server.url)) as js:
            bad = {b'{"amount": NaN}': "NaN", b"[" * 5000 + b"]" * 5000: "deeper than"}
            seqs = {(await js.publish(names.event_subject("strict.raw"), body)).seq: problem
                    for body, problem in bad.items()}

            async def kept() -> list[Any]:
                return [e for e in await dead_letters.list_all(js)
                        if getattr(e, "source", None) == names.EVENT_PREFIX]
            entries = await until_async(kept, "both bad events dead-lettered", len(seqs))
            for entry in entries:
                assert seqs[entry.source_seq] in entry.reason, entry.reason
                assert entry.reason.startswith("its data is not strict JSON")

    asyncio.run(scenario())


async def until_async(probe: Any, what: str, count: int) -> Any:
    async def loop() -> Any:
        while True:
            found = await probe()
            if len(found) >= count:
                return found
            await asyncio.sleep(0.05)
    try:
        return await asyncio.wait_for(loop(), DEADLINE_S)
    except TimeoutError:
        raise AssertionError(f"timed out: {what}") from None
