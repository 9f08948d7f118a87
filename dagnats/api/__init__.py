"""The dagnats API: request/reply operations over NATS for the client and the CLI.

    service.py    the nats.micro service, the reply envelope, `run_api` (the process)
    workflows.py  workflow.register / get / list / delete
    runs.py       run.start / get / events / list
    lifecycle.py  run.cancel / retry / rerun
    dlq.py        dlq.list / replay / discard
    idempotency.py  idempotency keys of run.start
    context.py    what operations work with, and request parsing
    thread.py     the API in a background thread (tests, embedding)
"""

from dagnats.api.service import OPERATIONS, run_api

__all__ = ["OPERATIONS", "run_api"]
