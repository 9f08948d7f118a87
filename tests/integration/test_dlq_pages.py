"""Dead letters a page at a time, newest first (`dead_letters.newest`, the console's and the
HTTP API's listing): the same entries as the whole listing, in reverse, with gaps where
entries were replayed or discarded, read from the stream's end."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from dagnats import jetstream, names
from dagnats.connection import connect
from dagnats.store import dead_letters


async def _plant_and_page(url: str) -> None:
    nc = await connect(url)
    try:
        js = nc.jetstream()
        await jetstream.provision(js)
        seqs = []
        for n in range(600):
            entry = dead_letters.DeadLetterEntry(
                run_id=f"{n:032x}", step_id="a", task="echo", attempts=1, error=f"boom {n}",
                timestamp=datetime.now(UTC))
            seqs.append(await dead_letters.publish(js, entry, f"page-test:{n}"))
            if n == 300:
                await dead_letters.publish_poison(js, names.HISTORY_PREFIX, 777, "x.y",
                                                  b"not json", "unreadable")
        for seq in seqs[::7]:  # replayed or discarded: gaps in the stream
            assert await dead_letters.delete(js, seq)
        everything = [entry.seq for entry in await dead_letters.list_all(js)][::-1]

        paged: list[int] = []
        before: Any = None
        totals = set()
        while True:
            page, total, before = await dead_letters.newest(js, 50, before)
            paged += [entry.seq for entry in page]
            totals.add(total)
            if before is None:
                break
            assert len(page) == 50
        assert paged == everything
        assert totals == {len(everything)} == {600 - len(seqs[::7]) + 1}
        last, _, more = await dead_letters.newest(js, 5)
        assert [entry.seq for entry in last] == everything[:5] and more == everything[4]
    finally:
        await jetstream.close(nc)


def test_pages_newest_first_hold_every_entry_once_across_gaps(nats_server: Any) -> None:
    asyncio.run(_plant_and_page(nats_server.url))
