"""Idempotent starts: one idempotency key maps to one run for 24 h, in KV `run_idempotency`.

The key is given with the start, or read from the run input along the workflow's
`idempotency_key` dot-path ("order.id"). Its bucket key is a digest of (workflow, key):
`dagnats.names.idempotency_key`. `kv.create` is atomic, so of any number of concurrent
starts exactly one claims the key; the others get the run id it stored. Whoever holds the
run id and finds no history for it writes the workflow.started event (deduplicated by its
message id), so a starter that died between claiming and starting leaves nothing stuck.
"""

from __future__ import annotations

import json
from typing import Any

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from dagnats.dag.model import WorkflowDefinition
from dagnats.errors import Contended, InvalidInput

#: Rounds of create-then-read before giving up (a key can expire between the two).
CLAIM_ROUNDS = 5


def key_from_input(definition: WorkflowDefinition, run_input: Any) -> str | None:
    """The idempotency key the workflow's dot-path finds in the input (None: no path).

    A missing or null value is an InvalidInput naming the path.
    """
    path = definition.idempotency_key
    if not path:
        return None
    value = run_input
    for part in path.split("."):
        if not isinstance(value, dict) or value.get(part) is None:
            raise InvalidInput(
                f"workflow {definition.name} takes its idempotency key from input.{path}, "
                "which this input lacks; add it, or pass --idempotency-key")
        value = value[part]
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True,
                                                             separators=(",", ":"))


async def claim(kv: KeyValue, digest: str, run_id: str) -> str:
    """The run id that owns `digest`: `run_id` if this call claimed it, else the earlier one."""
    for _ in range(CLAIM_ROUNDS):
        try:
            await kv.create(digest, run_id.encode())
            return run_id
        except KeyWrongLastSequenceError:
            pass  # claimed already: read whose it is
        try:
            entry = await kv.get(digest)
        except KeyNotFoundError:
            continue  # expired or removed between the two calls: claim again
        if entry.value:
            return entry.value.decode()
    raise Contended(f"could not claim idempotency key {digest[:12]}...: it keeps changing; "
                       "try again")
