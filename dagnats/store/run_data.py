"""What handlers keep per run (signals, checkpoints): binding their buckets, deleting a run's.

Both buckets hold keys `<run-id>.<name>` (dagnats.jetstream builds them). When a run ends,
`delete_run_data` removes every one of its keys; the buckets' TTL
(limits.RUN_DATA_MAX_AGE_S) is only the backstop for a run whose end never did.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError
from nats.js.kv import KeyValue

from dagnats import names
from dagnats.errors import ServerUnavailable

T = TypeVar("T")

#: The version of the JSON envelopes of signals and checkpoints ({"v": 1, ...}).
ENVELOPE_VERSION = 1


def open_envelope(payload: bytes, what: str, build: Callable[[dict[str, Any]], T]) -> T:
    """`build(body)` of a v1 envelope; ValueError ("not a dagnats <what> (v1): ...") when
    the payload is not one, or `build` finds a field missing or wrong."""
    try:
        body = json.loads(payload)
        if not isinstance(body, dict) or body.get("v") != ENVELOPE_VERSION:
            raise ValueError("not a v1 envelope")
        return build(body)
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"not a dagnats {what} (v{ENVELOPE_VERSION}): {exc}") from None


async def open_bucket(js: JetStreamContext, bucket: str) -> KeyValue:
    """Bind to a provisioned bucket; ServerUnavailable, saying how to provision, if missing."""
    try:
        return await js.key_value(bucket)
    except BucketNotFoundError:
        raise ServerUnavailable(
            f"KV bucket {bucket} does not exist on this NATS: start `dagnats serve`, which"
            " provisions it, or run dagnats.jetstream.provision") from None


async def delete_run_data(js: JetStreamContext, run_id: str) -> None:
    """Delete every signal and checkpoint of one run (and nothing of any other run).

    One purge per bucket, filtered to the run's keys: nothing is left behind, not even a
    delete marker. Idempotent: a run without data (or deleted already) is fine.
    """
    for bucket, keys in ((names.SIGNALS_BUCKET, names.signal_filter(run_id)),
                         (names.CHECKPOINTS_BUCKET, names.checkpoint_filter(run_id))):
        await js.purge_stream(names.kv_stream(bucket), subject=names.kv_subject(bucket, keys))
