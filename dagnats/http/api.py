"""The /api/v1 routes: one table (ROUTES) that the router serves and openapi.py describes.

Each route calls the client method (dagnats.client) of the CLI command it mirrors, so a run
read over HTTP is the JSON `run status --json` prints, and an error is the one the CLI
prints, as problem details (problems.py). Request bodies and queries are pydantic models:
unknown fields are refused, so a typo surfaces as a 422 rather than being ignored.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from starlette.requests import Request as HttpRequest
from starlette.responses import Response

from dagnats._client_input import ORIGINAL_INPUT, load_definition
from dagnats._client_models import (
    Cancellation,
    DeadLetterPage,
    Decision,
    EventPage,
    Replay,
    Run,
    RunCounts,
    RunDeleted,
    RunPage,
    Workflow,
    WorkflowInfo,
)
from dagnats.api.context import Request
from dagnats.client import AsyncClient
from dagnats.dag.model import WorkflowDefinition
from dagnats.dag.state import RunStatus
from dagnats.store.presence import WorkerEntry

PREFIX = "/api/v1"
#: The most runs one page of GET /runs holds.
MAX_PAGE = 1000


class Body(Request):
    """Base of request bodies and queries: unknown fields are refused (as in the NATS API)."""


class StartRunBody(Body):
    """POST /runs: a workflow, its input, and a version (the latest when absent)."""

    workflow: str = Field(min_length=1, max_length=256)
    input: Any = None
    version: str | None = Field(default=None, min_length=1, max_length=64)


class RerunBody(Body):
    """POST /runs/{run_id}/rerun: a new input; the earlier run's when absent."""

    input: Any = None


class DecisionBody(Body):
    """POST .../approve and .../reject: who decided, and why."""

    by: str | None = Field(default=None, max_length=256)
    comment: str | None = Field(default=None, max_length=4096)


class SignalBody(Body):
    """POST /runs/{run_id}/signals/{name}: the signal's value (any JSON)."""

    value: Any = None


class EventBody(Body):
    """POST /events/{event_type}: the event's data, and an id that makes a repeat (within
    10 minutes) a no-op."""

    data: Any = None
    event_id: str | None = Field(default=None, min_length=1, max_length=256)


class RegisterQuery(Body):
    """POST /workflows: `replace` a different definition registered under the same
    version."""

    replace: bool = False


class RunsQuery(Body):
    """GET /runs: filters, and the cursor of the page to read (a page's `next_cursor`)."""

    workflow: str | None = Field(default=None, min_length=1, max_length=256)
    status: RunStatus | None = None
    since: datetime | None = None
    """Only runs created at or after this time (ISO 8601)."""
    cursor: str | None = Field(default=None, min_length=1, max_length=256)
    limit: int = Field(default=50, ge=1, le=MAX_PAGE)


class CountsQuery(Body):
    """GET /run-counts: only runs created at or after `since` (ISO 8601); all when absent."""

    since: datetime | None = None


class EventsQuery(Body):
    """GET /runs/{run_id}/events: events after history sequence `after`; with `follow`, a
    Server-Sent Events stream (past events, then live ones, until the run ends)."""

    after: int = Field(default=0, ge=0)
    follow: bool = False


class DeadLettersQuery(Body):
    """GET /dead-letters: newest first, a page of `limit` stored before sequence `before`
    (a page's `next`); only one run's with `run_id`."""

    run_id: str | None = Field(default=None, min_length=1, max_length=64)
    limit: int = Field(default=50, ge=1, le=500)
    before: int | None = Field(default=None, ge=1)


class RunId(BaseModel):
    """The id of the run a call started, resumed or signalled."""

    run_id: str


class Registered(BaseModel):
    """What POST /workflows did: registered, unchanged (the same definition again) or
    replaced."""

    name: str
    version: str
    steps: int
    outcome: str


class Validated(BaseModel):
    """A definition that passed validation (nothing is registered)."""

    valid: bool
    name: str
    version: str
    steps: int


class WorkflowDeleted(BaseModel):
    """DELETE /workflows/{name}: how many versions went."""

    name: str
    versions_deleted: int


class EventPublished(BaseModel):
    """POST /events/{event_type}: the event's sequence in the EVENTS stream."""

    event_type: str
    seq: int


class Discarded(BaseModel):
    """DELETE /dead-letters/{seq}: the entry deleted."""

    seq: int


class RunTree(BaseModel):
    """A run and the child runs its sub_workflow steps started, recursively."""

    run_id: str
    step_id: str | None = None
    workflow: str | None = None
    status: str | None = None
    cut: bool | None = None
    """True for a child not read (the tree is cut at 500 runs)."""
    children: list[RunTree] = Field(default_factory=list)


@dataclass
class Call:
    """One request to a route: the client, the raw request, and its parsed parts."""

    client: AsyncClient
    request: HttpRequest
    path: dict[str, Any]
    query: Any = None
    body: Any = None


@dataclass(frozen=True)
class Route:
    """One route: what it takes, what it answers, and the coroutine that does it."""

    method: str
    path: str
    """Under PREFIX, with Starlette's converters: /dead-letters/{seq:int}."""
    name: str
    """The OpenAPI operationId."""
    summary: str
    tag: str
    handler: Callable[[Call], Awaitable[Any]]
    response: Any
    status: int = 200
    body: type[BaseModel] | None = None
    body_required: bool = True
    parse_body: bool = True
    """False: the handler gets the body's JSON as it came (a definition, which
    load_definition checks with its own messages)."""
    query: type[Request] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    """Request headers it reads, with what each means."""
    streams: bool = False
    """It may answer with Server-Sent Events (text/event-stream)."""

    @property
    def changes(self) -> bool:
        """True when it changes something (a read-only token may not call it)."""
        return self.method not in ("GET", "HEAD")


async def _list_workflows(call: Call) -> list[WorkflowInfo]:
    return await call.client.list_workflows()


async def _register(call: Call) -> Registered:
    definition = load_definition(call.body)
    checked, outcome = await call.client._register(definition, replace=call.query.replace)
    return Registered(name=checked.name, version=checked.version, steps=len(checked.steps),
                      outcome=outcome)


async def _validate(call: Call) -> Validated:
    definition = load_definition(call.body)
    return Validated(valid=True, name=definition.name, version=definition.version,
                     steps=len(definition.steps))


async def _get_workflow(call: Call) -> Workflow:
    return await call.client.get_workflow(call.path["name"], call.path.get("version"))


async def _delete_workflow(call: Call) -> WorkflowDeleted:
    name = call.path["name"]
    return WorkflowDeleted(name=name, versions_deleted=await call.client.delete_workflow(name))


async def _start(call: Call) -> RunId:
    body: StartRunBody = call.body
    key = call.request.headers.get("idempotency-key") or None
    return RunId(run_id=await call.client.start(body.workflow, body.input, version=body.version,
                                                idempotency_key=key))


async def _list_runs(call: Call) -> RunPage:
    query: RunsQuery = call.query
    return await call.client.list_runs_page(query.workflow, query.status, query.limit,
                                            since=query.since, after=query.cursor)


async def _run_counts(call: Call) -> RunCounts:
    return await call.client.run_counts(call.query.since)


async def _get_run(call: Call) -> Run:
    return await call.client.status(call.path["run_id"])


async def _events(call: Call) -> EventPage | Response:
    query: EventsQuery = call.query
    if query.follow:
        from dagnats.http.events import follow_response

        return await follow_response(call.client, call.path["run_id"], call.request,
                                     query.after)
    return await call.client.events_page(call.path["run_id"], query.after)


async def _tree(call: Call) -> RunTree:
    return RunTree.model_validate(await call.client.tree(call.path["run_id"]))


async def _cancel(call: Call) -> Cancellation:
    return await call.client.cancel(call.path["run_id"])


async def _retry(call: Call) -> RunId:
    return RunId(run_id=await call.client.retry(call.path["run_id"]))


async def _rerun(call: Call) -> RunId:
    body: RerunBody | None = call.body
    given = body is not None and "input" in body.model_fields_set
    new_input = body.input if given and body is not None else ORIGINAL_INPUT
    return RunId(run_id=await call.client.rerun(call.path["run_id"], new_input))


async def _approve(call: Call) -> Decision:
    body: DecisionBody = call.body or DecisionBody()
    return await call.client.approve(call.path["run_id"], call.path["step_id"], by=body.by,
                                     comment=body.comment)


async def _reject(call: Call) -> Decision:
    body: DecisionBody = call.body or DecisionBody()
    return await call.client.reject(call.path["run_id"], call.path["step_id"], by=body.by,
                                    comment=body.comment)


async def _signal(call: Call) -> RunId:
    body: SignalBody = call.body or SignalBody()
    return RunId(run_id=await call.client.signal(call.path["run_id"], call.path["name"],
                                                 body.value))


async def _delete_run(call: Call) -> RunDeleted:
    return await call.client.delete_run(call.path["run_id"])


async def _publish_event(call: Call) -> EventPublished:
    body: EventBody = call.body or EventBody()
    event_type = call.path["event_type"]
    seq = await call.client.publish_event(event_type, body.data, event_id=body.event_id)
    return EventPublished(event_type=event_type, seq=seq)


async def _dead_letters(call: Call) -> DeadLetterPage:
    query: DeadLettersQuery = call.query
    return await call.client.dead_letters_page(query.run_id, query.limit, query.before)


async def _replay(call: Call) -> Replay:
    return await call.client.replay(call.path["seq"])


async def _replay_run(call: Call) -> Replay:
    return await call.client.replay(run_id=call.path["run_id"])


async def _discard(call: Call) -> Discarded:
    await call.client.discard(call.path["seq"])
    return Discarded(seq=call.path["seq"])


async def _workers(call: Call) -> list[WorkerEntry]:
    return await call.client.workers()


IDEMPOTENCY = {"Idempotency-Key": "The same key (within 24 hours) returns the same run "
                                  "rather than starting another."}

ROUTES: list[Route] = [
    Route("GET", "/workflows", "listWorkflows", "List registered workflows", "workflows",
          _list_workflows, list[WorkflowInfo]),
    Route("POST", "/workflows", "registerWorkflow", "Register a workflow definition",
          "workflows", _register, Registered, 201, body=WorkflowDefinition, parse_body=False,
          query=RegisterQuery),
    Route("POST", "/workflows/validate", "validateWorkflow",
          "Check a definition without registering it", "workflows", _validate, Validated,
          body=WorkflowDefinition, parse_body=False),
    Route("GET", "/workflows/{name}", "getWorkflow", "A workflow's latest version",
          "workflows", _get_workflow, Workflow),
    Route("GET", "/workflows/{name}/versions/{version}", "getWorkflowVersion",
          "One version of a workflow", "workflows", _get_workflow, Workflow),
    Route("DELETE", "/workflows/{name}", "deleteWorkflow",
          "Delete a workflow and every version of it", "workflows", _delete_workflow,
          WorkflowDeleted),
    Route("POST", "/runs", "startRun", "Start a run", "runs", _start, RunId, 201,
          body=StartRunBody, headers=IDEMPOTENCY),
    Route("GET", "/runs", "listRuns", "List runs, newest first, a page at a time", "runs",
          _list_runs, RunPage, query=RunsQuery),
    Route("GET", "/run-counts", "countRuns",
          "How many runs are in each status (of those created since a time)", "runs",
          _run_counts, RunCounts, query=CountsQuery),
    Route("GET", "/runs/{run_id}", "getRun",
          "A run and its steps (an 8-character prefix of its id works)", "runs", _get_run,
          Run),
    Route("DELETE", "/runs/{run_id}", "deleteRun",
          "Delete an ended run and everything kept for it", "runs", _delete_run, RunDeleted),
    Route("GET", "/runs/{run_id}/events", "getRunEvents",
          "A run's events; with follow=true, a Server-Sent Events stream until it ends",
          "runs", _events, EventPage, query=EventsQuery, streams=True,
          headers={"Last-Event-ID": "With follow=true: resume after this history sequence "
                                    "(sent by EventSource on reconnecting)."}),
    Route("GET", "/runs/{run_id}/tree", "getRunTree",
          "A run's lineage: its root and every child run", "runs", _tree, RunTree),
    Route("POST", "/runs/{run_id}/cancel", "cancelRun", "Cancel a run", "runs", _cancel,
          Cancellation),
    Route("POST", "/runs/{run_id}/retry", "retryRun",
          "Resume a failed or cancelled run from its failed steps", "runs", _retry, RunId),
    Route("POST", "/runs/{run_id}/rerun", "rerunRun",
          "Start a new run of the same workflow version", "runs", _rerun, RunId, 201,
          body=RerunBody, body_required=False),
    Route("POST", "/runs/{run_id}/steps/{step_id}/approve", "approveStep",
          "Approve a step waiting for approval", "runs", _approve, Decision,
          body=DecisionBody, body_required=False),
    Route("POST", "/runs/{run_id}/steps/{step_id}/reject", "rejectStep",
          "Reject a step waiting for approval", "runs", _reject, Decision,
          body=DecisionBody, body_required=False),
    Route("POST", "/runs/{run_id}/signals/{name}", "signalRun", "Send a signal to a run",
          "runs", _signal, RunId, body=SignalBody, body_required=False),
    Route("POST", "/runs/{run_id}/replay", "replayRun",
          "Replay every dead letter of a run", "dead letters", _replay_run, Replay),
    Route("POST", "/events/{event_type}", "publishEvent",
          "Publish an event for wait_for_event steps", "events", _publish_event,
          EventPublished, 201, body=EventBody, body_required=False),
    Route("GET", "/dead-letters", "listDeadLetters",
          "Steps that failed for good, newest first, a page at a time", "dead letters",
          _dead_letters, DeadLetterPage, query=DeadLettersQuery),
    Route("POST", "/dead-letters/{seq:int}/replay", "replayDeadLetter",
          "Replay a dead letter: its run goes on from the failed step", "dead letters",
          _replay, Replay),
    Route("DELETE", "/dead-letters/{seq:int}", "discardDeadLetter",
          "Delete a dead letter without replaying it", "dead letters", _discard, Discarded),
    Route("GET", "/workers", "listWorkers",
          "The live workers: tasks, in-flight counts, last heartbeat", "workers", _workers,
          list[WorkerEntry]),
]
