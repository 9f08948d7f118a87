"""dagnats: a durable DAG workflow engine on NATS JetStream.

    import dagnats

    with dagnats.Client.connect() as client:
        run_id = client.start("hello-pipeline", "World")
        run = client.wait(run_id)

The public surface is `__all__`; everything else is internal.
"""

from dagnats.client import (
    AsyncClient,
    Cancellation,
    Client,
    Event,
    Run,
    StepInfo,
    Workflow,
    WorkflowInfo,
)
from dagnats.dag.model import RetryPolicy, Step, WorkflowDefinition
from dagnats.dag.state import RunStatus, StepStatus
from dagnats.errors import (
    DagnatsError,
    InvalidDefinition,
    InvalidInput,
    RunNotFound,
    ServerUnavailable,
    WorkflowNotFound,
)

__all__ = [
    "AsyncClient",
    "Cancellation",
    "Client",
    "DagnatsError",
    "Event",
    "InvalidDefinition",
    "InvalidInput",
    "RetryPolicy",
    "Run",
    "RunNotFound",
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
