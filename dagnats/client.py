"""The Python client of dagnats: `AsyncClient` does the work, `Client` is its blocking twin.

    with dagnats.Client.connect() as client:    # DAGNATS_NATS_URL, else the local serve
        client.register_workflow("pipeline.json")
        run_id = client.start("hello-pipeline", "World")
        run = client.wait(run_id, timeout=60)
        print(run.status, run.steps["greet"].output)

    async with await dagnats.AsyncClient.connect() as client:
        async for event in client.watch(run_id): ...

Requests go to the API (`dagnats serve`) over NATS request/reply. Errors are typed
(dagnats.errors): WorkflowNotFound, RunNotFound, RunEnded, InvalidDefinition, InvalidInput,
and ServerUnavailable when NATS or the API cannot be reached.

The login of a local `dagnats serve` is found by itself (docs/security.md). A client rides
through a restart of nats-server: calls made while it is away wait up to their timeout or
fail with ServerUnavailable, and the calls after it work.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from dagnats import _client_payloads as client_payloads
from dagnats import jetstream, names
from dagnats._client_input import (
    ORIGINAL_INPUT,
    DefinitionSource,
    jsonable,
    load_definition,
    run_status,
)
from dagnats._client_models import (
    Cancellation,
    DeadLetter,
    DeadLetterPage,
    Decision,
    Event,
    EventPage,
    Replay,
    Run,
    RunCounts,
    RunDeleted,
    RunPage,
    StepInfo,
    Workflow,
    WorkflowInfo,
)
from dagnats._client_sync import LoopThread, blocking, blocking_iter
from dagnats.connection import connect, redact, resolve_url_async
from dagnats.dag import events as core_events
from dagnats.dag.kinds.wait_for_event import is_event_type
from dagnats.dag.model import WorkflowDefinition
from dagnats.dag.state import RunState, RunStatus, apply
from dagnats.errors import InvalidInput, ServerUnavailable, from_wire
from dagnats.limits import EVENT_MAX_BYTES
from dagnats.store import follow, history, presence, progress, signals
from dagnats.store.presence import WorkerEntry
from dagnats.unserved import queued_tasks, unserved_steps

__all__ = [
    "ORIGINAL_INPUT", "AsyncClient", "Cancellation", "Client", "DeadLetter", "Decision",
    "Event", "EventPage", "Replay",
    "Run", "StepInfo", "WorkerEntry", "Workflow", "WorkflowInfo", "load_definition",
]

log = logging.getLogger("dagnats.client")

#: How long a request may wait for the API's answer, unless DAGNATS_REQUEST_TIMEOUT says.
DEFAULT_REQUEST_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_ENV = "DAGNATS_REQUEST_TIMEOUT"
#: How long connecting to NATS may take in all, whatever the connection settings.
CONNECT_TIMEOUT_S = 5.0
#: Full run ids are 32 hex characters; anything shorter is a prefix to resolve.
RUN_ID_LENGTH = 32
#: Runs asked of the API per request by list_runs (a page far under the message limit).
LIST_PAGE = 1000
#: How often `stream` looks whether the step it follows is still under way, while no chunk
#: comes (a step that ends without streaming never sends an end mark).
STREAM_CHECK_S = 1.0
#: Bytes allowed per run when sizing a page to the server's message limit (a row is ~300).
LIST_ROW_BYTES = 1024
#: How many times `start` sends a start the API does not answer in time (same request id).
START_ATTEMPTS = 3


def default_request_timeout() -> float:
    """Seconds a request waits for the API: DAGNATS_REQUEST_TIMEOUT, else 10 (a slow link or
    a busy machine may want more; a test, less)."""
    text = os.environ.get(REQUEST_TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_REQUEST_TIMEOUT_S
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidInput(f"{REQUEST_TIMEOUT_ENV} must be a positive number of seconds, "
                           f"not {text!r}")
    return seconds


class _NoAnswer(ServerUnavailable):
    """The API did not answer a request within the client's request timeout."""


class AsyncClient:
    """A connection to dagnats: register workflows, start, inspect, wait for and cancel runs."""

    def __init__(self, nc: NATS, url: str, *, request_timeout_s: float | None = None) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self.url = url
        self.request_timeout_s = request_timeout_s or default_request_timeout()

    @classmethod
    async def connect(cls, url: str | None = None, *,
                      request_timeout_s: float | None = None) -> AsyncClient:
        """Connect to NATS at `url`, else DAGNATS_NATS_URL, else a running local serve's URL,
        else nats://127.0.0.1:4222 (dagnats.discovery). Requests wait `request_timeout_s`
        for the API (default: default_request_timeout())."""
        resolved = await resolve_url_async(url)
        request_timeout_s = request_timeout_s or default_request_timeout()
        try:
            nc = await asyncio.wait_for(connect(resolved, name="dagnats-client"),
                                        CONNECT_TIMEOUT_S)
        except TimeoutError:
            raise ServerUnavailable(
                f"cannot reach NATS at {redact(resolved)} (no connection within "
                f"{CONNECT_TIMEOUT_S:g}s); start it with `dagnats serve`, or pass --nats-url"
            ) from None
        return cls(nc, redact(resolved), request_timeout_s=request_timeout_s)

    async def close(self) -> None:
        """Close the connection."""
        await jetstream.close(self._nc)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    # --- workflows ---------------------------------------------------------------------------

    async def register_workflow(self, definition: DefinitionSource, *,
                                replace: bool = False) -> WorkflowDefinition:
        """Validate (locally, then on the server) and register a definition; return it.

        A registered version is immutable: a different definition under the same name and
        version is refused (InvalidDefinition) unless `replace`; the same one again is a
        no-op. Runs already started keep the definition they started with.
        """
        checked, _ = await self._register(definition, replace=replace)
        return checked

    async def _register(self, definition: DefinitionSource, *, replace: bool = False
                        ) -> tuple[WorkflowDefinition, str]:
        """register_workflow, and what the server did: registered, unchanged or replaced."""
        checked = load_definition(definition)
        result = await self._call("workflow.register", definition=checked.to_json_dict(),
                                  replace=replace)
        outcome = result.get("outcome") or ("registered" if result.get("created") else
                                            "replaced")
        return checked, str(outcome)

    async def get_workflow(self, name: str, version: str | None = None) -> Workflow:
        """One version of a workflow (the latest by default), with its registered versions."""
        return Workflow.model_validate(await self._call("workflow.get", name=name,
                                                        version=version))

    async def list_workflows(self) -> list[WorkflowInfo]:
        """Every registered workflow, by name."""
        return [WorkflowInfo.model_validate(item) for item in await self._call("workflow.list")]

    async def delete_workflow(self, name: str) -> int:
        """Delete a workflow and every version of it; return how many versions there were."""
        result = await self._call("workflow.delete", name=name)
        return int(result["versions_deleted"])

    # --- runs --------------------------------------------------------------------------------

    async def start(self, workflow: str, input: Any = None, *, version: str | None = None,
                    idempotency_key: str | None = None) -> str:
        """Start a run and return its id; the same idempotency key returns the same run.

        A start the API did not answer in time is sent again (START_ATTEMPTS in all) with
        the same request id, so a retry never starts a second run.
        """
        what = f"the input of {workflow}"
        carried = await client_payloads.start_fields(self._js, jsonable(input, what), what)
        request_id = uuid.uuid4().hex
        async with client_payloads.discarded_if_refused(self._js, carried):
            for attempt in range(1, START_ATTEMPTS + 1):
                try:
                    result = await self._call("run.start", workflow=workflow, **carried,
                                              version=version,
                                              idempotency_key=idempotency_key,
                                              request_id=request_id)
                except _NoAnswer:
                    if attempt == START_ATTEMPTS:
                        raise
                    log.info("run.start of %s had no answer in time; sending it again (the "
                             "same request: it starts one run at most)", workflow)
                    continue
                return str(result["run_id"])
        raise AssertionError("unreachable")  # pragma: no cover

    async def get_run(self, run_id: str) -> Run:
        """A run's current state (`run_id` may be a unique prefix of 8 characters or more)."""
        found = await self._call("run.get", run_id=run_id)
        return Run.model_validate(await client_payloads.filled_run(self._js, found))

    async def status(self, run_id: str, now: datetime | None = None) -> Run:
        """A run as `run status` shows it: `get_run`, with `unserved` set on each step queued
        a while whose task no live worker serves (dagnats.unserved). Unmarked when the live
        workers cannot be listed: say nothing rather than something wrong."""
        run = await self.get_run(run_id)
        if run.terminal or not queued_tasks(run):
            return run
        try:
            served = presence.served_tasks(await self.workers())
        except Exception as exc:
            log.debug("cannot list the live workers: %s", exc)
            return run
        steps = dict(run.steps)
        for found in unserved_steps(run, served, now or datetime.now(UTC)):
            steps[found.step_id] = steps[found.step_id].model_copy(
                update={"unserved": found.reason})
        return run.model_copy(update={"steps": steps})

    async def events_page(self, run_id: str, after_seq: int = 0) -> EventPage:
        """A run's events after history sequence `after_seq`, as many as fit one NATS
        message, and the sequence to go on after (None on the last page)."""
        page = await self._call("run.events", run_id=run_id, after_seq=after_seq, paged=True)
        return EventPage(events=[
            Event.model_validate(await client_payloads.filled_event(self._js, item))
            for item in page["events"]], next=page["next"])

    async def events(self, run_id: str) -> list[Event]:
        """Every event of a run, in order (asked for in pages that fit a NATS message)."""
        found: list[Event] = []
        after: int | None = 0
        while after is not None:
            page = await self.events_page(run_id, after)
            found += page.events
            after = page.next
        return found

    async def tree(self, run_id: str) -> dict[str, Any]:
        """The lineage of a run from its root down: {"run_id", "workflow", "status",
        "step_id" (in its parent), "children": [...]} (sub_workflow children)."""
        found: dict[str, Any] = await self._call("run.tree", run_id=run_id)
        return found

    async def workers(self) -> list[WorkerEntry]:
        """The live workers (each running worker's latest heartbeat: id, name, host, pid,
        tasks, in flight, started at), by name. Empty when the server has no presence
        stream yet (no dagnats of this version provisioned it)."""
        try:
            return await presence.live_workers(self._js)
        except nats.errors.NoRespondersError:
            return []

    async def list_runs(self, workflow: str | None = None, status: RunStatus | str | None = None,
                        limit: int = 100, *, since: datetime | timedelta | None = None,
                        after: str | None = None) -> list[Run]:
        """Runs, newest first, optionally of one workflow, in one status, created since a
        time (or that long ago); summaries (`get_run` has the input, output and steps)."""
        page = await self.list_runs_page(workflow, status, limit, since=since, after=after)
        return page.runs

    async def list_runs_page(self, workflow: str | None = None,
                             status: RunStatus | str | None = None, limit: int = 100, *,
                             since: datetime | timedelta | None = None,
                             after: str | None = None) -> RunPage:
        """Up to `limit` runs, newest first, after the cursor `after` (a previous page's
        `next_cursor`), and the cursor to go on from. Asks the API one page at a time, each
        under the NATS message limit."""
        status_value = run_status(status).value if status is not None else None
        if isinstance(since, timedelta):
            since = datetime.now(UTC) - since
        filters = {"workflow": workflow, "status": status_value,
                   "since": since.isoformat() if since is not None else None}
        page = min(LIST_PAGE, max(1, self._nc.max_payload // LIST_ROW_BYTES))
        runs: list[Run] = []
        cursor = after
        while True:
            result = await self._call("run.list", **filters, after=cursor,
                                      limit=min(limit - len(runs), page))
            runs.extend(Run.model_validate(item) for item in result["runs"])
            cursor = result["next"]
            if cursor is None or len(runs) >= limit:
                return RunPage(runs=runs, next_cursor=cursor)

    async def run_counts(self, since: datetime | timedelta | None = None) -> RunCounts:
        """How many runs are in each status, of those created since a time (or that long
        ago; every run when None), from the run index."""
        if isinstance(since, timedelta):
            since = datetime.now(UTC) - since
        return RunCounts.model_validate(await self._call(
            "run.counts", since=since.isoformat() if since is not None else None))

    async def cancel(self, run_id: str) -> Cancellation:
        """Cancel a running run; a run that has ended already is left as it is."""
        return Cancellation.model_validate(await self._call("run.cancel", run_id=run_id))

    async def delete_run(self, run_id: str) -> RunDeleted:
        """Delete an ended run and everything kept for it (history, snapshot, its dead
        letters...); refused (RunNotEnded) while it runs."""
        return RunDeleted.model_validate(await self._call("run.delete", run_id=run_id))

    async def purge_runs(self, older_than_s: float, status: RunStatus | str | None = None
                         ) -> list[str]:
        """Delete every run that ended more than `older_than_s` seconds ago (only those
        with `status`, if given); the ids deleted. Running runs are never deleted."""
        wanted = RunStatus(status).value if status is not None else None
        deleted: list[str] = []
        after: str | None = ""
        while after is not None:
            done = await self._call("run.purge", older_than_s=older_than_s, status=wanted,
                                    after=after)
            deleted += done["deleted"]
            after = done["after"]
        return deleted

    async def retry(self, run_id: str) -> str:
        """Resume a failed or cancelled run in place and return its id.

        Its failed, cancelled and never-started steps run again (with a fresh retry budget);
        completed steps keep their outputs. Raises RunNotResumable for any other run.
        """
        result = await self._call("run.retry", run_id=run_id)
        return str(result["run_id"])

    async def rerun(self, run_id: str, input: Any = ORIGINAL_INPUT) -> str:
        """Start a new run of the same workflow version as `run_id`; return the new run's id.

        It takes the earlier run's input unless `input` is given.
        """
        payload: dict[str, Any] = {"run_id": run_id}
        if input is not ORIGINAL_INPUT:
            what = f"the input of the rerun of {run_id}"
            carried = await client_payloads.start_fields(self._js, jsonable(input, what), what)
            if "run_id" in carried:  # stored out of line under the new run's id
                carried["new_run_id"] = carried.pop("run_id")
            payload.update(carried)
        async with client_payloads.discarded_if_refused(self._js, payload):
            return str((await self._call("run.rerun", **payload))["run_id"])

    async def approve(self, run_id: str, step_id: str, *, by: str | None = None,
                      comment: str | None = None) -> Decision:
        """Approve a step waiting for approval; it completes with the decision as output.

        Raises NotWaiting when the step is not waiting for a decision (decided already:
        the message says by whom and when).
        """
        return Decision.model_validate(await self._call(
            "run.approve", run_id=run_id, step_id=step_id, by=by, comment=comment))

    async def reject(self, run_id: str, step_id: str, *, by: str | None = None,
                     comment: str | None = None) -> Decision:
        """Reject a step waiting for approval; it fails (not retryable). NotWaiting as for
        `approve`."""
        return Decision.model_validate(await self._call(
            "run.reject", run_id=run_id, step_id=step_id, by=by, comment=comment))

    async def publish_event(self, event_type: str, data: Any = None, *,
                            event_id: str | None = None) -> int:
        """Publish an event for wait_for_event steps; return its sequence in EVENTS.

        Any NATS client can do the same with a plain publish of the JSON data on
        `event.<event_type>`. `event_id` makes a repeated publish (within 10 minutes) a
        no-op. Needs no API, only NATS.
        """
        if not is_event_type(event_type):
            raise InvalidInput(f"{event_type!r} is not an event type: use dot-separated "
                               "letters, digits, '-' and '_', such as payment.received")
        body = json.dumps(jsonable(data, f"the data of event {event_type}"),
                          separators=(",", ":"), ensure_ascii=False).encode()
        if len(body) > EVENT_MAX_BYTES:
            raise InvalidInput(f"the data of event {event_type} is {len(body)} bytes; "
                               f"the limit is {EVENT_MAX_BYTES}")
        headers = {"Nats-Msg-Id": event_id} if event_id else None
        try:
            ack = await self._js.publish(names.event_subject(event_type), body,
                                         headers=headers)
        except nats.errors.Error as exc:
            raise ServerUnavailable(f"could not publish event {event_type} on {self.url}: "
                                    f"{exc}; is `dagnats serve` running?") from None
        return int(ack.seq)
    async def signal(self, run_id: str, name: str, value: Any = None) -> str:
        """Send signal `name` with `value` (any JSON value) to a run; return the run's full id.

        A handler waiting for it (`ctx.wait_for_signal`) gets the value, and so does one that
        waits later: the latest value of each name is kept until the run ends. Raises
        RunEnded for a run that has ended, InvalidInput for a bad name or a value over
        dagnats.limits.SIGNAL_MAX_BYTES.
        """
        signals.check_name(name)
        payload = jsonable(value, f"the value of signal {name}")
        signals.encode(run_id, name, payload)  # refuse an oversize value before sending it
        result = await self._call("run.signal", run_id=run_id, name=name, value=payload)
        return str(result["run_id"])

    async def dead_letters(self, run_id: str | None = None) -> list[DeadLetter]:
        """Steps that failed for good (of every run, or of one), oldest first."""
        return [DeadLetter.model_validate(item)
                for item in await self._call("dlq.list", run_id=run_id)]

    async def dead_letters_page(self, run_id: str | None = None, limit: int = 50,
                                before: int | None = None) -> DeadLetterPage:
        """Up to `limit` dead letters, newest first, stored before sequence `before` (a
        page's `next`), and how many are kept in all; of every run (reading only the end of
        the stream), or of one."""
        if run_id is None:
            return DeadLetterPage.model_validate(await self._call(
                "dlq.page", limit=limit, before=before))
        every = list(reversed(await self.dead_letters(run_id)))
        mine = [d for d in every if before is None or d.seq < before]
        more = len(mine) > limit
        return DeadLetterPage(dead_letters=mine[:limit], total=len(every),
                              next=mine[limit - 1].seq if more else None)

    async def replay(self, seq: int | None = None, *, run_id: str | None = None) -> Replay:
        """Replay one dead letter (by `seq`) or every dead letter of a run, then delete them.

        The run goes back to running and re-runs the failed step. Raises DeadLetterNotFound
        for an entry that is gone (replayed already), RunNotResumable when the run is not
        failed or cancelled (the entry is kept).
        """
        if (seq is None) == (run_id is None):
            raise InvalidInput("replay takes a dead letter's seq or a run_id, not both")
        payload = {"seq": seq} if seq is not None else {"run_id": run_id}
        return Replay.model_validate(await self._call("dlq.replay", **payload))

    async def discard(self, seq: int) -> None:
        """Delete one dead letter without replaying it (DeadLetterNotFound if it is gone)."""
        await self._call("dlq.discard", seq=seq)

    async def wait(self, run_id: str, timeout: float | None = None) -> Run:  # noqa: ASYNC109
        """The run once it has ended (completed, failed or cancelled).

        Event-driven, not polling: it follows the run's history (dagnats.store.follow: no
        JetStream consumer, so any number of waits at once are fine) and folds the events
        itself, as the engine does. Raises TimeoutError after `timeout` seconds (None: no
        limit).
        """
        if len(run_id) != RUN_ID_LENGTH or not await history.exists(self._js, run_id):
            run_id = (await self.get_run(run_id)).run_id  # a prefix, or RunNotFound
        try:
            run = await asyncio.wait_for(self._fold_until_ended(run_id), timeout)
        except TimeoutError:
            raise TimeoutError(f"run {run_id} has not ended after {timeout}s") from None
        return Run.model_validate(await client_payloads.filled_run(self._js, run.public()))

    async def watch(self, run_id: str, from_seq: int | None = None) -> AsyncIterator[Event]:
        """Every event of a run, past ones first, then live ones as they happen.

        Starts at history sequence `from_seq` (such as a retry's workflow.resumed event)
        when given. Ends after the event that ends the run.
        """
        run = await self.get_run(run_id)
        after_seq = from_seq - 1 if from_seq else 0
        async with self._follow(run.run_id, after_seq) as events:
            async for core_event in events:
                event = Event.model_validate(
                    await client_payloads.filled_event(self._js, core_event.public()))
                yield event
                if event.terminal:
                    return

    async def stream(self, run_id: str, step_id: str) -> AsyncIterator[Any]:
        """The chunks a step's handler streams (`ctx.stream`), as they come, until that
        attempt's stream ends (its handler returned) or the step is no longer under way.

        Live only: chunks sent before this call are not kept anywhere. A step that already
        ended yields nothing. `step_id` may name a map instance (`each[3]`).
        """
        run = await self.get_run(run_id)
        parent = step_id.partition("[")[0]
        if parent not in run.steps:
            raise InvalidInput(f"run {run.run_id} has no step {step_id!r}")
        async with self._live(names.chunk_subject(run.run_id, step_id)) as messages:
            while True:
                try:
                    msg = await asyncio.wait_for(messages.get(), STREAM_CHECK_S)
                except TimeoutError:
                    now = await self.get_run(run.run_id)
                    if now.terminal or not now.steps[parent].status.in_flight:
                        return
                    continue
                try:
                    chunk = progress.decode_chunk(msg.data)
                except ValueError:
                    continue
                if chunk.get("end"):
                    return
                yield chunk.get("data")

    async def telemetry(self, run_id: str, chunks: bool = False
                        ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """(step id, message) for each progress report of the run's handlers
        (`ctx.progress`: {"progress": {...}}) and, with `chunks`, each streamed chunk
        ({"chunk": data} and {"end": true} when an attempt's stream ends), as they come;
        live only, until the caller stops iterating."""
        subjects = [names.progress_filter(run_id)]
        if chunks:
            subjects.append(names.chunk_filter(run_id))
        async with self._live(*subjects) as messages:
            while True:
                msg = await messages.get()
                try:
                    kind, _, step_id = names.parse_telemetry_subject(msg.subject)
                    if kind == "progress":
                        yield step_id, {"progress": progress.Progress.decode(msg.data).public()}
                        continue
                    chunk = progress.decode_chunk(msg.data)
                except (ValueError, TypeError):
                    continue
                yield step_id, {"end": True} if chunk.get("end") else {"chunk": chunk.get("data")}

    @contextlib.asynccontextmanager
    async def _live(self, *subjects: str) -> AsyncIterator[asyncio.Queue[Msg]]:
        """A queue of the core NATS messages on `subjects` while the block runs (never
        dropped for being slow: a follower's printing may lag behind a fast stream)."""
        messages: asyncio.Queue[Msg] = asyncio.Queue()

        async def take(msg: Msg) -> None:
            messages.put_nowait(msg)

        subs = [await self._nc.subscribe(subject, cb=take, pending_msgs_limit=-1,
                                         pending_bytes_limit=-1) for subject in subjects]
        try:
            yield messages
        finally:
            for sub in subs:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()

    # --- plumbing ----------------------------------------------------------------------------

    async def _fold_until_ended(self, run_id: str) -> RunState:
        """Fold the run's history, stored events then live ones, until the run has ended.

        "Ended" is judged once caught up with what is stored, so a run that failed and was
        resumed since is followed to its new end.
        """
        run: RunState | None = None
        async with self._follow(run_id) as events:
            async for event in events:
                run = apply(run, event)
                if (run is not None and run.status.terminal
                        and not await history.has_after(self._js, run_id, event.seq)):
                    return run
        raise AssertionError("a follower never ends by itself")  # pragma: no cover

    @contextlib.asynccontextmanager
    async def _follow(self, run_id: str, after_seq: int = 0
                      ) -> AsyncIterator[AsyncIterator[core_events.Event]]:
        """A run's stored events after `after_seq`, then live ones (dagnats.store.follow),
        with NATS failures as ServerUnavailable."""
        try:
            async with contextlib.aclosing(follow.follow(self._js, run_id, after_seq)) as events:
                yield events
        except nats.errors.ConnectionClosedError:
            raise ServerUnavailable("the connection to NATS closed while following a run; "
                                    "check `dagnats serve`, then look again with `dagnats run "
                                    "status`") from None
        except nats.errors.Error as exc:
            raise ServerUnavailable(f"cannot follow run {run_id} on {self.url}: {exc}") from None

    async def _call(self, op: str, **payload: Any) -> Any:
        """One request to the API: the result, or the typed error it answered with."""
        try:
            body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        except UnicodeEncodeError as exc:  # a lone surrogate, such as undecodable argv bytes
            raise InvalidInput(f"the {op} request holds text that is not valid Unicode "
                               f"({exc.object[exc.start:exc.end]!a}); check its arguments"
                               ) from None
        try:
            msg = await self._nc.request(names.api_subject(op), body,
                                         timeout=self.request_timeout_s)
        except nats.errors.NoRespondersError:
            raise ServerUnavailable(f"no dagnats API is answering on {self.url}; "
                                    "start it with `dagnats serve`") from None
        except TimeoutError:
            raise _NoAnswer(
                f"the dagnats API on {self.url} did not answer {op} within "
                f"{self.request_timeout_s:g}s; check that `dagnats serve` is healthy") from None
        except nats.errors.MaxPayloadError:
            raise InvalidInput(f"the {op} request is too large for NATS "
                               f"({len(body)} bytes)") from None
        except nats.errors.Error as exc:
            raise ServerUnavailable(f"cannot reach NATS at {self.url}: {exc}") from None
        reply = json.loads(msg.data)
        if reply.get("ok"):
            return reply.get("result")
        raise from_wire(reply.get("error") or {})


class Client:
    """The blocking twin of AsyncClient: the same methods, run on a private event loop.

        with Client.connect() as client:
            run = client.wait(client.start("hello-pipeline", "World"))
    """

    def __init__(self, async_client: AsyncClient, loop: LoopThread) -> None:
        self._async = async_client
        self._loop = loop

    @classmethod
    def connect(cls, url: str | None = None, *,
                request_timeout_s: float | None = None) -> Client:
        """Connect to NATS at `url`, else DAGNATS_NATS_URL, else a running local serve's URL,
        else nats://127.0.0.1:4222 (dagnats.discovery)."""
        loop = LoopThread()
        try:
            async_client = loop.run(AsyncClient.connect(url, request_timeout_s=request_timeout_s))
        except BaseException:
            loop.stop()
            raise
        return cls(async_client, loop)

    @property
    def url(self) -> str:
        """The NATS URL this client is connected to."""
        return self._async.url

    def close(self) -> None:
        """Close the connection and stop the private event loop."""
        try:
            self._loop.run(self._async.close())
        finally:
            self._loop.stop()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    register_workflow = blocking(AsyncClient.register_workflow)
    get_workflow = blocking(AsyncClient.get_workflow)
    list_workflows = blocking(AsyncClient.list_workflows)
    delete_workflow = blocking(AsyncClient.delete_workflow)
    start = blocking(AsyncClient.start)
    get_run = blocking(AsyncClient.get_run)
    status = blocking(AsyncClient.status)
    events = blocking(AsyncClient.events)
    events_page = blocking(AsyncClient.events_page)
    tree = blocking(AsyncClient.tree)
    stream = blocking_iter(AsyncClient.stream)
    telemetry = blocking_iter(AsyncClient.telemetry)
    list_runs = blocking(AsyncClient.list_runs)
    list_runs_page = blocking(AsyncClient.list_runs_page)
    run_counts = blocking(AsyncClient.run_counts)
    cancel = blocking(AsyncClient.cancel)
    retry = blocking(AsyncClient.retry)
    delete_run = blocking(AsyncClient.delete_run)
    purge_runs = blocking(AsyncClient.purge_runs)
    rerun = blocking(AsyncClient.rerun)
    approve = blocking(AsyncClient.approve)
    reject = blocking(AsyncClient.reject)
    publish_event = blocking(AsyncClient.publish_event)
    signal = blocking(AsyncClient.signal)
    dead_letters = blocking(AsyncClient.dead_letters)
    dead_letters_page = blocking(AsyncClient.dead_letters_page)
    replay = blocking(AsyncClient.replay)
    discard = blocking(AsyncClient.discard)
    wait = blocking(AsyncClient.wait)
    watch = blocking_iter(AsyncClient.watch)
    workers = blocking(AsyncClient.workers)
