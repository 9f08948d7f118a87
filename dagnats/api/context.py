"""What every API operation works with: JetStream, the stores and buckets, request parsing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from pydantic import BaseModel, ConfigDict, ValidationError

from dagnats import names
from dagnats.errors import InvalidInput
from dagnats.store import progress
from dagnats.store.definitions import Definitions
from dagnats.store.snapshots import Snapshots

RequestT = TypeVar("RequestT", bound=BaseModel)


@dataclass(frozen=True)
class ApiContext:
    """JetStream and typed access to the KV buckets, shared by every request."""

    js: JetStreamContext
    definitions: Definitions
    snapshots: Snapshots
    cancellations: KeyValue
    """`run_cancellations`: the ids of cancelled runs, which workers watch."""
    idempotency: KeyValue
    """`run_idempotency`: idempotency key digests -> run ids, for 24 h."""
    signals: KeyValue
    """`run_signals`: the latest value of each signal sent to a run, until it ends."""
    progress: KeyValue | None
    """`step_progress`: the last progress of each running step (None on an older store)."""

    @classmethod
    async def open(cls, nc: NATS) -> ApiContext:
        """Bind to the provisioned streams and buckets."""
        js = nc.jetstream()
        return cls(js, await Definitions.open(js), await Snapshots.open(js),
                   await js.key_value(names.CANCEL_BUCKET),
                   await js.key_value(names.IDEMPOTENCY_BUCKET),
                   await js.key_value(names.SIGNALS_BUCKET), await progress.bucket(js))


class Request(BaseModel):
    """Base of every request body: unknown fields are refused, so typos surface."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_request(model: type[RequestT], op: str, body: Any) -> RequestT:
    """Validate a decoded request body, turning a problem into one InvalidInput line."""
    try:
        return model.model_validate(body if body is not None else {})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'request'}: {error['msg']}"
            for error in exc.errors())
        raise InvalidInput(f"bad {op} request: {problems}") from None
