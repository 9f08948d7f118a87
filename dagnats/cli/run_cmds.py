"""`dagnats run ...`: start, retry and rerun (and watch), status, events, list, cancel and
signal runs, and approve or reject steps waiting for approval."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from dagnats._client_models import Decision, Event, Run
from dagnats.cli.common import echo_json, echo_lines, json_option, nats_url_option, with_client
from dagnats.cli.inputs import parse_input
from dagnats.cli.render import (
    MapTally,
    compact_json,
    event_lines,
    event_widths,
    progress_line,
    runs_table,
    started_line,
    status_lines,
    tree_lines,
    watch_line,
)
from dagnats.cli.watching import follow_run, unconfirmed_start, watch_command
from dagnats.client import ORIGINAL_INPUT, AsyncClient
from dagnats.dag.durations import parse_duration
from dagnats.dag.events import EventType
from dagnats.dag.state import RunStatus
from dagnats.errors import DagnatsError, InvalidInput

RUN_ID = click.argument("run_id")
WATCH = click.option("--watch", is_flag=True,
                     help="Print events as they happen; exit 0 only if the run completes.")
STREAM = click.option("--stream", is_flag=True,
                      help="Also print what the handlers stream (ctx.stream) as it comes"
                           " (implies --watch).")


@click.group()
def run() -> None:
    """Start, inspect, cancel, retry, rerun and signal runs."""


def exit_code_for(last: Event | None) -> int:
    """0 when the run completed; 1 when it ended any other way (failed, cancelled...)."""
    return 0 if last is not None and last.type is EventType.WORKFLOW_COMPLETED else 1


async def follow(client: AsyncClient, run_id: str, as_json: bool,
                 from_seq: int | None = None, stream: bool = False) -> int:
    """Print a run's events (from `from_seq`) as they happen until it ends; the exit code.

    From the start (no `from_seq`), the run's first line is printed at once, before its
    events are read, so nothing that goes wrong while following hides that the run exists.
    A step queued a while with no live worker for its task is said once (on stderr with
    --json, which prints events only). Handlers' progress reports are printed as they come,
    and with `stream` their streamed chunks too (not with --json).
    """
    announced = from_seq is None and not as_json
    if announced:
        click.echo(started_line(run_id))
    out = LivePrinter()
    tally = MapTally()

    def show(event: Event) -> None:
        if as_json or not (announced and event.type is EventType.WORKFLOW_STARTED):
            out.line(event_text(event, as_json))
        if not as_json:
            out.line(tally.see(event))

    live = None if as_json else asyncio.create_task(_live_lines(client, run_id, stream, out))
    try:
        last = await follow_run(client, run_id, from_seq, show,
                                lambda line: out.line(line, err=as_json))
    finally:
        if live is not None:
            live.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await live
    return exit_code_for(last)


class LivePrinter:
    """Lines of a follower, and streamed text chunks between them: a string chunk is printed
    as it comes, without a newline (a model's tokens make one line), which the next line or
    the stream's end closes."""

    def __init__(self) -> None:
        self._open = False

    def line(self, text: str | None, err: bool = False) -> None:
        """Print a whole line (None: nothing), after closing an open stream line."""
        if text is None:
            return
        self.close()
        click.echo(text, err=err)

    def chunk(self, data: Any) -> None:
        """Print one streamed chunk: text as is, anything else as a line of JSON."""
        if isinstance(data, str):
            click.echo(data, nl=False)
            self._open = not data.endswith("\n")
        else:
            self.line(compact_json(data))

    def close(self) -> None:
        """End an open stream line."""
        if self._open:
            click.echo("")
            self._open = False


async def _live_lines(client: AsyncClient, run_id: str, stream: bool, out: LivePrinter
                      ) -> None:
    """Progress lines (`step.train: 40% epoch 2/5`) and, with `stream`, streamed chunks, as
    the run's handlers send them; until cancelled."""
    async for step_id, message in client.telemetry(run_id, chunks=stream):
        if "progress" in message:
            out.line(progress_line(step_id, message["progress"]))
        elif "chunk" in message:
            out.chunk(message["chunk"])
        else:
            out.close()


def echo_event(event: Event, as_json: bool) -> None:
    """Print an event as `--watch` does: its line (none for a quiet one), or one JSON line."""
    text = event_text(event, as_json)
    if text is not None:
        click.echo(text)


def event_text(event: Event, as_json: bool) -> str | None:
    """An event's `--watch` line (None for a quiet one), or its JSON line."""
    return compact_json(event.model_dump(mode="json")) if as_json else watch_line(event)


@run.command()
@click.argument("workflow")
@click.argument("input", required=False)
@click.option("--version", help="Run this registered version (default: the latest).")
@click.option("--idempotency-key", metavar="KEY",
              help="Starting again with the same key within 24 h returns the same run.")
@WATCH
@STREAM
@nats_url_option
@json_option
@click.pass_context
def start(ctx: click.Context, workflow: str, input: str | None, version: str | None,
          idempotency_key: str | None, watch: bool, stream: bool, nats_url: str | None,
          as_json: bool) -> None:
    """Start a run of WORKFLOW with INPUT (any JSON value; @FILE reads it from a file, - from
    standard input) and print its id.

    With --watch, exit 0 when the run completes and 1 when it fails or is cancelled.
    """
    payload = parse_input(input)

    async def go(client: AsyncClient, known: list[str]) -> int:
        run_id = await client.start(workflow, payload, version=version,
                                    idempotency_key=idempotency_key)
        return await announce(client, run_id, watch or stream, as_json, known=known,
                              stream=stream)

    watch_command(ctx, nats_url, go, unconfirmed_start(f"start of {workflow}", workflow))


async def announce(client: AsyncClient, run_id: str, watch: bool, as_json: bool,
                   from_seq: int | None = None, known: list[str] | None = None,
                   stream: bool = False) -> int:
    """Print the run id (`{"run_id"}` with --json), or follow the run; the exit code.
    `known` gets the run id before following (so Ctrl-C can name the run)."""
    if watch:
        if known is not None:
            known.append(run_id)
        try:
            return await follow(client, run_id, as_json, from_seq, stream)
        except DagnatsError as exc:  # say which run: it exists whatever happened here
            raise type(exc)(f"run {run_id} exists, but following it failed: {exc.message}; "
                            f"see `dagnats run status {run_id}`") from None
    if as_json:
        echo_json({"run_id": run_id})
    else:
        click.echo(run_id)
    return 0


@run.command()
@RUN_ID
@WATCH
@nats_url_option
@json_option
@click.pass_context
def retry(ctx: click.Context, run_id: str, watch: bool, nats_url: str | None,
          as_json: bool) -> None:
    """Resume a failed or cancelled run in place and print its id.

    Its failed, cancelled and never-started steps run again with a fresh retry budget;
    completed steps keep their outputs and do not run again. The run's dead letters are
    removed.
    """
    async def go(client: AsyncClient, known: list[str]) -> int:
        resumed = await client.retry(run_id)
        from_seq = None
        if watch:  # follow from the resume, not from the start (which ended in the failure)
            from_seq = max((e.seq for e in await client.events(resumed)
                            if e.type is EventType.WORKFLOW_RESUMED), default=None)
        return await announce(client, resumed, watch, as_json, from_seq, known=known)

    watch_command(ctx, nats_url, go)


@run.command()
@RUN_ID
@click.argument("input", required=False)
@WATCH
@nats_url_option
@json_option
@click.pass_context
def rerun(ctx: click.Context, run_id: str, input: str | None, watch: bool,
          nats_url: str | None, as_json: bool) -> None:
    """Start a new run of the same workflow version as RUN_ID; print the new run's id.

    It takes RUN_ID's input unless INPUT (any JSON value; @FILE or - for standard input) is
    given.
    """
    payload = parse_input(input) if input is not None else ORIGINAL_INPUT

    async def go(client: AsyncClient, known: list[str]) -> int:
        return await announce(client, await client.rerun(run_id, payload), watch, as_json,
                              known=known)

    watch_command(ctx, nats_url, go, unconfirmed_start(f"rerun of {run_id}"))


@run.command()
@RUN_ID
@nats_url_option
@json_option
def status(run_id: str, nats_url: str | None, as_json: bool) -> None:
    """Show a run and its steps (RUN_ID may be a unique prefix of 8+ characters).

    A step queued for a while whose task no live worker serves says so (with --json: the
    step's "unserved" field).
    """
    now = datetime.now(UTC)

    async def go(client: AsyncClient) -> Run:
        return await client.status(run_id, now)

    found = with_client(nats_url, go)
    if as_json:
        echo_json(found.model_dump(mode="json"))
    else:
        echo_lines(status_lines(found, now))


@run.command()
@RUN_ID
@click.option("--follow", "-f", is_flag=True,
              help="Then print new events as they happen, until the run ends.")
@nats_url_option
@json_option
@click.pass_context
def events(ctx: click.Context, run_id: str, follow: bool, nats_url: str | None,
           as_json: bool) -> None:
    """List every event of a run, in order (with --follow, then the new ones as they come;
    --json then prints one event per line)."""
    if not follow:
        found = with_client(nats_url, lambda client: client.events(run_id))
        if as_json:
            echo_json([event.model_dump(mode="json") for event in found])
        else:
            echo_lines(event_lines(found, header=True))
        return

    async def go(client: AsyncClient, known: list[str]) -> int:
        past = await client.events(run_id)
        if not past:  # an unknown run: get_run says so
            past_id = (await client.get_run(run_id)).run_id
        else:
            past_id = past[0].run_id
        known.append(past_id)
        widths = event_widths(past)
        for line in (event_lines(past, header=True, widths=widths) if not as_json else
                     [compact_json(e.model_dump(mode="json")) for e in past]):
            click.echo(line)
        if past and past[-1].terminal:
            return exit_code_for(past[-1])

        def show(event: Event) -> None:
            click.echo(compact_json(event.model_dump(mode="json")) if as_json
                       else event_lines([event], widths=widths)[0])

        last = await follow_run(client, past_id, (past[-1].seq + 1) if past else None, show,
                                lambda line: click.echo(line, err=True))
        return exit_code_for(last)

    watch_command(ctx, nats_url, go)


@run.command("watch")
@RUN_ID
@click.option("--tail", is_flag=True, help="Only events from now on, not the run's story so far.")
@STREAM
@nats_url_option
@json_option
@click.pass_context
def watch_(ctx: click.Context, run_id: str, tail: bool, stream: bool, nats_url: str | None,
           as_json: bool) -> None:
    """Follow a run that is already going, as `run start --watch` does: its events from the
    start (with --tail, only new ones) until it ends. Exit 0 when it completes and 1 when it
    fails or is cancelled; Ctrl-C stops watching (exit 130) and the run goes on."""
    async def go(client: AsyncClient, known: list[str]) -> int:
        found = await client.get_run(run_id)
        known.append(found.run_id)
        past = await client.events(found.run_id)
        if tail:
            return await _watch_tail(client, found, past, as_json, stream)
        resumed = max((e.seq for e in past if e.type is EventType.WORKFLOW_RESUMED),
                      default=None)
        if resumed is None:
            return await follow(client, found.run_id, as_json, stream=stream)
        for event in past:  # its story up to its last resume (it had ended, and goes on)
            if event.seq < resumed:
                echo_event(event, as_json)
        return await follow(client, found.run_id, as_json, from_seq=resumed, stream=stream)

    watch_command(ctx, nats_url, go)


async def _watch_tail(client: AsyncClient, found: Run, past: list[Event], as_json: bool,
                      stream: bool) -> int:
    """`run watch --tail`: only what happens from now on (how it ended, if it has)."""
    last = past[-1] if past else None
    if last is not None and last.terminal:  # nothing new will come: say how it ended
        echo_event(last, as_json)
        return exit_code_for(last)
    if not as_json:
        click.echo(f"Run {found.run_id} is {found.status.value}; new events follow")
    return await follow(client, found.run_id, as_json,
                        from_seq=(last.seq + 1) if last is not None else 1, stream=stream)


@run.command("tree")
@RUN_ID
@nats_url_option
@json_option
def tree(run_id: str, nats_url: str | None, as_json: bool) -> None:
    """Print the lineage of a run (sub_workflow children): its root run, then every child
    under the step that started it, each with its id, workflow and status."""
    found = with_client(nats_url, lambda client: client.tree(run_id))
    if as_json:
        echo_json(found)
    else:
        echo_lines(tree_lines(found))


@run.command("list")
@click.option("--workflow", help="Only runs of this workflow.")
@click.option("--status", type=click.Choice([s.value for s in RunStatus]),
              help="Only runs in this status.")
@click.option("--since", metavar="WHEN",
              help="Only runs created since then: a duration ago (2h, 30m) or an ISO time.")
@click.option("--after", metavar="CURSOR", help="Go on after the cursor a listing printed.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@nats_url_option
@json_option
def list_(workflow: str | None, status: str | None, since: str | None, after: str | None,
          limit: int, nats_url: str | None, as_json: bool) -> None:
    """List runs, newest first (the next page's cursor goes to stderr)."""
    when = parse_since(since) if since is not None else None
    page = with_client(nats_url, lambda client: client.list_runs_page(
        workflow, status, limit, since=when, after=after))
    if as_json:
        echo_json([item.model_dump(mode="json") for item in page.runs])
    else:
        echo_lines(runs_table(page.runs))
    if page.next_cursor is not None:
        click.echo(f"More runs: add --after {page.next_cursor}", err=True)


def parse_since(text: str) -> datetime:
    """`--since`: a duration ago ("2h") or an ISO time (UTC unless it says otherwise)."""
    try:
        return datetime.now(UTC) - timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"--since {text!r} is neither a duration (such as 2h or 30m) nor "
                           "an ISO time (such as 2026-12-01T08:00:00Z)") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@run.command()
@RUN_ID
@nats_url_option
@json_option
def cancel(run_id: str, nats_url: str | None, as_json: bool) -> None:
    """Cancel a running run: nothing new is dispatched, and its workers are told."""
    outcome = with_client(nats_url, lambda client: client.cancel(run_id))
    if as_json:
        echo_json(outcome.model_dump(mode="json"))
    elif outcome.changed:
        click.echo(f"Cancelled run {outcome.run_id}")
    else:
        click.echo(f"Run {outcome.run_id} is already {outcome.status.value}; nothing to cancel")


def _decision_command(approved: bool) -> click.Command:
    """`run approve` or `run reject`: one decision on a step waiting for approval."""
    verb = "approve" if approved else "reject"

    @click.argument("run_id")
    @click.argument("step_id")
    @click.option("--by", metavar="NAME", help="Who decides (kept in the step's output).")
    @click.option("--comment", metavar="TEXT", help="Why (kept with the decision).")
    @nats_url_option
    @json_option
    def decide(run_id: str, step_id: str, by: str | None, comment: str | None,
               nats_url: str | None, as_json: bool) -> None:
        async def go(client: AsyncClient) -> Decision:
            method = client.approve if approved else client.reject
            return await method(run_id, step_id, by=by, comment=comment)

        decision = with_client(nats_url, go)
        if as_json:
            echo_json(decision.model_dump(mode="json"))
        else:
            who = f" by {decision.by}" if decision.by else ""
            click.echo(f"{'Approved' if approved else 'Rejected'} step {decision.step_id} of "
                       f"run {decision.run_id}{who}")

    decide.__doc__ = (f"{verb.capitalize()} STEP_ID of RUN_ID, a step waiting for approval.\n\n"
                      + ("It completes with the decision as its output."
                         if approved else
                         "It fails (not retryable): on_failure and compensation apply.")
                      + " A step is decided once: a second decision is refused (exit 2) "
                        "with who decided and when.")
    return run.command(verb)(decide)


approve = _decision_command(approved=True)
reject = _decision_command(approved=False)


@run.command("signal")
@RUN_ID
@click.argument("name")
@click.argument("value", required=False)
@nats_url_option
@json_option
def signal_(run_id: str, name: str, value: str | None, nats_url: str | None,
            as_json: bool) -> None:
    """Send signal NAME with VALUE (any JSON value; @FILE or - for standard input; absent:
    null) to a running run.

    A handler waiting for it (ctx.wait_for_signal) gets the value, and so does one that
    waits later: the latest value of each name is kept until the run ends. A run that has
    ended takes no signals (exit 2).
    """
    payload = parse_input(value, "VALUE")
    sent_to = with_client(nats_url, lambda client: client.signal(run_id, name, payload))
    if as_json:
        echo_json({"run_id": sent_to, "name": name})
    else:
        click.echo(f"Signal {name} sent to run {sent_to}")


@run.command("delete")
@RUN_ID
@nats_url_option
@json_option
def delete(run_id: str, nats_url: str | None, as_json: bool) -> None:
    """Delete an ended run: its history, snapshot, dead letters and whatever else was kept
    for it. A run still running is refused (cancel it first)."""
    outcome = with_client(nats_url, lambda client: client.delete_run(run_id))
    if as_json:
        echo_json(outcome.model_dump(mode="json"))
    else:
        gone = ", ".join(f"{n} {what}" for what, n in outcome.removed.items() if n)
        click.echo(f"Deleted run {outcome.run_id} ({outcome.status}): {gone or 'nothing left'}")


@run.command("purge")
@click.option("--older-than", "older_than", required=True, metavar="AGE",
              help="Delete runs that ended longer ago than this (30d, 12h, 1d12h).")
@click.option("--status", type=click.Choice([s.value for s in RunStatus if s.terminal]),
              help="Only runs that ended with this status.")
@nats_url_option
@json_option
def purge(older_than: str, status: str | None, nats_url: str | None, as_json: bool) -> None:
    """Delete every run that ended more than AGE ago (as `run delete` does). Runs still
    running are never deleted."""
    from dagnats.store.retention import parse_age

    try:
        seconds = parse_age(older_than)
    except ValueError as exc:
        raise InvalidInput(f"--older-than: {exc}") from None
    deleted = with_client(nats_url, lambda client: client.purge_runs(seconds, status))
    if as_json:
        echo_json({"deleted": deleted})
    else:
        click.echo(f"Deleted {len(deleted)} run(s) that ended more than {older_than} ago")
