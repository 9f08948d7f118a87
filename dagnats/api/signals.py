"""API operation run.signal: store a signal for the handlers of a run that has not ended.

The latest value of each signal name is kept (KV `run_signals`) until the run's data is
deleted at its end, so a handler that waits after the signal was sent still gets it. The
run's history records it too (`signal.sent`): `run events` shows it, and the run knows it
has data to delete when it ends.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from dagnats import names
from dagnats.api.context import ApiContext, Request
from dagnats.api.runs import load_run, resolve_run_id
from dagnats.dag.events import Event, EventType
from dagnats.errors import RunEnded
from dagnats.store import history, signals


class SignalRequest(Request):
    """run.signal: a run id (or a unique prefix), the signal's name and its JSON value."""

    run_id: str
    name: str
    value: Any = None


async def signal(ctx: ApiContext, req: SignalRequest) -> dict[str, Any]:
    """Store the signal for the run; its full id back. RunEnded for a run that has ended.

    InvalidInput for a bad name or a value over limits.SIGNAL_MAX_BYTES; nothing is stored
    then.
    """
    name = signals.check_name(req.name)
    run_id = await resolve_run_id(ctx, req.run_id)
    payload = signals.encode(run_id, name, req.value)
    run, _ = await load_run(ctx, run_id)
    if run.status.terminal:
        raise RunEnded(f"run {run_id} has ended ({run.status.value}): it takes no more"
                       f" signals; see `dagnats run status {run_id}`")
    await signals.send(ctx.signals, run_id, name, payload)
    await history.append(ctx.js, Event(
        type=EventType.SIGNAL_SENT, run_id=run_id, timestamp=datetime.now(UTC),
        data={"name": name, "value": req.value}),
        names.signal_sent_msg_id(run_id, name, _sent_at_us(payload)))
    return {"run_id": run_id, "name": name}


def _sent_at_us(payload: bytes) -> int:
    """When an encoded signal was sent, in microseconds (its event's message id has it)."""
    return int(datetime.fromisoformat(json.loads(payload)["sent_at"]).timestamp() * 1e6)
