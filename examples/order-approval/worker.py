"""The worker of the order-approval example (docs/step-types.md).

    bin/dagnats worker run examples/order-approval/worker.py    # beside a running serve, or:
    bin/dagnats serve --worker examples/order-approval/worker.py  # (if none is running yet)
    bin/dagnats workflow register examples/order-approval/workflow.json
    bin/dagnats run start order-approval '{"order_id": "A-1"}' --watch
    # in another terminal:
    bin/dagnats event publish payment.received '{"order_id": "A-1", "amount": 120}'
    bin/dagnats run approve <run id> review --by ana

Only the tasks run here: the wait for the payment, the pause and the approval are run by
the engine itself.
"""

from typing import Any

from dagnats import worker

w = worker.Worker()  # DAGNATS_NATS_URL, else the running local serve, else :4222


@w.task("create-order")
def create_order(ctx: worker.TaskContext, order: dict[str, Any]) -> dict[str, Any]:
    """Record the order (here: echo it back with a status)."""
    return {"order_id": order["order_id"], "status": "awaiting payment"}


@w.task("add-gift")
def add_gift(ctx: worker.TaskContext, payment: dict[str, Any]) -> str:
    """Big orders (paid 100 or more) get a gift; smaller ones skip this step."""
    return f"gift for order {payment['order_id']}"


@w.task("ship-approved-order")
def ship_order(ctx: worker.TaskContext, done: dict[str, Any]) -> str:
    """Ship once approved; `gift` is null when that step was skipped."""
    decision, gift = done["review"], done["gift"]
    extra = f" with {gift}" if gift else ""
    return f"shipped{extra}, approved by {decision['by'] or 'someone'}"


if __name__ == "__main__":
    w.run()
