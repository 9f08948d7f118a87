"""The order and shipping workflows: an order runs its shipping as a child run.

    bin/dagnats serve --worker examples/order-shipping/worker.py
    bin/dagnats workflow register examples/order-shipping/shipping.json
    bin/dagnats workflow register examples/order-shipping/order.json
    bin/dagnats run start order-with-shipping '{"order_id": "A-1", "items": 3}' --watch
    bin/dagnats run tree RUN

`order-with-shipping` takes the payment, then its `sub_workflow` step `ship` starts a run
of `shipping` (pack, then label) with the payment's output as its input, and waits for it;
`notify` gets the shipping run's output. `run tree` shows the order with its shipping run
under the `ship` step. docs/step-types.md describes sub_workflow.
"""

import time
from typing import Any

from dagnats import worker

w = worker.Worker()  # DAGNATS_NATS_URL, else the running local serve, else :4222


@w.task("take-payment")
def take_payment(ctx: worker.TaskContext, order: dict[str, Any]) -> dict[str, Any]:
    """Charge the order (here: a price per item)."""
    return {**order, "paid": 10 * int(order.get("items", 1))}


@w.task("pack-parcel")
def pack_parcel(ctx: worker.TaskContext, order: dict[str, Any]) -> dict[str, Any]:
    """Pack the order's items (the child run's first step)."""
    time.sleep(float(order.get("work_s", 0.05)))
    return {**order, "parcel": f"parcel-{order['order_id']}"}


@w.task("print-label")
def print_label(ctx: worker.TaskContext, parcel: dict[str, Any]) -> dict[str, Any]:
    """Label the parcel: the shipping run's output, and so the `ship` step's."""
    return {"order_id": parcel["order_id"], "tracking": f"TRK-{parcel['order_id']}"}


@w.task("notify-customer")
def notify_customer(ctx: worker.TaskContext, shipped: dict[str, Any]) -> str:
    """Tell the customer the tracking number."""
    return f"order {shipped['order_id']} ships with {shipped['tracking']}"


if __name__ == "__main__":
    w.run()
