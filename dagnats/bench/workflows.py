"""The benchmark's workflows, their expected outputs, and a tracker of how runs ended.

    bench-chain    greet -> uppercase -> reverse (the tutorial's pipeline)
    bench-fanout   fan_split -> fan_work x width -> fan_join
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from dagnats import names

CHAIN = "bench-chain"
CHAIN_STEPS = 3
FANOUT = "bench-fanout"
TERMINAL_MARKERS = (b'"type":"workflow.completed"', b'"type":"workflow.failed"',
                    b'"type":"workflow.cancelled"')


def chain_definition() -> dict[str, Any]:
    """The tutorial's hello-pipeline under the bench's name."""
    retry = {"max_attempts": 3, "strategy": "exponential", "initial_delay": "1s",
             "max_delay": "30s", "multiplier": 2.0}
    return {"name": CHAIN, "version": "1", "steps": [
        {"id": "greet", "task": "greet", "timeout": "30s", "retry": retry},
        {"id": "uppercase", "task": "uppercase", "depends_on": ["greet"]},
        {"id": "reverse", "task": "reverse", "depends_on": ["uppercase"]},
    ]}


def chain_output(name: str) -> str:
    """What a chain run started with `name` must end with."""
    return f"Hello, {name or 'World'}!".upper()[::-1]


def fanout_definition(width: int) -> dict[str, Any]:
    """One step, then `width` parallel steps, then a join (width + 2 steps)."""
    workers = [f"w{n:04d}" for n in range(width)]
    steps: list[dict[str, Any]] = [{"id": "split", "task": "fan_split"}]
    steps += [{"id": w, "task": "fan_work", "depends_on": ["split"]} for w in workers]
    steps.append({"id": "join", "task": "fan_join", "depends_on": workers})
    return {"name": FANOUT, "version": str(width), "steps": steps}


def fanout_output(value: int, width: int) -> int:
    """What a fan-out run started with `value` must end with."""
    return width * (value + 1)


@dataclass(frozen=True)
class Ending:
    """How and when (perf_counter seconds) a run's terminal event reached the bench."""

    status: str
    output: Any
    seen_s: float


class Tracker:
    """Watches every history event (a core subscription) and notes how each run ended.

    Cheaper than one `client.wait` per run for bursts: one subscription, and only terminal
    events are decoded.
    """

    def __init__(self, nc: NATS) -> None:
        self._nc = nc
        self.ended: dict[str, Ending] = {}
        self._waiters: list[tuple[set[str], asyncio.Future[None]]] = []
        self._sub: Any = None

    async def start(self) -> None:
        """Subscribe to every run's history."""
        self._sub = await self._nc.subscribe(names.history_filter(), cb=self._on_msg,
                                             pending_msgs_limit=-1, pending_bytes_limit=-1)
        await self._nc.flush()

    async def stop(self) -> None:
        """Unsubscribe."""
        if self._sub is not None:
            await self._sub.unsubscribe()

    async def _on_msg(self, msg: Msg) -> None:
        data = msg.data
        if not any(marker in data for marker in TERMINAL_MARKERS):
            return
        seen = time.perf_counter()
        body = json.loads(data)
        run_id = body["run_id"]
        if run_id in self.ended:
            return
        status = body["type"].removeprefix("workflow.")
        self.ended[run_id] = Ending(status, body.get("data", {}).get("output"), seen)
        for pending, done in self._waiters:
            pending.discard(run_id)
            if not pending and not done.done():
                done.set_result(None)

    async def wait(self, run_ids: list[str], timeout_s: float) -> None:
        """Return once every run has ended; TimeoutError after `timeout_s`."""
        pending = {run_id for run_id in run_ids if run_id not in self.ended}
        if not pending:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (pending, done)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(done, timeout_s)
        finally:
            self._waiters.remove(entry)
