"""The event waiters of runs (KV event_waiters): what an ended run leaves there goes here.

The engine registers waiters and matches events against them (dagnats.engine.waits); both
the engine (when a run ends) and retention (when a run is deleted) remove a run's.
"""

from __future__ import annotations

import contextlib

from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from dagnats import names
from dagnats.dag.kinds.wait_for_event import WaitForEventStep
from dagnats.dag.state import RunState


async def clear_run(kv: KeyValue, run: RunState) -> None:
    """Drop every waiter of an ended run (from `kv`, the event_waiters bucket)."""
    for step in run.definition.steps:
        if isinstance(step, WaitForEventStep):
            with contextlib.suppress(KeyNotFoundError):
                await kv.delete(names.waiter_key(step.config.event, run.run_id, step.id))
