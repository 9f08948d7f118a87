"""The console's pages, each a coroutine from a `View` (the client, the request, who asks) to
HTML. Each reads through the same client calls as the CLI; a page that updates live has a
`live` part its script fetches again (`?part=live`) when something changes.

    /                 overview: runs by status (last hour, last day), recent failures,
                      dead letters waiting, components and workers
    /workflows        every workflow; /workflows/{name}: its DAG drawn, steps, start form
    /runs             runs with filters, live; /runs/{id}: DAG and timeline, live, steps,
                      events, and the actions that apply
    /dead-letters     replay and discard
    /workers          live workers, and the tasks no live worker serves
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request

from dagnats._client_models import Event, Run, StepInfo
from dagnats.cli.render import step_summary
from dagnats.client import AsyncClient
from dagnats.dag.events import EventType
from dagnats.dag.state import RunStatus, StepStatus
from dagnats.errors import InvalidInput
from dagnats.http import draw
from dagnats.http.html import ago, badge, e, json_value, when
from dagnats.store import presence

#: The stream that says when a list of runs should be fetched again (console.changes).
CHANGES = "/runs/changes"
#: Dead letters per page of their list.
DEAD_LETTERS_PAGE = 50
#: Runs per page of the runs list.
RUNS_PAGE = 50
#: Events drawn in the timeline and listed on a run's page (the API has them all).
EVENTS_SHOWN = 2000
#: The "since" choices of the runs list.
SINCE = {"15m": timedelta(minutes=15), "1h": timedelta(hours=1), "24h": timedelta(days=1),
         "7d": timedelta(days=7)}
STATUS_ORDER = [s.value for s in (RunStatus.RUNNING, RunStatus.COMPLETED, RunStatus.FAILED,
                                  RunStatus.CANCELLED)]


@dataclass
class View:
    """One page request: the client, the request, whether the caller may change things."""

    client: AsyncClient
    request: Request
    can_change: bool
    now: datetime

    def query(self, name: str) -> str | None:
        """A query parameter, None when absent or empty."""
        return self.request.query_params.get(name) or None


@dataclass
class Page:
    """A rendered page: its title, its navigation entry, its body; `live` is the part
    fetched again on updates (the body holds it)."""

    title: str
    active: str
    body: str
    live: str | None = None
    drawings: bool = False


Render = Callable[[View], Awaitable[Page]]


def action(label: str, method: str, url: str, confirm: str, *, view: View,
           body: dict[str, Any] | None = None, then: str = "reload", danger: bool = False
           ) -> str:
    """A button the script turns into an API call, after asking for confirmation."""
    if not view.can_change:
        return f'<button disabled title="read-only token">{e(label)}</button>'
    data = f' data-body="{e(json.dumps(body))}"' if body is not None else ""
    kind = ' class="danger"' if danger else ""
    return (f'<button{kind} data-method="{method}" data-url="{e(url)}" '
            f'data-confirm="{e(confirm)}" data-then="{then}"{data}>{e(label)}</button>')


def live_box(url: str, inner: str, *, sse: str | None = None, poll_ms: int | None = None
             ) -> str:
    """The element the script keeps up to date: fetched again from `url` on each event of
    the SSE stream `sse`, or every `poll_ms`."""
    extra = (f' data-sse="{e(sse)}"' if sse else "") + (f' data-poll="{poll_ms}"'
                                                        if poll_ms else "")
    return f'<div id="live" data-fragment="{e(url)}"{extra}>{inner}</div>'


def short(run_id: str) -> str:
    """A run id as the console shows it: its first 8 characters, linked."""
    return f'<a class="mono" href="/runs/{e(run_id)}" title="{e(run_id)}">{e(run_id[:8])}</a>'


def duration(run: Run, now: datetime) -> str:
    """How long a run took (or has taken so far)."""
    return ago(((run.completed_at or now) - run.created_at).total_seconds())


def runs_table(runs: list[Run], now: datetime) -> str:
    """Runs as a table: id, workflow, status, created, duration, error."""
    if not runs:
        return '<p class="muted">No runs.</p>'
    rows = "".join(
        f"<tr><td>{short(r.run_id)}</td><td><a href=\"/workflows/{e(r.workflow)}\">"
        f"{e(r.workflow)}</a> <span class=muted>v{e(r.version)}</span></td>"
        f"<td>{badge(r.status.value)}</td><td>{when(r.created_at, now)}</td>"
        f"<td>{duration(r, now)}</td><td class=err>{e((r.error or '')[:120])}</td></tr>"
        for r in runs)
    return ("<table class=runs><tr><th>run</th><th>workflow</th><th>status</th>"
            f"<th>created</th><th>took</th><th>error</th></tr>{rows}</table>")


# --- overview -------------------------------------------------------------------------------

async def overview(view: View) -> Page:
    """Runs by status over the last hour and day, failures, dead letters, components."""
    from dagnats.http.app import components

    client = view.client
    (hour, day, failed, recent), (letters, parts, workers) = await asyncio.gather(
        asyncio.gather(client.run_counts(timedelta(hours=1)),
                       client.run_counts(timedelta(days=1)),
                       client.list_runs_page(status=RunStatus.FAILED, limit=8),
                       client.list_runs_page(limit=10)),
        asyncio.gather(client.dead_letters_page(limit=5), components(client),
                       client.workers()))

    def counts(title: str, found: dict[str, int], since: str) -> str:
        cells = "".join(
            f'<a class="count st-{s}" href="/runs?status={s}&since={since}">'
            f"<b>{found.get(s, 0):,}</b>{s}</a>" for s in STATUS_ORDER)
        return f"<div class=card><h3>{title}</h3><div class=counts>{cells}</div></div>"

    health = "".join(
        f"<li>{badge('up' if part['up'] else 'down')} <b>{e(name)}</b> "
        f"<span class=muted>{e(part['detail'])}</span></li>" for name, part in parts.items())
    names = ", ".join(sorted({w.name for w in workers})) or "none"
    dlq = "".join(
        f"<li>{short(d.run_id) if d.run_id else 'poison'} <b>{e(d.step_id or '')}</b> "
        f"<span class=err>{e(d.error[:100])}</span> {when(d.timestamp, view.now)}</li>"
        for d in letters.dead_letters)
    inner = f"""
<div class=grid>
{counts("Last hour", hour.counts, "1h")}
{counts("Last 24 hours", day.counts, "24h")}
<div class=card><h3>Components</h3><ul class=plain>{health}</ul>
<p class=muted>Workers: {e(names)}</p></div>
<div class=card><h3><a href="/dead-letters">Dead letters waiting: {letters.total:,}</a></h3>
<ul class=plain>{dlq or '<li class=muted>none</li>'}</ul></div>
</div>
<h2>Recent failures</h2>{runs_table(failed.runs, view.now)}
<h2>Latest runs</h2>{runs_table(recent.runs, view.now)}"""
    body = "<h1>Overview</h1>" + live_box("/?part=live", inner, sse=CHANGES, poll_ms=5000)
    return Page("Overview", "overview", body, inner)


# --- workflows ------------------------------------------------------------------------------

async def workflows(view: View) -> Page:
    """Every registered workflow."""
    found = await view.client.list_workflows()
    rows = "".join(
        f'<tr><td><a href="/workflows/{e(w.name)}">{e(w.name)}</a></td><td>{e(w.latest)}</td>'
        f"<td>{len(w.versions)}</td><td>{w.steps}</td><td>{when(w.registered_at, view.now)}"
        "</td></tr>" for w in found)
    table = ("<table><tr><th>workflow</th><th>latest</th><th>versions</th><th>steps</th>"
             f"<th>registered</th></tr>{rows}</table>") if found else (
        '<p class=muted>No workflow is registered yet: <code>dagnats workflow register '
        'FILE</code>, or POST /api/v1/workflows.</p>')
    return Page("Workflows", "workflows", f"<h1>Workflows</h1>{table}")


async def workflow(view: View) -> Page:
    """One workflow: its versions, its DAG drawn, its steps, a start form, recent runs."""
    name = view.request.path_params["name"]
    found = await view.client.get_workflow(name, view.query("version"))
    definition = found.definition.to_json_dict()
    version = found.definition.version
    versions = " ".join(
        f'<a class="pill{" on" if v == version else ""}" href="/workflows/{e(name)}?version='
        f'{e(v)}">{e(v)}</a>' for v in found.versions)
    recent = await view.client.list_runs_page(name, limit=10)
    steps = "".join(_step_row(step) for step in definition["steps"])
    start = _start_form(name, version, view)
    body = f"""
<h1>{e(name)} <span class=muted>v{e(version)}</span></h1>
<p>Versions: {versions}</p>
{f'<p>{e(definition.get("description"))}</p>' if definition.get("description") else ""}
<div class=scroll>{draw.dag_svg(definition)}</div>
<div class="cols side"><div>
<h2>Steps</h2><table class=steps><tr><th>step</th><th>kind</th><th>task</th><th>after</th>
<th>retry</th><th>timeout</th></tr>{steps}</table></div>
<div>{start}</div></div>
<h2>Recent runs</h2>{runs_table(recent.runs, view.now)}
<p><a href="/runs?workflow={e(name)}">All runs of {e(name)}</a></p>"""
    return Page(name, "workflows", body, drawings=True)


def _step_row(step: dict[str, Any]) -> str:
    retry = step.get("retry") or {}
    policy = (f"{retry.get('max_attempts')} x {retry.get('strategy', '')}" if retry else "")
    return (f"<tr><td><b>{e(step['id'])}</b></td><td>{e(step.get('type') or 'task')}</td>"
            f"<td>{e(step.get('task') or '')}</td><td>{e(', '.join(step.get('depends_on', [])))}"
            f"</td><td>{e(policy)}</td><td>{e(step.get('timeout') or '')}</td></tr>")


def _start_form(name: str, version: str, view: View) -> str:
    if not view.can_change:
        return '<p class=muted>A read-only token cannot start runs.</p>'
    return f"""<h2>Start a run</h2>
<form id=start-run data-workflow="{e(name)}" data-version="{e(version)}">
<label for=run-input>Input (JSON)</label>
<textarea id=run-input name=input rows=6 spellcheck=false>null</textarea>
<p id=input-error class=err role=alert></p>
<button type=submit>Start run</button></form>"""


# --- runs -----------------------------------------------------------------------------------

async def runs(view: View) -> Page:
    """Runs, newest first, filtered by workflow, status and age; live on the first page."""
    workflow_name = view.query("workflow")
    status_text = view.query("status")
    since_text = view.query("since")
    cursor = view.query("cursor")
    try:
        status = RunStatus(status_text) if status_text else None
    except ValueError:
        raise InvalidInput(f"{status_text!r} is not a run status") from None
    if since_text and since_text not in SINCE:
        raise InvalidInput(f"since must be one of {', '.join(SINCE)}")
    since = view.now - SINCE[since_text] if since_text else None
    page = await view.client.list_runs_page(workflow_name, status, RUNS_PAGE, since=since,
                                            after=cursor)
    names = [w.name for w in await view.client.list_workflows()]
    filters = {"workflow": workflow_name, "status": status_text, "since": since_text}
    more = ""
    if page.next_cursor:
        query = urlencode({k: v for k, v in {**filters, "cursor": page.next_cursor}.items()
                           if v})
        more = f'<p><a href="/runs?{query}">Older runs →</a></p>'
    inner = runs_table(page.runs, view.now) + more
    here = urlencode({k: v for k, v in {**filters, "part": "live"}.items() if v})
    form = f"""<form class=filters method=get action="/runs">
{_select("workflow", ["", *names], workflow_name)}
{_select("status", ["", *[s.value for s in RunStatus]], status_text)}
{_select("since", ["", *SINCE], since_text)}
<button type=submit>Filter</button></form>"""
    live = live_box(f"/runs?{here}", inner, sse=None if cursor else CHANGES)
    return Page("Runs", "runs", f"<h1>Runs</h1>{form}{live}", inner)


def _select(name: str, options: list[str], chosen: str | None) -> str:
    items = "".join(
        f'<option value="{e(o)}"{" selected" if o == (chosen or "") else ""}>'
        f"{e(o or f'any {name}')}</option>" for o in options)
    return f'<label>{name} <select name="{name}">{items}</select></label>'


async def run(view: View) -> Page:
    """A run: what it does now, its actions, its DAG and timeline (live), steps, events."""
    found = await view.client.status(view.request.path_params["run_id"])
    events = await _events(view.client, found.run_id)
    if not found.terminal:  # it may have ended in between: the stream would then stay empty
        found = await view.client.status(found.run_id)  # read after `events`: never older
        if found.terminal:
            events = await _events(view.client, found.run_id)
    inner = _run_live(view, found, events)
    last = events[-1].seq if events else 0
    rows = "".join(_event_row(event) for event in events[:EVENTS_SHOWN])
    cut = (f'<p class=muted>The first {EVENTS_SHOWN} events; all of them: '
           f'<a href="/api/v1/runs/{found.run_id}/events">/api/v1/runs/…/events</a></p>'
           if len(events) > EVENTS_SHOWN else "")
    sse = None if found.terminal else (
        f"/api/v1/runs/{found.run_id}/events?follow=true&after={last}")
    body = f"""
<h1>Run <span class=mono>{e(found.run_id)}</span></h1>
{live_box(f"/runs/{found.run_id}?part=live", inner, sse=sse)}
<h2>Events</h2>{cut}
<table id=events class=events data-shown="{min(len(events), EVENTS_SHOWN)}"
 data-max="{EVENTS_SHOWN}"><tr><th>seq</th><th>time</th><th>event</th><th>step</th>
<th>attempt</th></tr>{rows}</table>"""
    return Page(f"Run {found.run_id[:8]}", "runs", body, inner, drawings=True)


async def run_live(view: View) -> Page:
    """The live part of a run's page alone."""
    found = await view.client.status(view.request.path_params["run_id"])
    inner = _run_live(view, found, await _events(view.client, found.run_id))
    return Page("", "runs", inner, inner, drawings=True)


async def _events(client: AsyncClient, run_id: str) -> list[Event]:
    found: list[Event] = []
    cursor: int | None = 0
    while cursor is not None and len(found) < EVENTS_SHOWN:
        page = await client.events_page(run_id, cursor)
        found += page.events
        cursor = page.next
    return found


def _run_live(view: View, found: Run, events: list[Event]) -> str:
    definition: dict[str, Any] = {"name": found.workflow, "version": found.version, "steps": []}
    extra: list[dict[str, Any]] = []
    for event in events:
        if event.type is EventType.WORKFLOW_STARTED and isinstance(
                event.data.get("definition"), dict):
            definition = event.data["definition"]
        elif event.type is EventType.STEP_EXPANDED:
            extra += [s for s in event.data.get("steps", []) if isinstance(s, dict)]
    steps = {step_id: step.model_dump(mode="json") for step_id, step in found.steps.items()}
    dag = draw.dag_svg(definition, steps, link=lambda child: f"/runs/{child}",
                       extra_steps=extra or None)
    bars = draw.timeline([event.model_dump(mode="json") for event in events], view.now)
    lineage = ""
    if found.parent_run_id:
        lineage += f"<p>Started by run {short(found.parent_run_id)}</p>"
    if found.children:
        lineage += "<p>Child runs: " + " ".join(short(c) for c in found.children) + "</p>"
    return f"""
<div class=runhead>{badge(found.status.value)}
<a href="/workflows/{e(found.workflow)}?version={e(found.version)}">{e(found.workflow)}</a>
<span class=muted>v{e(found.version)} · started {when(found.created_at, view.now)} ·
{'took' if found.terminal else 'running for'} {duration(found, view.now)}</span></div>
{_why(found, view.now)}
<div class=actions>{_run_actions(view, found)}</div>
{lineage}
{f'<p class="err box">{e(found.error)}</p>' if found.error else ''}
<div class=scroll>{dag}</div>
<h2>Timeline</h2><div class=scroll>{draw.timeline_svg(bars)}</div>
<h2>Steps</h2>{_steps_table(found, view, _inputs(events))}
<div class=cols><div><h3>Input</h3>{json_value(found.input)}</div>
<div><h3>Output</h3>{json_value(found.output)}</div></div>"""


def _why(found: Run, now: datetime) -> str:
    """What the run is doing or waiting for now: one line per step not yet settled."""
    if found.terminal:
        return ""
    lines = [f"<li><b>{e(step_id)}</b>: {e(step_summary(step, now))}"
             f"{_since(step, now)}</li>"
             for step_id, step in found.steps.items()
             if step.status in (StepStatus.QUEUED, StepStatus.RUNNING, StepStatus.WAITING)]
    if not lines:
        return '<p class="why muted">Deciding what runs next…</p>'
    return f'<ul class="why">{"".join(lines)}</ul>'


def _since(step: StepInfo, now: datetime) -> str:
    moment = step.started_at or step.queued_at
    if step.unserved or moment is None:
        return ""
    return f" <span class=muted>(since {when(moment, now)})</span>"


def _run_actions(view: View, found: Run) -> str:
    run_url = f"/api/v1/runs/{found.run_id}"
    short_id = found.run_id[:8]
    buttons = []
    if not found.terminal:
        buttons.append(action("Cancel", "POST", f"{run_url}/cancel", f"Cancel run {short_id}?",
                              view=view, danger=True))
    if found.status in (RunStatus.FAILED, RunStatus.CANCELLED):
        buttons.append(action("Retry from the failed steps", "POST", f"{run_url}/retry",
                              f"Retry run {short_id} from its failed steps?", view=view))
    buttons.append(action("Rerun", "POST", f"{run_url}/rerun",
                          f"Start a new run of {found.workflow} with the same input?",
                          view=view, then="goto-run"))
    if view.can_change:
        shown = json.dumps(found.input, indent=2, ensure_ascii=False, default=str)
        buttons.append(f"""<details class=rerun><summary>Rerun with a new input</summary>
<form class=rerun data-url="{run_url}/rerun"><textarea name=input rows=4 spellcheck=false
 aria-label="new input (JSON)">{e(shown)}</textarea><p class=err role=alert></p>
<button type=submit>Start the new run</button></form></details>""")
    for step_id, step in found.steps.items():
        waits = step.waiting_for or {}
        if step.status is StepStatus.WAITING and waits.get("kind") == "approval":
            url = f"{run_url}/steps/{step_id}"
            buttons.append(action(f"Approve {step_id}", "POST", f"{url}/approve",
                                  f"Approve step {step_id}?", view=view,
                                  body={"by": "console"}))
            buttons.append(action(f"Reject {step_id}", "POST", f"{url}/reject",
                                  f"Reject step {step_id}? The run fails.", view=view,
                                  body={"by": "console"}, danger=True))
    if not found.terminal and view.can_change:
        buttons.append(f"""<form class="inline send" data-kind="signal"
 data-url="{run_url}/signals/"><input name=name placeholder="signal name" required
 aria-label="signal name"><input name=value placeholder="value (JSON)" aria-label="value">
<button type=submit>Send signal</button></form>""")
        buttons.append("""<form class="inline send" data-kind="event" data-url="/api/v1/events/">
<input name=name placeholder="event type" required aria-label="event type"><input name=value
 placeholder="data (JSON)" aria-label="event data"><button type=submit>Publish event</button>
</form>""")
    return "".join(buttons)


def _inputs(events: list[Event]) -> dict[str, Any]:
    """The input each step's latest attempt was queued with."""
    return {event.step_id: event.data["input"] for event in events
            if event.type is EventType.STEP_QUEUED and event.step_id and "input" in event.data}


def _steps_table(found: Run, view: View, inputs: dict[str, Any]) -> str:
    rows = []
    for step_id, step in found.steps.items():
        took = ""
        if step.started_at and step.completed_at:
            took = ago((step.completed_at - step.started_at).total_seconds())
        shown = (json_value(step.output) if step.status is StepStatus.COMPLETED
                 else f"<span class=err>{e(step.error)}</span>" if step.error
                 else e(step_summary(step, view.now)))
        rows.append(f"<tr data-step=\"{e(step_id)}\"><td><b>{e(step_id)}</b></td>"
                    f"<td>{badge(step.status.value)}</td><td>{step.attempts}</td><td>{took}</td>"
                    f"<td>{json_value(inputs[step_id]) if step_id in inputs else ''}</td>"
                    f"<td>{shown}</td></tr>")
    return ("<table class=steps><tr><th>step</th><th>status</th><th>attempts</th><th>took</th>"
            f"<th>input</th><th>output / error</th></tr>{''.join(rows)}</table>")


def _event_row(event: Event) -> str:
    data = {k: v for k, v in event.data.items() if k != "definition"}
    detail = json.dumps(data, indent=2, ensure_ascii=False, default=str)
    stamp = event.timestamp.astimezone(UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")  # as the script shows the events it adds
    return (f'<tr data-seq="{event.seq}"><td>{event.seq}</td><td class=mono>{e(stamp)}</td>'
            f"<td><details><summary>{e(event.type.value)}</summary><pre>{e(detail)}</pre>"
            f"</details></td><td>{e(event.step_id or '')}</td>"
            f"<td>{event.attempt or ''}</td></tr>")


# --- dead letters and workers ---------------------------------------------------------------

async def dead_letters(view: View) -> Page:
    """Steps that failed for good, newest first, a page at a time, with replay and
    discard."""
    before = view.query("before")
    if before is not None and not before.isdigit():
        raise InvalidInput(f"before must be a dead letter's sequence, not {before!r}")
    page = await view.client.dead_letters_page(limit=DEAD_LETTERS_PAGE,
                                               before=int(before) if before else None)
    letters = page.dead_letters
    rows = "".join(
        f"<tr><td>{d.seq}</td><td>{short(d.run_id) if d.run_id else e(d.kind)}</td>"
        f"<td>{e(d.step_id or '')}</td><td>{e(d.task or '')}</td><td>{d.attempts}</td>"
        f"<td class=err>{e(d.error)}</td><td>{when(d.timestamp, view.now)}</td><td>"
        + (action("Replay", "POST", f"/api/v1/dead-letters/{d.seq}/replay",
                  f"Replay dead letter {d.seq}? Its run goes on from the failed step.",
                  view=view) if d.kind == "step" else "")
        + action("Discard", "DELETE", f"/api/v1/dead-letters/{d.seq}",
                 f"Discard dead letter {d.seq} for good?", view=view, danger=True)
        + "</td></tr>" for d in letters)
    table = ("<table><tr><th>seq</th><th>run</th><th>step</th><th>task</th><th>attempts</th>"
             f"<th>error</th><th>when</th><th></th></tr>{rows}</table>") if letters else (
        "<p class=muted>No dead letters: nothing has failed for good.</p>")
    more = f'<p><a href="/dead-letters?before={page.next}">Older →</a></p>' if page.next else ""
    return Page("Dead letters", "dead-letters",
                f"<h1>Dead letters <span class=muted>{page.total:,}</span></h1>{table}{more}")


async def workers(view: View) -> Page:
    """The live workers, and the tasks of registered workflows no live worker serves."""
    live = await view.client.workers()
    rows = "".join(
        f"<tr><td><b>{e(w.name)}</b> <span class=muted>{e(w.id)}</span></td>"
        f"<td>{e(w.host)}:{w.pid}</td><td>{e(', '.join(w.tasks))}</td>"
        f"<td>{w.in_flight} / {w.concurrency}</td><td>{when(w.heartbeat_at, view.now)}</td>"
        f"<td>{when(w.started_at, view.now)}</td><td>{e(w.version)}</td></tr>" for w in live)
    table = ("<table><tr><th>worker</th><th>host:pid</th><th>tasks</th><th>in flight</th>"
             f"<th>last heartbeat</th><th>up since</th><th>version</th></tr>{rows}</table>"
             ) if live else "<p class=muted>No worker is running.</p>"
    served = presence.served_tasks(live)
    missing: dict[str, list[str]] = {}
    infos = await view.client.list_workflows()
    found = await asyncio.gather(*(view.client.get_workflow(info.name) for info in infos))
    for info, workflow in zip(infos, found, strict=True):
        for step in workflow.definition.steps:
            task = getattr(step, "task", None)
            if isinstance(task, str) and task not in served:
                missing.setdefault(task, []).append(info.name)
    gaps = "".join(f"<li><code>{e(task)}</code> — used by {e(', '.join(sorted(set(used))))}"
                   "</li>" for task, used in sorted(missing.items()))
    unserved = (f"<h2>Tasks no live worker serves</h2><p>Runs that reach them wait until a "
                f"worker of the task starts (<code>dagnats worker run FILE</code>).</p>"
                f"<ul>{gaps}</ul>") if gaps else ""
    inner = table + unserved
    body = "<h1>Workers</h1>" + live_box("/workers?part=live", inner, poll_ms=3000)
    return Page("Workers", "workers", body, inner)


def now_utc() -> datetime:
    """The time a page is rendered at."""
    return datetime.now(UTC)
