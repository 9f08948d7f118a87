"""Checkpoints and signals without a server: their keys, their limits, the handler bridge.

The bridge tests run a real "worker loop" in a thread and a RunData whose storage is a dict,
so the sync and async spellings, the misuse errors and the attempt's end are exercised as
they run in a worker, minus NATS.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from dagnats import jetstream, limits, names, worker
from dagnats._client_sync import LoopThread
from dagnats.dag.tasks import TaskMessage
from dagnats.errors import InvalidInput
from dagnats.store import checkpoints, signals
from dagnats.worker._cancel import CancelSignal
from dagnats.worker._run_data import RunData, signal_wait_seconds

TASK = TaskMessage(run_id="0123456789abcdef0123456789abcdef", workflow="w", step_id="fetch",
                   task="t", attempt=2, max_attempts=3)


# --- keys --------------------------------------------------------------------------------

@pytest.mark.parametrize("run_id", ["0" * 32, "r1", "a-b_C"])
@pytest.mark.parametrize("item", ["approve", "step-1", "x_Y9", "n" * 128])
def test_keys_round_trip(run_id: str, item: str) -> None:
    assert names.parse_signal_key(names.signal_key(run_id, item)) == (run_id, item)
    assert names.parse_checkpoint_key(names.checkpoint_key(run_id, item)) == (run_id, item)


def test_the_run_filters_match_the_keys_of_one_run_only() -> None:
    assert names.signal_filter("r1") == "r1.>"
    assert names.checkpoint_filter("r1") == "r1.>"
    assert names.signal_key("r1", "go").startswith("r1.")
    assert not names.signal_key("r10", "go").startswith("r1.")


@pytest.mark.parametrize(("run_id", "item"), [("r1", "a.b"), ("r1", ""), ("r 1", "x"),
                                              ("", "x"), ("r1", "*"), ("r1", "é")])
def test_keys_refuse_what_is_not_one_token(run_id: str, item: str) -> None:
    with pytest.raises(ValueError, match="one subject token"):
        names.signal_key(run_id, item)
    if item != "a.b":  # a step a planner added: its key spells the dot otherwise
        with pytest.raises(ValueError, match="one subject token"):
            names.checkpoint_key(run_id, item)


@pytest.mark.parametrize("key", ["r1", "r1.", ".x", "r1.a.b", "r1.a b"])
def test_foreign_keys_are_refused(key: str) -> None:
    with pytest.raises(ValueError):
        names.parse_signal_key(key)
    with pytest.raises(ValueError):
        names.parse_checkpoint_key(key)


def test_both_buckets_are_provisioned_with_the_run_data_ttl() -> None:
    configs = {c.bucket: c for c in jetstream.bucket_configs(jetstream.Limits(replicas=3))}
    for bucket in (names.SIGNALS_BUCKET, names.CHECKPOINTS_BUCKET):
        config = configs[bucket]
        assert (config.history, config.direct, config.replicas) == (1, True, 3)
        assert config.ttl == limits.RUN_DATA_MAX_AGE_S == 7 * 24 * 3600


def test_every_limit_is_documented_and_the_handlers_table_names_real_ones() -> None:
    docs = Path(__file__).resolve().parents[2] / "docs"
    table = (docs / "handlers.md").read_text().split("### Limits")[1]
    listed = set(re.findall(r"\| `([A-Z_]+)` \|", table))
    defined = {name for name in vars(limits) if name.isupper()}
    assert listed and listed <= defined
    pages = " ".join(page.read_text() for page in docs.glob("*.md"))
    assert [name for name in sorted(defined) if f"`{name}`" not in pages] == []


# --- checkpoint envelopes ----------------------------------------------------------------

class Progress(BaseModel):
    done: int
    cursor: str


def test_a_checkpoint_round_trips_with_its_attempt() -> None:
    payload = checkpoints.encode(Progress(done=3, cursor="é"), run_id="r", step_id="s",
                                 attempt=2)
    body = json.loads(payload)
    assert body["v"] == 1 and body["attempt"] == 2
    found = checkpoints.decode(payload)
    assert (found.state, found.attempt) == ({"done": 3, "cursor": "é"}, 2)


def test_a_checkpoint_at_the_limit_is_taken_and_one_byte_more_refused() -> None:
    at_limit = "x" * (limits.CHECKPOINT_MAX_BYTES - 2)  # the JSON quotes make up the rest
    assert checkpoints.decode(checkpoints.encode(at_limit, run_id="r", step_id="s",
                                                 attempt=1)).state == at_limit
    with pytest.raises(ValueError) as refused:
        checkpoints.encode(at_limit + "x", run_id="r9", step_id="fetch", attempt=1)
    message = str(refused.value)
    assert "run r9 step fetch" in message
    assert f"{limits.CHECKPOINT_MAX_BYTES + 1} bytes" in message
    assert str(limits.CHECKPOINT_MAX_BYTES) in message and "\n" not in message


def test_a_checkpoint_that_is_not_json_is_refused_naming_the_step() -> None:
    with pytest.raises(ValueError, match="checkpoint of run r step fetch is not JSON"):
        checkpoints.encode(object(), run_id="r", step_id="fetch", attempt=1)


@pytest.mark.parametrize("payload", [b"{", b"[]", b'{"v":2,"state":1}', b'{"v":1}'])
def test_foreign_checkpoint_values_do_not_decode(payload: bytes) -> None:
    with pytest.raises(ValueError, match="not a dagnats checkpoint"):
        checkpoints.decode(payload)


# --- signal envelopes and names -----------------------------------------------------------

def test_a_signal_round_trips() -> None:
    payload = signals.encode("r1", "approve", {"ok": True, "by": "é"})
    body = json.loads(payload)
    assert body["v"] == 1 and body["value"] == {"ok": True, "by": "é"}
    found = signals.decode("approve", payload)
    assert (found.name, found.value) == ("approve", {"ok": True, "by": "é"})


def test_a_signal_at_the_limit_is_taken_and_one_byte_more_refused_in_one_line() -> None:
    at_limit = "x" * (limits.SIGNAL_MAX_BYTES - 2)
    assert signals.decode("big", signals.encode("r1", "big", at_limit)).value == at_limit
    with pytest.raises(InvalidInput) as refused:
        signals.encode("r1", "big", at_limit + "x")
    assert refused.value.message == (
        f"signal big for run r1 is {limits.SIGNAL_MAX_BYTES + 1} bytes of JSON, over the limit"
        f" of {limits.SIGNAL_MAX_BYTES}; send a reference to larger data instead")


@pytest.mark.parametrize("name", ["approve", "a-b_C9", "n" * limits.SIGNAL_NAME_MAX_CHARS])
def test_good_signal_names(name: str) -> None:
    assert signals.check_name(name) == name


@pytest.mark.parametrize("name", ["", "a.b", "a b", "*", ">", "é",
                                  "n" * (limits.SIGNAL_NAME_MAX_CHARS + 1)])
def test_bad_signal_names_are_refused_in_one_line(name: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        signals.check_name(name)
    assert refused.value.message == (
        f"{name!r} is not a signal name: use 1 to {limits.SIGNAL_NAME_MAX_CHARS} letters,"
        " digits, '_' or '-'")


def test_a_wait_timeout_defaults_and_is_bounded() -> None:
    assert signal_wait_seconds("go", None) == limits.SIGNAL_WAIT_DEFAULT_S == 300
    assert signal_wait_seconds("go", timedelta(minutes=2)) == 120
    assert signal_wait_seconds("go", limits.SIGNAL_WAIT_MAX_S) == 24 * 3600
    for bad in (0, -1, limits.SIGNAL_WAIT_MAX_S + 1, timedelta(days=2)):
        with pytest.raises(ValueError, match="SIGNAL_WAIT_MAX_S"):
            signal_wait_seconds("go", bad)
    with pytest.raises(ValueError, match="not a signal name"):
        signal_wait_seconds("a.b", 1)


# --- the bridge between handlers and the worker's loop -------------------------------------

class MemoryRunData(RunData):
    """RunData kept in a dict; `hold` makes loads wait until it is set (or cancelled)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(None, loop)  # type: ignore[arg-type]  # never reaches NATS
        self.saved: dict[tuple[str, str], bytes] = {}
        self.hold: asyncio.Event | None = None
        self.loops: list[asyncio.AbstractEventLoop] = []
        self.loading = threading.Event()

    async def save_checkpoint(self, run_id: str, step_id: str, payload: bytes) -> None:
        self.loops.append(asyncio.get_running_loop())
        self.saved[run_id, step_id] = payload

    async def wait_for_signal(self, task: TaskMessage, name: str, timeout_s: float,
                              cancel: CancelSignal) -> Any:
        self.loops.append(asyncio.get_running_loop())
        return {"name": name, "timeout_s": timeout_s}

    async def load_checkpoint(self, run_id: str, step_id: str
                              ) -> checkpoints.Checkpoint | None:
        self.loops.append(asyncio.get_running_loop())
        self.loading.set()
        if self.hold is not None:
            await self.hold.wait()
        payload = self.saved.get((run_id, step_id))
        return None if payload is None else checkpoints.decode(payload)


@pytest.fixture
def worker_loop() -> Iterator[LoopThread]:
    loop = LoopThread()
    try:
        yield loop
    finally:
        loop.run(_settle())
        loop.stop()


async def _settle() -> None:
    """Let calls cancelled by a test finish their cancellation before the loop stops."""
    others = asyncio.all_tasks() - {asyncio.current_task()}
    if others:
        await asyncio.wait(others, timeout=5)


def context(loop: LoopThread, **kwargs: Any) -> tuple[worker.TaskContext, MemoryRunData]:
    data = MemoryRunData(loop._loop)
    return worker.TaskContext(TASK, run_data=data, **kwargs), data


def test_sync_and_async_spellings_reach_the_same_store_on_the_worker_loop(
        worker_loop: LoopThread) -> None:
    ctx, data = context(worker_loop)
    assert ctx.load_checkpoint() is None
    ctx.checkpoint({"done": 1})
    assert ctx.load_checkpoint() == {"done": 1}

    async def handler() -> Any:
        assert await ctx.aload_checkpoint() == {"done": 1}
        await ctx.acheckpoint([1, 2])
        return await ctx.aload_checkpoint()

    assert asyncio.run(handler()) == [1, 2]
    assert ctx.wait_for_signal_sync("go", timeout=2) == {"name": "go", "timeout_s": 2}

    async def waits() -> Any:
        return await ctx.wait_for_signal("go", timeout=timedelta(seconds=3))

    assert asyncio.run(waits()) == {"name": "go", "timeout_s": 3}
    assert set(data.loops) == {worker_loop._loop}
    assert json.loads(data.saved[TASK.run_id, TASK.step_id])["attempt"] == TASK.attempt


def test_a_sync_spelling_on_an_event_loop_is_refused_naming_the_async_one(
        worker_loop: LoopThread) -> None:
    ctx, data = context(worker_loop)

    async def misused() -> None:
        with pytest.raises(TypeError, match=r"await ctx\.wait_for_signal\(\.\.\.\)"):
            ctx.wait_for_signal_sync("go", timeout=1)
        with pytest.raises(TypeError, match=r"await ctx\.acheckpoint"):
            ctx.checkpoint({"done": 1})
        with pytest.raises(TypeError, match=r"await ctx\.aload_checkpoint"):
            ctx.load_checkpoint()

    asyncio.run(misused())
    assert data.saved == {} and data.loops == []


def test_an_async_spelling_without_an_event_loop_is_refused_naming_the_sync_one(
        worker_loop: LoopThread) -> None:
    ctx, data = context(worker_loop)
    with pytest.raises(TypeError, match=r"call ctx\.wait_for_signal_sync"):
        ctx.wait_for_signal("go", timeout=1)
    with pytest.raises(TypeError, match=r"call ctx\.checkpoint"):
        ctx.acheckpoint({"done": 1})
    with pytest.raises(TypeError, match=r"call ctx\.load_checkpoint"):
        ctx.aload_checkpoint()
    assert data.saved == {} and data.loops == []


def test_an_oversize_checkpoint_is_refused_before_anything_is_stored(
        worker_loop: LoopThread) -> None:
    ctx, data = context(worker_loop)
    with pytest.raises(ValueError, match=f"step {TASK.step_id}"):
        ctx.checkpoint("x" * limits.CHECKPOINT_MAX_BYTES)
    assert data.saved == {}


def test_outside_a_worker_run_data_is_not_available() -> None:
    ctx = worker.TaskContext(TASK)
    for call in (lambda: ctx.checkpoint(1), ctx.load_checkpoint, lambda: ctx.acheckpoint(1),
                 ctx.aload_checkpoint, lambda: ctx.wait_for_signal("go"),
                 lambda: ctx.wait_for_signal_sync("go")):
        with pytest.raises(RuntimeError, match="not available outside a worker"):
            call()


def test_the_end_of_the_attempt_releases_a_blocked_handler_thread(
        worker_loop: LoopThread) -> None:
    ctx, data = context(worker_loop)
    data.hold = worker_loop.run(_event())
    outcome: list[BaseException] = []

    def handler() -> None:
        try:
            ctx.load_checkpoint()
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=handler)
    thread.start()
    assert data.loading.wait(5)  # the load is waiting on the worker loop
    ctx._close()
    thread.join(5)
    assert not thread.is_alive()
    assert isinstance(outcome[0], RuntimeError) and "is over" in str(outcome[0])
    with pytest.raises(RuntimeError, match="is over"):
        ctx.checkpoint(1)  # a late call from a stale thread stores nothing
    assert data.saved == {}


def test_a_cancelled_run_ends_a_blocked_call_with_run_cancelled(worker_loop: LoopThread
                                                                ) -> None:
    signal = worker.CancelSignal()
    ctx, _ = context(worker_loop, cancel=signal)
    signal.set()
    ctx._close()
    with pytest.raises(worker.RunCancelled):
        ctx.load_checkpoint()


async def _event() -> asyncio.Event:
    return asyncio.Event()
