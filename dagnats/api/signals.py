"""API operation run.signal: store a signal for the handlers of a run that has not ended.

The latest value of each signal name is kept (KV `run_signals`) until the run's data is
deleted at its end, so a handler that waits after the signal was sent still gets it.
"""

from __future__ import annotations

from typing import Any

from dagnats.api.context import ApiContext, Request
from dagnats.api.runs import load_run, resolve_run_id
from dagnats.errors import RunEnded
from dagnats.store import signals


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
    return {"run_id": run_id, "name": name}
