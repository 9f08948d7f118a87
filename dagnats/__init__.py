"""dagnats: a durable DAG workflow engine on NATS JetStream.

    import dagnats

    with dagnats.Client.connect() as client:
        run_id = client.start("hello-pipeline", "World")
        run = client.wait(run_id)

The public surface is `__all__`; everything else is internal.
"""

from dagnats.client import (
    ORIGINAL_INPUT,
    AsyncClient,
    Cancellation,
    Client,
    DeadLetter,
    Decision,
    Event,
    Replay,
    Run,
    RunPage,
    StepInfo,
    Workflow,
    WorkflowInfo,
)
from dagnats.dag.model import RetryPolicy, Step, WorkflowDefinition
from dagnats.dag.state import RunStatus, StepStatus
from dagnats.errors import (
    DagnatsError,
    DeadLetterNotFound,
    InvalidDefinition,
    InvalidInput,
    NotWaiting,
    PayloadTooLarge,
    RunEnded,
    RunNotFound,
    RunNotResumable,
    ServerUnavailable,
    WorkflowNotFound,
)

__all__ = [
    "ORIGINAL_INPUT",
    "AsyncClient",
    "Cancellation",
    "Client",
    "DagnatsError",
    "DeadLetter",
    "DeadLetterNotFound",
    "Decision",
    "Event",
    "InvalidDefinition",
    "InvalidInput",
    "NotWaiting",
    "PayloadTooLarge",
    "Replay",
    "RetryPolicy",
    "Run",
    "RunEnded",
    "RunNotFound",
    "RunNotResumable",
    "RunPage",
    "RunStatus",
    "ServerUnavailable",
    "Step",
    "StepInfo",
    "StepStatus",
    "Workflow",
    "WorkflowDefinition",
    "WorkflowInfo",
    "WorkflowNotFound",
]
