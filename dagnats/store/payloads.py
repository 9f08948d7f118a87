"""Out-of-line payloads: values too large to travel inline, in the `run_payloads` object store.

The claim check (see `dagnats.dag.payload` for the references): a value whose compact JSON
is over `PAYLOAD_INLINE_MAX_BYTES` is stored as object `<run id>.<sha256>` and history,
tasks and snapshots carry `{"digest", "size"}` instead. The name depends only on the run
and the bytes, so a put repeated after a redelivery or a crash finds the object already
there and stores nothing; the run's payloads are the objects named `<run id>.*`.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from typing import Any

from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import NotFoundError, ObjectNotFoundError
from nats.js.object_store import ObjectStore

from dagnats import names
from dagnats.dag.payload import PayloadRef, Refs, encode, materialize, ref_for
from dagnats.limits import PAYLOAD_CHUNK_BYTES, PAYLOAD_INLINE_MAX_BYTES


class PayloadMissing(Exception):
    """An out-of-line value is not in the store (deleted with its run) or is corrupt."""


def store(js: JetStreamContext) -> ObjectStore:
    """The payloads object store (provisioned by `jetstream.provision`), bound without a
    round trip."""
    return ObjectStore(name=names.PAYLOADS_BUCKET, stream=names.payloads_stream(), js=js)


async def put(js: JetStreamContext, run_id: str, data: bytes) -> PayloadRef:
    """Store a value's compact JSON for a run; its reference. Idempotent: when the object
    is there already (a redelivery, a retry), nothing is written again."""
    ref = ref_for(data)
    name = names.payload_object(run_id, ref.digest)
    objects = store(js)
    try:
        info = await objects.get_info(name)
        if info.size == ref.size:
            return ref
    except ObjectNotFoundError:
        pass
    meta = js_api.ObjectMeta(name=name, options=js_api.ObjectMetaOptions(
        max_chunk_size=PAYLOAD_CHUNK_BYTES))
    await objects.put(name, data, meta=meta)
    return ref


async def get(js: JetStreamContext, run_id: str, ref: PayloadRef) -> Any:
    """The value a reference names (PayloadMissing when it is gone or does not match).

    Read with direct gets, chunk by chunk (nats-py's `get` would create a consumer for
    each read: readers of many runs would pile them up against the server's limit).
    """
    name = names.payload_object(run_id, ref.digest)
    try:
        info = await store(js).get_info(name)
        data = await _chunks(js, info.nuid or "", info.chunks or 0)
    except (ObjectNotFoundError, NotFoundError):
        data = None
    if data is None:
        raise PayloadMissing(f"payload {name} of run {run_id} is not stored (was the run "
                             "deleted?)")
    if ref_for(data) != ref:
        raise PayloadMissing(f"payload {name} of run {run_id} does not match its digest")
    return json.loads(data)


async def _chunks(js: JetStreamContext, nuid: str, count: int) -> bytes:
    """The `count` chunks of one stored object version, in order, by direct gets."""
    subject = names.payload_chunks_subject(nuid)
    data = bytearray()
    seq = 0
    for _ in range(count):
        msg = await js.get_msg(names.payloads_stream(), seq=seq + 1, subject=subject,
                               direct=True, next=True)
        data += msg.data or b""
        seq = msg.seq or seq + 1
    return bytes(data)


async def fetch(js: JetStreamContext, run_id: str, value: Any, refs: Refs) -> Any:
    """`value` with every out-of-line part fetched and filled in (`value` itself when it
    has none: no round trip)."""
    if not refs:
        return value
    unique = {ref.digest: ref for ref in refs.values()}
    values = await asyncio.gather(*(get(js, run_id, ref) for ref in unique.values()))
    return materialize(value, refs, dict(zip(unique, values, strict=True)))


async def carry(js: JetStreamContext, run_id: str, value: Any, data: bytes | None = None
                ) -> tuple[Any, Refs]:
    """`value` as history carries it: itself when its JSON (`data`, if already encoded) is
    small, else null with a reference to the copy put out of line. The caller checks the
    limit (`dagnats.dag.payload.too_large`) first."""
    data = encode(value) if data is None else data
    if len(data) <= PAYLOAD_INLINE_MAX_BYTES:
        return value, {}
    return None, {"": await put(js, run_id, data)}


async def run_objects(js: JetStreamContext, run_id: str) -> list[str]:
    """The names of every payload object of a run."""
    prefix = names.payload_prefix(run_id)
    try:
        infos = await store(js).list(ignore_deletes=True)
    except NotFoundError:  # nats-py: an empty store
        return []
    return [info.name for info in infos if info.name.startswith(prefix)]


async def delete_run(js: JetStreamContext, run_id: str) -> int:
    """Delete every payload of a run (its history is going); how many there were."""
    found = await run_objects(js, run_id)
    objects = store(js)
    for name in found:
        try:
            await objects.delete(name)
        except ObjectNotFoundError:
            pass  # deleted meanwhile by someone else
    return len(found)


async def stored(js: JetStreamContext, run_id: str, refs: Refs) -> bool:
    """True when every value `refs` names is stored for the run (one metadata read each)."""
    objects = store(js)
    for ref in {ref.digest: ref for ref in refs.values()}.values():
        try:
            info = await objects.get_info(names.payload_object(run_id, ref.digest))
        except ObjectNotFoundError:
            return False
        if info.size != ref.size:
            return False
    return True


async def copy_run(js: JetStreamContext, from_run: str, to_run: str, refs: Refs) -> None:
    """Store the values `refs` names for `from_run` under `to_run` as well (a rerun takes
    its input from an earlier run, which may be deleted before it)."""
    for ref in {ref.digest: ref for ref in refs.values()}.values():
        await put(js, to_run, encode(await get(js, from_run, ref)))


async def discard(js: JetStreamContext, run_id: str, refs: Refs) -> None:
    """Delete the values `refs` names for a run that was never started with them (a start
    refused, or answered with an earlier run by its idempotency key)."""
    objects = store(js)
    for digest in {ref.digest for ref in refs.values()}:
        try:
            await objects.delete(names.payload_object(run_id, digest))
        except ObjectNotFoundError:
            pass


class ValueCache:
    """Values fetched recently, by digest (the same bytes whatever the run), up to
    `max_bytes` of JSON in all: the least recently used go first."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._bytes = 0

    async def get(self, js: JetStreamContext, run_id: str, ref: PayloadRef) -> Any:
        """The value `ref` names, from memory or else from the store."""
        found = self._items.get(ref.digest)
        if found is not None:
            self._items.move_to_end(ref.digest)
            return found[0]
        value = await get(js, run_id, ref)
        if ref.size <= self.max_bytes and ref.digest not in self._items:
            self._items[ref.digest] = (value, ref.size)
            self._bytes += ref.size
            while self._bytes > self.max_bytes:
                _, (_, size) = self._items.popitem(last=False)
                self._bytes -= size
        return value
