"""jetstream.Publisher: awaited publishes over one reply subscription, answering as
nats-py's js.publish would (sequence, duplicates, JetStream errors, no stream)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import nats.js.errors
import pytest

from dagnats import jetstream
from dagnats.connection import connect


def test_publishes_report_sequence_duplicates_and_errors(nats_server: Any) -> None:
    async def scenario() -> None:
        nc = await connect(nats_server.url)
        js = nc.jetstream()
        stream = f"PUB{uuid.uuid4().hex[:8]}"
        await js.add_stream(name=stream, subjects=[f"{stream}.>"])
        publisher = jetstream.publisher(js)
        assert jetstream.publisher(js) is publisher  # one per connection
        try:
            stored = await asyncio.gather(*(
                publisher.publish(f"{stream}.a", b"x", {"Nats-Msg-Id": f"id-{n}"})
                for n in range(50)))
            assert sorted(s.seq for s in stored) == list(range(1, 51))
            again = await publisher.publish(f"{stream}.a", b"x", {"Nats-Msg-Id": "id-7"})
            assert again.duplicate and again.seq == stored[7].seq

            with pytest.raises(nats.js.errors.APIError) as wrong:
                await publisher.publish(f"{stream}.a", b"y",
                                        {"Nats-Expected-Last-Subject-Sequence": "3"})
            assert wrong.value.err_code in jetstream.WRONG_LAST_SEQUENCE
            with pytest.raises(nats.js.errors.NoStreamResponseError):
                await publisher.publish(f"nostream{uuid.uuid4().hex}.a", b"z")
        finally:
            await js.delete_stream(stream)
            await jetstream.close(nc)
    asyncio.run(scenario())
