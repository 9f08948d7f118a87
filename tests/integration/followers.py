"""Test helpers for followers: who listens on a run's live subject, as nats-server counts it
(its monitor's /subsz), so a test can act once a wait or a watch is following a run."""

from __future__ import annotations

import asyncio
import json
import urllib.request

from dagnats import names


def listeners(monitor_port: int, subject: str) -> int:
    """How many subscriptions match `subject` right now."""
    url = f"http://127.0.0.1:{monitor_port}/subsz?subs=1&test={subject}"
    with urllib.request.urlopen(url, timeout=5) as answer:
        return int(json.loads(answer.read()).get("total") or 0)


def live_event_subject(run_id: str) -> str:
    """Where the history stream republishes a run's events (one subject followers hear)."""
    return names.LIVE_PREFIX + names.history_subject(run_id).removeprefix(names.HISTORY_PREFIX)


async def until_followed(monitor_port: int, run_id: str, deadline_s: float = 10.0) -> None:
    """Wait until something follows the run live (a client is waiting on it or watching it)."""
    subject = live_event_subject(run_id)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    while not await asyncio.to_thread(listeners, monitor_port, subject):
        assert loop.time() < deadline, f"nothing followed {subject} within {deadline_s}s"
        await asyncio.sleep(0.01)
