"""The flaky worker: a shop whose payment gateway, mail server and printer all misbehave.

    bin/dagnats worker run examples/flaky-worker/worker.py    # beside a running serve, or:
    bin/dagnats serve --worker examples/flaky-worker/worker.py  # (if none is running yet)
    bin/dagnats workflow register examples/flaky-worker/order.json
    bin/dagnats workflow register examples/flaky-worker/labels.json

`order` shows retries (the card is charged on the third attempt), on_failure (a receipt
that cannot be emailed is queued instead, and the step counts as recovered) and
compensation (an order that cannot be shipped is refunded, then its stock released).
`labels` fails while the printer is offline: the file named by FLAKY_PRINTER_FILE
(default /tmp/dagnats-printer-online) does not exist. Create it to bring the printer online,
then replay the dead letter (`bin/dagnats dlq replay SEQ`) or retry the run (`bin/dagnats run
retry`). docs/failures.md walks through it all.
"""

import os
import time
from pathlib import Path

from pydantic import BaseModel

from dagnats import worker

w = worker.Worker()  # DAGNATS_NATS_URL, else the running local serve, else :4222
PRINTER = Path(os.environ.get("FLAKY_PRINTER_FILE", "/tmp/dagnats-printer-online"))


class Order(BaseModel):
    """An order as it flows through the steps; each step adds what it did."""

    order_id: int
    email: str = ""
    address: str = ""
    copies: int = 1
    reserved: bool = False
    charged: float | None = None


@w.task("reserve-stock")
def reserve_stock(ctx: worker.TaskContext, order: Order) -> Order:
    """Put the goods aside."""
    return order.model_copy(update={"reserved": True})


@w.task("charge-card")
async def charge_card(ctx: worker.TaskContext, order: Order) -> Order:
    """The payment gateway times out twice, then takes the payment (retried by the engine)."""
    if ctx.attempt < 3:
        raise ConnectionError("payment gateway timed out")
    return order.model_copy(update={"charged": 42.0})


@w.task("email-receipt")
def email_receipt(ctx: worker.TaskContext, order: Order) -> str:
    """A bad address cannot get better by retrying: fail for good (on_failure takes over)."""
    if "@" not in order.email:
        raise worker.NonRetryableError(f"mail server rejected address {order.email!r}")
    return f"receipt sent to {order.email}"


@w.task("queue-receipt")
def queue_receipt(ctx: worker.TaskContext, failure: dict) -> str:
    """The on_failure step of `receipt`: gets {"failed_step", "error", "error_type"}."""
    return f"receipt queued for a person to send ({failure['error']})"


@w.task("ship-order")
def ship_order(ctx: worker.TaskContext, order: Order) -> str:
    """No courier goes nowhere: the run fails, and what completed is compensated."""
    if order.address == "nowhere":
        raise worker.NonRetryableError("no courier delivers to 'nowhere'")
    return f"order {order.order_id} shipped to {order.address}"


@w.task("refund-card")
def refund_card(ctx: worker.TaskContext, undo: dict) -> str:
    """Compensates `charge`: gets {"original_step", "original_output", "trigger_step", ...}."""
    return f"refunded {undo['original_output']['charged']}"


@w.task("release-stock")
def release_stock(ctx: worker.TaskContext, undo: dict) -> str:
    """Compensates `reserve` (runs after `refund`: reverse completion order)."""
    return f"released the stock of order {undo['original_output']['order_id']}"


@w.task("pack-order")
def pack_order(ctx: worker.TaskContext, order: Order) -> Order:
    """Box it up."""
    return order


@w.task("print-labels")
def print_labels(ctx: worker.TaskContext, order: Order) -> str:
    """Print one label at a time (a sync handler: it runs in a thread); stop if cancelled."""
    if not PRINTER.exists():
        raise ConnectionError(f"printer offline (no {PRINTER})")
    for printed in range(order.copies):
        if ctx.cancelled:
            ctx.logger.info("run cancelled after %d of %d labels", printed, order.copies)
            return f"stopped after {printed} labels"
        time.sleep(0.05)  # printing one label
    return f"printed {order.copies} labels for order {order.order_id}"


if __name__ == "__main__":
    w.run()
