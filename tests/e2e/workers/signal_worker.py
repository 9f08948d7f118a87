"""A worker whose steps wait for signals sent with `dagnats run signal`.

`approve` (async) waits for signal `approve`, `ship` (sync) for signal `shipped`; each
returns what it got, so the run's outputs show the values the CLI sent.
"""

from typing import Any

from dagnats import worker

w = worker.Worker()


@w.task("await_approval")
async def await_approval(ctx: worker.TaskContext, order: str) -> dict[str, Any]:
    """Wait for the approval of `order` and return it."""
    return {"order": order, "decision": await ctx.wait_for_signal("approve", timeout=60)}


@w.task("await_shipping")
def await_shipping(ctx: worker.TaskContext, approved: dict[str, Any]) -> dict[str, Any]:
    """Wait (in the worker's thread pool) for the shipment's tracking id."""
    return {"order": approved["order"], "tracking": ctx.wait_for_signal_sync("shipped", 60)}


if __name__ == "__main__":
    w.run()
