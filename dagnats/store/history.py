"""Appending events to a run's history and reading them back, in order.

Reads are batched direct gets (`$JS.API.DIRECT.GET.WORKFLOW_HISTORY`, the stream has
allow_direct), never a consumer: the API, the client, the CLI and the engine's catch-up all
read through `read`/`read_raw`, so any number of readers leave nothing on the server.
Following a run as it goes on is `dagnats.store.follow`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import APIError, NotFoundError

from dagnats import jetstream, names
from dagnats.dag.events import Event
from dagnats.dag.tasks import task_of
from dagnats.limits import HISTORY_READ_BATCH, HISTORY_READ_MAX_BYTES, HISTORY_READ_TIMEOUT_S

log = logging.getLogger("dagnats.history")

#: Headers of a direct get's answers (and of republished messages): the message's stream
#: sequence, the previous sequence of the same subject (republish), how many more match.
SEQUENCE_HEADER = "Nats-Sequence"
LAST_SEQUENCE_HEADER = "Nats-Last-Sequence"
NUM_PENDING_HEADER = "Nats-Num-Pending"
SUBJECT_HEADER = "Nats-Subject"
#: Status codes of a batched direct get: end of batch, nothing stored, no stream.
_END_OF_BATCH = "204"
_NOT_FOUND = "404"
_NO_RESPONDERS = "503"


#: A history sequence past any stored one: "to the end" for `read_gap`.
END = 2**63


async def append(js: JetStreamContext, event: Event, msg_id: str, *,
                 expected_last_seq: int | None = None, body: bytes | None = None) -> int:
    """Publish `event` to its run's history with a dedup id; return its stream sequence.
    `body`: the event already encoded (`event.encode()`), to encode it only once.

    A step.queued event of a task step goes to the run's subject of that task, where the
    task's workers pull it: it is the task. With `expected_last_seq`, it is stored only if the
    run's last message (of any of its subjects) is still that one (APIError with a code in
    WRONG_LAST_SEQUENCE otherwise).
    """
    headers = {"Nats-Msg-Id": msg_id}
    if expected_last_seq is not None:
        headers.update(guard_headers(event.run_id, expected_last_seq))
    stored = await jetstream.publisher(js).publish(
        subject_of(event), event.encode() if body is None else body, headers)
    return stored.seq


def subject_of(event: Event) -> str:
    """The history subject an event is stored on."""
    task = task_of(event)
    if task is None:
        return names.history_subject(event.run_id)
    return names.history_task_subject(event.run_id, task)


def guard_headers(run_id: str, expected_last_seq: int) -> dict[str, str]:
    """Headers that store a publish only if the run's last stored message (on any of its
    subjects) has sequence `expected_last_seq` (0: the run has none)."""
    return {"Nats-Expected-Last-Subject-Sequence": str(expected_last_seq),
            "Nats-Expected-Last-Subject-Sequence-Subject": names.history_run_filter(run_id)}


async def read(js: JetStreamContext, run_id: str, before_seq: int | None = None,
               after_seq: int = 0) -> list[Event]:
    """Every decodable event of a run, in order, with after_seq < seq < before_seq.

    Undecodable messages are logged and skipped. An unknown run gives an empty list. Batched
    direct gets, no consumer: any number of readers at once cost the server nothing lasting.
    """
    return [event async for event in events_from(js, run_id, after_seq, before_seq)]


async def events_from(js: JetStreamContext, run_id: str, after_seq: int = 0,
                      before_seq: int | None = None) -> AsyncIterator[Event]:
    """`read`, one event at a time, read a batch at a time: a reader that stops early (a
    page of `run events`) reads no more than it needs."""
    async for seq, data in _raw_from(js, run_id, after_seq, before_seq):
        event = decode(run_id, seq, data)
        if event is not None:
            yield event


async def read_raw(js: JetStreamContext, run_id: str, after_seq: int = 0,
                   before_seq: int | None = None) -> list[tuple[int, bytes]]:
    """(sequence, body) of each stored message of a run with after_seq < seq < before_seq.

    Raises nats.errors.TimeoutError when the server does not answer within
    HISTORY_READ_TIMEOUT_S, NoRespondersError when the stream is missing.
    """
    return [found async for found in _raw_from(js, run_id, after_seq, before_seq)]


async def _raw_from(js: JetStreamContext, run_id: str, after_seq: int,
                    before_seq: int | None) -> AsyncIterator[tuple[int, bytes]]:
    async for batch in direct_pages(js, names.HISTORY_STREAM, names.history_run_filter(run_id),
                                    after_seq + 1):
        for seq, data in batch:
            if before_seq is not None and seq >= before_seq:
                return
            yield seq, data


def decode(run_id: str, seq: int, data: bytes) -> Event | None:
    """A stored history message as an event; None (logged) when it is not one."""
    try:
        return Event.decode(data, seq=seq)
    except ValueError as exc:
        log.warning("run %s: skipping undecodable event at seq %s: %s", run_id, seq, exc)
        return None


async def direct_all(js: JetStreamContext, stream: str, subject: str
                     ) -> list[tuple[int, bytes]]:
    """(sequence, body) of every message of `stream` on `subject` (a filter may hold
    wildcards): batched direct gets, page after page."""
    return [found async for batch in direct_pages(js, stream, subject) for found in batch]


async def direct_pages(js: JetStreamContext, stream: str, subject: str, start_seq: int = 1
                       ) -> AsyncIterator[list[tuple[int, bytes]]]:
    """The messages of `stream` on `subject` from `start_seq`, one batched direct get (a
    non-empty list of (sequence, body)) at a time, until none is left."""
    start = start_seq
    while True:
        batch, more = await direct_batch(js, stream, subject, start)
        if batch:
            yield batch
        if not more or not batch:
            return
        start = batch[-1][0] + 1


async def direct_batch(js: JetStreamContext, stream: str, subject: str, start_seq: int
                       ) -> tuple[list[tuple[int, bytes]], bool]:
    """One batched direct get of `stream`'s messages on `subject` (a filter may hold
    wildcards) from `start_seq`: (sequence and body of what came, whether more match)."""
    found, more = await direct_batch_subjects(js, stream, subject, start_seq)
    return [(seq, data) for seq, _, data in found], more


async def direct_window(js: JetStreamContext, stream: str, subject: str, low: int, high: int
                        ) -> list[tuple[int, str, bytes]]:
    """(sequence, subject, body) of `stream`'s messages on `subject` with low <= seq < high,
    in order: batched direct gets from `low`, stopping at `high`."""
    found: list[tuple[int, str, bytes]] = []
    start = low
    while start < high:
        batch, more = await direct_batch_subjects(js, stream, subject, start)
        found += [item for item in batch if item[0] < high]
        if not more or not batch or batch[-1][0] >= high - 1:
            return found
        start = batch[-1][0] + 1
    return found


async def direct_batch_subjects(js: JetStreamContext, stream: str, subject: str,
                                start_seq: int) -> tuple[list[tuple[int, str, bytes]], bool]:
    """`direct_batch` with each message's subject: (sequence, subject, body).

    The server answers with one message per stored message (Nats-Sequence header), then an
    end-of-batch status 204 whose Nats-Num-Pending says how many more match; a 404 when
    nothing is stored at or after `start_seq`. No consumer: nothing lasting on the server.
    """
    nc = js._nc  # nats-py offers no public accessor (see jetstream.publisher)
    answers: asyncio.Queue[Msg] = asyncio.Queue()

    async def collect(msg: Msg) -> None:
        answers.put_nowait(msg)

    sub = await nc.subscribe(nc.new_inbox(), cb=collect)
    request = {"seq": start_seq, "next_by_subj": subject,
               "batch": HISTORY_READ_BATCH, "max_bytes": HISTORY_READ_MAX_BYTES}
    found: list[tuple[int, str, bytes]] = []
    try:
        await nc.publish(names.direct_get_subject(stream),
                         json.dumps(request).encode(), reply=sub.subject)
        while True:
            try:
                msg = await asyncio.wait_for(answers.get(), HISTORY_READ_TIMEOUT_S)
            except TimeoutError:
                raise nats.errors.TimeoutError from None
            headers = msg.headers or {}
            status = headers.get(js_api.Header.STATUS)
            if status is None:
                found.append((int(headers[SEQUENCE_HEADER]), headers.get(SUBJECT_HEADER, ""),
                              msg.data))
            elif status == _END_OF_BATCH:
                return found, int(headers.get(NUM_PENDING_HEADER) or 0) > 0
            elif status == _NOT_FOUND:
                return found, False
            elif status == _NO_RESPONDERS:
                raise nats.errors.NoRespondersError
            else:
                raise APIError(code=int(status),
                               description=headers.get(js_api.Header.DESCRIPTION) or "")
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


async def exists(js: JetStreamContext, run_id: str) -> bool:
    """True when the run has at least one event in history."""
    try:
        await js.get_msg(names.HISTORY_STREAM, subject=names.history_run_filter(run_id),
                         seq=1, next=True, direct=True)
    except NotFoundError:
        return False
    return True


async def has_after(js: JetStreamContext, run_id: str, seq: int) -> bool:
    """True when the run has an event stored after sequence `seq` (one direct get)."""
    try:
        await js.get_msg(names.HISTORY_STREAM, seq=seq + 1,
                         subject=names.history_run_filter(run_id), next=True, direct=True)
    except NotFoundError:
        return False
    return True


async def read_gap(js: JetStreamContext, run_id: str, after_seq: int, before_seq: int
                   ) -> list[Event]:
    """A run's events with after_seq < seq < before_seq (the engine's catch-up); one plain
    direct get when there are none, as is usual (on the engine's path for each run's end)."""
    try:
        first = await js.get_msg(names.HISTORY_STREAM, seq=after_seq + 1,
                                 subject=names.history_run_filter(run_id), next=True, direct=True)
    except NotFoundError:  # nothing after after_seq; other errors leave the event unacked
        return []
    if first.seq is None or first.seq >= before_seq:
        return []
    return await read(js, run_id, before_seq=before_seq, after_seq=after_seq)
