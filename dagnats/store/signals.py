"""Signals in KV `run_signals`: the latest value sent to a run under each name.

A signal is a JSON value sent to a running run from outside (`dagnats run signal`,
`client.signal`) for a handler that waits for it (`ctx.wait_for_signal`). It is kept, not
consumed, until the run's data is deleted when the run ends: a wait that begins after the
signal was sent returns it at once, and so does every later wait for that name (a retried
handler gets it again). The value is a versioned envelope any NATS tool can read:
{"v": 1, "sent_at": ..., "value": ...}.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from pydantic_core import to_jsonable_python

from dagnats import names
from dagnats.errors import InvalidInput
from dagnats.limits import SIGNAL_MAX_BYTES, SIGNAL_NAME_MAX_CHARS
from dagnats.store.run_data import ENVELOPE_VERSION, open_envelope

log = logging.getLogger("dagnats.signals")

#: How often a wait makes sure its watch still stands: nats-py's KV watches do not survive
#: a reconnect, so after one (or when no watch can be made) the key is read and watched anew.
RECHECK_S = 2.0
#: A watch's consumer is removed by the server this long after its wait ended (nats-py's
#: default is 5 minutes of consumers left behind by every wait).
WATCH_INACTIVE_S = 5.0
_REMOVED = ("DEL", "PURGE")


@dataclass(frozen=True)
class Signal:
    """A signal as stored: its name, JSON value and when it was sent."""

    name: str
    value: Any
    sent_at: datetime


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a signal, in one line; None when it can."""
    if 0 < len(name) <= SIGNAL_NAME_MAX_CHARS and names.is_token(name):
        return None
    return (f"{name!r} is not a signal name: use 1 to {SIGNAL_NAME_MAX_CHARS} letters,"
            " digits, '_' or '-'")


def check_name(name: str) -> str:
    """`name` when it can name a signal; InvalidInput (one line) otherwise."""
    problem = name_problem(name)
    if problem is not None:
        raise InvalidInput(problem)
    return name


def encode(run_id: str, name: str, value: Any, sent_at: datetime | None = None) -> bytes:
    """The stored form of a signal; InvalidInput when `value` is not JSON or is too large.

    The limit (limits.SIGNAL_MAX_BYTES) counts the value as compact UTF-8 JSON.
    """
    try:
        body = json.dumps(to_jsonable_python(value), separators=(",", ":"), ensure_ascii=False)
    except Exception as exc:
        raise InvalidInput(f"the value of signal {name} is not JSON-serialisable: {exc}"
                           ) from None
    size = len(body.encode())
    if size > SIGNAL_MAX_BYTES:
        raise InvalidInput(
            f"signal {name} for run {run_id} is {size} bytes of JSON, over the limit of "
            f"{SIGNAL_MAX_BYTES}; send a reference to larger data instead")
    moment = (sent_at or datetime.now(UTC)).isoformat()
    return (f'{{"v":{ENVELOPE_VERSION},"sent_at":{json.dumps(moment)},'
            f'"value":{body}}}').encode()


def decode(name: str, payload: bytes) -> Signal:
    """A stored signal; ValueError when it is not a dagnats signal envelope (v1)."""
    return open_envelope(payload, "signal", lambda body: Signal(
        name=name, value=body.get("value"), sent_at=datetime.fromisoformat(body["sent_at"])))


async def send(kv: KeyValue, run_id: str, name: str, payload: bytes) -> None:
    """Store an encoded signal (see `encode`) as the latest of its name for the run."""
    await kv.put(names.signal_key(run_id, name), payload)


async def latest(kv: KeyValue, run_id: str, name: str) -> Signal | None:
    """The latest signal `name` sent to the run, or None."""
    try:
        entry = await kv.get(names.signal_key(run_id, name))
    except KeyNotFoundError:
        return None
    return _readable(run_id, name, entry.value)


async def wait_for(kv: KeyValue, run_id: str, name: str, timeout_s: float, *,
                   recheck_s: float = RECHECK_S) -> Signal:
    """The signal `name` of the run: at once if it was sent already, else once it is.

    Reads the key, then watches it (one KV watch: an ephemeral consumer on the server,
    removed WATCH_INACTIVE_S after the wait ends). A watch lost to a reconnect, or one that
    cannot be made, is replaced within `recheck_s`, reading the key again first. Raises
    TimeoutError after `timeout_s` without it.
    """
    try:
        async with asyncio.timeout(timeout_s) as scope:
            while True:
                found = await _latest_if_reachable(kv, run_id, name)
                if found is None:
                    found = await _watch(kv, run_id, name, recheck_s)
                if found is not None:
                    return found
    except TimeoutError:
        if not scope.expired():
            raise
        raise TimeoutError(f"no signal {name} reached run {run_id} within {timeout_s:g}s"
                           ) from None


async def _latest_if_reachable(kv: KeyValue, run_id: str, name: str) -> Signal | None:
    try:
        return await latest(kv, run_id, name)
    except Exception as exc:  # disconnected: the watch (or the next recheck) will tell
        log.debug("cannot read signal %s of run %s yet: %s", name, run_id, exc)
        return None


async def _watch(kv: KeyValue, run_id: str, name: str, recheck_s: float) -> Signal | None:
    """Follow the key until a value comes (returned) or the watch is lost (None)."""
    stats = kv._js._nc.stats  # nats-py offers no public accessor
    reconnects = stats["reconnects"]
    try:
        watcher = await kv.watch(names.signal_key(run_id, name),
                                 inactive_threshold=WATCH_INACTIVE_S)
    except Exception as exc:  # disconnected: poll instead, a recheck apart
        log.debug("cannot watch signal %s of run %s yet: %s", name, run_id, exc)
        await asyncio.sleep(recheck_s)
        return None
    try:
        while stats["reconnects"] == reconnects:
            try:
                entry = await watcher.updates(timeout=recheck_s)
            except TimeoutError:  # nats.errors.TimeoutError is one too
                continue
            if entry is None:  # the end of the initial values (there was none)
                continue
            if not isinstance(entry, KeyValue.Entry):  # the watcher was stopped
                return None
            if entry.operation not in _REMOVED and entry.value:
                found = _readable(run_id, name, entry.value)
                if found is not None:
                    return found
        return None
    finally:
        with contextlib.suppress(Exception):
            await watcher.stop()


def _readable(run_id: str, name: str, payload: bytes | None) -> Signal | None:
    """The signal in `payload`; None, logged, when it is empty or not a dagnats signal."""
    if not payload:
        return None
    try:
        return decode(name, payload)
    except ValueError as exc:
        log.warning("ignoring signal %s of run %s: %s", name, run_id, exc)
        return None
