"""Drawings for the web console: a workflow's DAG and a run's timeline, as inline SVG.

Pure: JSON-shaped data in, markup out (no I/O). Colours come only from classes, which
`DAG_CSS` styles for light and dark pages; every piece of user text is escaped. Text is
set in a monospace font and cut by character count, so it never spills out of its box.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from itertools import pairwise
from typing import Any

from dagnats.names import parse_instance_step_id

__all__ = ["DAG_CSS", "TIMELINE_CSS", "Bar", "dag_svg", "short_duration", "timeline",
           "timeline_svg"]

SVG_NS = "http://www.w3.org/2000/svg"
MONO = "ui-monospace,SFMono-Regular,Menlo,Consolas,monospace"

# DAG geometry (px). Text is monospace: a character is 0.6 em wide.
NODE_W, NODE_H, GAP_X, GAP_Y, PAD = 180, 64, 64, 18, 16
BEND_H = 8  # the slot an edge takes in a layer it passes
TEXT_X = 10
ID_CHARS = 21  # 12 px: 7.2 px a character, 160 px of room
LINE_CHARS = 24  # 11 px: 6.6 px a character
RETRY_CHARS = 5  # room kept for the `↻3` marker
CHILD_CHARS = 10  # `↗ 1a2b3c4d`

#: Kinds that take the workflow's default_retry when they have no retry of their own.
RETRYING_KINDS = frozenset({"task", "map", "agent_loop", "planner", "sub_workflow"})
_CLASS_TOKEN = re.compile(r"[^A-Za-z0-9_-]")


def _esc(text: object) -> str:
    return escape(str(text), quote=True)


def _clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, an ellipsis in place of what was cut."""
    return text if len(text) <= limit else text[:max(limit - 1, 0)] + "…"


def _token(text: object) -> str:
    """A string safe inside a class name."""
    return _CLASS_TOKEN.sub("", str(text))[:40]


def _svg_id(prefix: str, parts: Iterable[str]) -> str:
    """A stable id for a <defs> entry, distinct per drawing (several share a page)."""
    return f"{prefix}-{zlib.crc32('|'.join(parts).encode()):08x}"


# --- the DAG ---------------------------------------------------------------------------


@dataclass
class _Graph:
    """The nodes to draw (definition order) and their edges as (from, to, kind)."""

    specs: dict[str, dict[str, Any]]
    edges: list[tuple[str, str, str]] = field(default_factory=list)
    layout: list[tuple[str, str]] = field(default_factory=list)
    """Edges that only place nodes: a planner's added steps before its dependents."""


def _graph(definition: Mapping[str, Any], steps: Mapping[str, Any],
           extra_steps: Iterable[Mapping[str, Any]]) -> _Graph:
    specs: dict[str, dict[str, Any]] = {}
    for spec in [*definition.get("steps", ()), *extra_steps]:
        if isinstance(spec, Mapping) and isinstance(spec.get("id"), str):
            specs.setdefault(spec["id"], dict(spec))
    for step_id in steps:
        specs.setdefault(str(step_id), {"id": str(step_id), "type": ""})
    graph = _Graph(specs)
    for step_id, spec in specs.items():
        deps = [dep for dep in spec.get("depends_on") or () if dep in specs]
        graph.edges += [(dep, step_id, "dep") for dep in deps]
        planner = step_id.rpartition(".")[0]
        if planner in specs and not spec.get("depends_on"):
            graph.edges.append((planner, step_id, "plan"))
        for named in (spec.get("on_failure"), spec.get("compensate")):
            if isinstance(named, str) and named in specs and named != step_id:
                graph.edges.append((step_id, named, "aux"))
    for source, target, kind in graph.edges:
        if kind == "dep":  # a planner's dependents come after the steps it added
            graph.layout += [(added, target) for added in specs
                             if added.rpartition(".")[0] == source]
    return graph


def _depths(ids: list[str], links: Iterable[tuple[str, str]]) -> dict[str, int]:
    """Each node's longest path from a root (Kahn's order; a cycle's nodes go last)."""
    preds: dict[str, set[str]] = {node: set() for node in ids}
    succs: dict[str, set[str]] = {node: set() for node in ids}
    for source, target in links:
        if source != target:
            preds[target].add(source)
            succs[source].add(target)
    waiting = {node: len(preds[node]) for node in ids}
    ready = [node for node in ids if not waiting[node]]
    depth: dict[str, int] = {}
    while ready or len(depth) < len(ids):
        if not ready:  # a cycle: take its first node as if it were ready
            ready = [next(node for node in ids if node not in depth)]
        node = ready.pop(0)
        if node in depth:
            continue
        depth[node] = max((depth[p] + 1 for p in preds[node] if p in depth), default=0)
        for nxt in sorted(succs[node], key=ids.index):
            waiting[nxt] -= 1
            if waiting[nxt] == 0:
                ready.append(nxt)
    return depth


def _ordered_layers(ids: list[str], depth: dict[str, int],
                    links: list[tuple[str, str]]) -> list[list[str]]:
    """Nodes by layer, each layer ordered by a few barycenter sweeps to cut crossings."""
    layers: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for node in ids:
        layers[depth[node]].append(node)
    preds: dict[str, list[str]] = {node: [] for node in ids}
    succs: dict[str, list[str]] = {node: [] for node in ids}
    for source, target in links:
        preds[target].append(source)
        succs[source].append(target)

    pos: dict[str, float] = {}

    def centre(layer: list[str]) -> None:
        pos.update((node, index - (len(layer) - 1) / 2) for index, node in enumerate(layer))

    def sweep(chosen: list[list[str]], near: dict[str, list[str]]) -> None:
        for layer in chosen:
            layer.sort(key=lambda node: (sum(pos[n] for n in near[node]) / len(near[node])
                                         if near[node] else pos[node]))
            centre(layer)

    for layer in layers:
        centre(layer)

    for _ in range(3):
        sweep(layers[1:], preds)
        sweep(layers[-2::-1], succs)
    sweep(layers[1:], preds)
    return layers


def _kind(spec: Mapping[str, Any]) -> str:
    kind = spec.get("type", "task")
    return "task" if kind == "normal" else str(kind or "")


def _kind_text(spec: Mapping[str, Any], info: Mapping[str, Any]) -> str:
    """The node's second line: `task · resize`, `sleep 5m`, `event · order.paid`."""
    kind, config = _kind(spec), spec.get("config") or {}
    if kind == "sleep":
        when = config.get("duration")
        if when is not None:
            return f"sleep {when}"
        return f"sleep until {config.get('until') or config.get('until_input_path')}"
    if kind == "wait_for_event":
        return f"event · {config.get('event')}"
    if kind == "sub_workflow":
        return f"sub_workflow · {config.get('workflow')}"
    task = spec.get("task") or info.get("task")
    if not kind:
        return f"task · {task}" if task else "added step"
    return f"{kind} · {task}" if task else kind


def _retries(spec: Mapping[str, Any], default: Any) -> int | None:
    """The retries a step's policy allows (its own, else the default for its kind)."""
    policy = spec.get("retry")
    if policy is None and _kind(spec) in RETRYING_KINDS:
        policy = default
    if not isinstance(policy, Mapping):
        return None
    count = policy.get("max_attempts", 3)
    return count if isinstance(count, int) else None


def _fraction(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return min(max(float(value), 0.0), 1.0)
    return None


def _status_text(info: Mapping[str, Any]) -> tuple[str, float | None]:
    """The node's third line (`attempt 2 · 37/100`) and the fraction for its progress bar."""
    parts: list[str] = []
    fraction = None
    attempts = info.get("attempts")
    if isinstance(attempts, int) and attempts > 1:
        parts.append(f"attempt {attempts}")
    if info.get("iteration"):
        parts.append(f"iteration {info['iteration']}")
    instances = info.get("instances")
    if isinstance(instances, Mapping) and isinstance(instances.get("total"), int):
        counts = instances.get("counts") or {}
        done, total = counts.get("completed", 0), instances["total"]
        parts.append(f"{done}/{total}")
        if counts.get("failed"):
            parts.append(f"{counts['failed']} failed")
        fraction = done / total if total else 1.0
    progress = info.get("progress")
    if isinstance(progress, Mapping) and fraction is None:
        fraction = _fraction(progress.get("fraction"))
        if fraction is not None:
            parts.append(f"{round(fraction * 100)}%")
    waits = info.get("waiting_for")
    if info.get("status") == "waiting" and isinstance(waits, Mapping) and not instances:
        parts.append(f"waits: {waits.get('kind')}")
    return " · ".join(parts), fraction


def _tooltip(step_id: str, spec: Mapping[str, Any], info: Mapping[str, Any],
             retries: int | None) -> str:
    lines = [step_id, _kind_text(spec, info)]
    if retries is not None:
        lines.append(f"retries up to {retries} times")
    if info.get("status"):
        lines.append(f"status: {info['status']}")
    for key in ("error", "skip_reason", "child_run_id"):
        if info.get(key):
            lines.append(f"{key.replace('_', ' ')}: {_clip(str(info[key]), 400)}")
    if spec.get("description"):
        lines.append(_clip(str(spec["description"]), 400))
    return "\n".join(lines)


def _node(step_id: str, spec: Mapping[str, Any], info: Mapping[str, Any], retries: int | None,
          at: tuple[float, float], link: Callable[[str], str] | None) -> str:
    """One node: a box with the id, the kind line and the status line, in a clipping <svg>."""
    status = _token(info.get("status") or "")
    classes = " ".join(c for c in ("dag-node", f"kind-{_token(_kind(spec)) or 'added'}",
                                   f"st-{status}" if status else "") if c)
    data = f' data-step="{_esc(step_id)}"' + (f' data-status="{status}"' if status else "")
    kind_room = LINE_CHARS - (RETRY_CHARS if retries is not None else 0)
    text, fraction = _status_text(info)
    child = info.get("child_run_id")
    meta_room = LINE_CHARS - (CHILD_CHARS + 1 if child else 0)
    right = TEXT_X + 160
    out = [f'<g class="{classes}"{data} transform="translate({at[0]:g},{at[1]:g})">',
           f"<title>{_esc(_tooltip(step_id, spec, info, retries))}</title>",
           f'<rect class="dag-box" width="{NODE_W}" height="{NODE_H}" rx="8" '
           'fill="none" stroke="#8c959f"/>',
           f'<svg width="{NODE_W}" height="{NODE_H}">',
           f'<text class="dag-id" x="{TEXT_X}" y="19" font-size="12" font-weight="600" '
           f'fill="currentColor">{_esc(_clip(step_id, ID_CHARS))}</text>',
           f'<text class="dag-kind" x="{TEXT_X}" y="35" font-size="11" fill="currentColor">'
           f"{_esc(_clip(_kind_text(spec, info), kind_room))}</text>"]
    if retries is not None:
        out.append(f'<text class="dag-retry" x="{right}" y="35" font-size="11" '
                   f'text-anchor="end" fill="currentColor">↻{retries}</text>')
    if text:
        out.append(f'<text class="dag-meta" x="{TEXT_X}" y="51" font-size="11" '
                   f'fill="currentColor">{_esc(_clip(text, meta_room))}</text>')
    if isinstance(child, str) and child:
        label = (f'<text class="dag-child" x="{right}" y="51" font-size="11" '
                 f'text-anchor="end" fill="currentColor">↗ {_esc(child[:8])}</text>')
        out.append(f'<a class="dag-link" href="{_esc(link(child))}">{label}</a>' if link
                   else label)
    if fraction is not None:
        out.append(f'<rect class="dag-track" x="{TEXT_X}" y="56" width="160" height="3" '
                   f'rx="1.5" fill="none"/><rect class="dag-progress" x="{TEXT_X}" y="56" '
                   f'width="{160 * fraction:.1f}" height="3" rx="1.5" fill="#8c959f"/>')
    out.append("</svg></g>")
    return "".join(out)


def _edge(points: list[tuple[float, float]], kind: str, names: tuple[str, str],
          marker: str) -> str:
    """An edge through `points` (the centres of its source, its bends, its target): a
    smooth curve between layers, straight across the layers it passes."""
    x, y = points[0][0] + NODE_W / 2, points[0][1]
    path = [f"M{x:g},{y:g}"]
    for index, (cx, cy) in enumerate(points[1:], 1):
        last = index == len(points) - 1
        x2 = cx - NODE_W / 2 - (2 if last else 0)
        bend = max(GAP_X / 2, (x2 - x) / 2)
        path.append(f"C{x + bend:g},{y:g} {x2 - bend:g},{cy:g} {x2:g},{cy:g}")
        if not last:
            path.append(f"L{cx + NODE_W / 2:g},{cy:g}")
        x, y = cx + NODE_W / 2, cy
    extra = {"dep": "", "plan": " dag-edge-plan", "aux": " dag-edge-aux"}[kind]
    return (f'<path class="dag-edge{extra}" data-from="{_esc(names[0])}" '
            f'data-to="{_esc(names[1])}" d="{" ".join(path)}" fill="none" stroke="#8c959f" '
            f'marker-end="url(#{marker})"/>')


def _layout(graph: _Graph) -> tuple[dict[str, tuple[float, float]], list[list[str]], int, int]:
    """The centre of every node and of every bend, each edge's bends, and the size.

    An edge that spans layers gets a bend in each layer it passes (a thin slot ordered like
    a node), so it runs between the nodes there, never across them.
    """
    ids = list(graph.specs)
    depth = _depths(ids, [(s, t) for s, t, _ in graph.edges] + graph.layout)
    nodes, links, bends = list(ids), list(graph.layout), []
    for index, (source, target, _) in enumerate(graph.edges):
        chain = [f"\0{index}:{d}" for d in range(depth[source] + 1, depth[target])]
        depth.update({bend: int(bend.rpartition(":")[2]) for bend in chain})
        nodes += chain
        path = [source, *chain, target]
        links += list(pairwise(path))
        bends.append(chain)
    layers = _ordered_layers(nodes, depth, links)

    def tall(node: str) -> int:
        return BEND_H if node.startswith("\0") else NODE_H

    sizes = [sum(tall(n) + GAP_Y for n in layer) - GAP_Y for layer in layers]
    height = max(sizes, default=0)
    centre: dict[str, tuple[float, float]] = {}
    for column, layer in enumerate(layers):
        y = PAD + (height - sizes[column]) / 2
        for node in layer:
            centre[node] = (PAD + column * (NODE_W + GAP_X) + NODE_W / 2, y + tall(node) / 2)
            y += tall(node) + GAP_Y
    width = 2 * PAD + len(layers) * NODE_W + max(len(layers) - 1, 0) * GAP_X
    return centre, bends, width, 2 * PAD + height


def dag_svg(definition: Mapping[str, Any], steps: Mapping[str, Mapping[str, Any]] | None = None,
            *, link: Callable[[str], str] | None = None,
            extra_steps: Iterable[Mapping[str, Any]] | None = None) -> str:
    """A workflow's DAG as an `<svg>` element, layered left to right by depth.

    `definition` is a definition's JSON; `steps` a run's `steps` (as `run status --json`
    shows them), which adds status classes and details and the steps planners added;
    `extra_steps` are those added steps' definitions (from the run's step.expanded
    events), for their dependencies; `link(child_run_id)` gives the href of a child run.
    """
    steps = steps or {}
    graph = _graph(definition, steps, extra_steps or ())
    centre, bends, width, height = _layout(graph)
    marker = _svg_id("dag-arrow", graph.specs)
    name = _esc(definition.get("name") or "workflow")
    out = [f'<svg xmlns="{SVG_NS}" class="dag" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" style="--dag-w:{width}px" '
           f'font-family="{MONO}" role="img" '
           f'aria-label="{name}">',
           f'<defs><marker id="{marker}" viewBox="0 0 10 10" refX="8" refY="5" '
           'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
           '<path class="dag-arrow" d="M0,0 L10,5 L0,10 z" fill="#8c959f"/></marker></defs>',
           '<g class="dag-edges">']
    out += [_edge([centre[n] for n in (s, *chain, t)], kind, (s, t), marker)
            for (s, t, kind), chain in zip(graph.edges, bends, strict=True)]
    out.append('</g><g class="dag-nodes">')
    default = definition.get("default_retry")
    for node, spec in graph.specs.items():
        x, y = centre[node]
        out.append(_node(node, spec, steps.get(node) or {}, _retries(spec, default),
                         (x - NODE_W / 2, y - NODE_H / 2), link))
    out.append("</g></svg>")
    return "".join(out)


# --- the timeline ----------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    """One span of a run's timeline.

    `kind` is "queue" (queued until a worker took it), "run" (a handler ran), "wait" (it
    waited for a time, an event, a decision, a child run...) or "instances" (a map's
    instances, as one summary). `outcome` says how the span ended: "started", "completed",
    "failed", "waiting", "iterated", "planned", "resumed", "cancelled"; or, still open at
    `now`, "queued", "running" or "waiting". `label` names the row (`fetch · attempt 2`);
    `detail` says what a wait waits for, or sums up a map's instances.
    """

    step_id: str
    attempt: int
    kind: str
    start: datetime
    end: datetime
    outcome: str
    label: str
    detail: str = ""

    @property
    def seconds(self) -> float:
        """How long the span lasted."""
        return max((self.end - self.start).total_seconds(), 0.0)


OPEN_OUTCOMES = {"queue": "queued", "run": "running", "wait": "waiting",
                 "instances": "running"}
RUN_END_EVENTS = {"workflow.completed", "workflow.failed", "workflow.cancelled",
                  "workflow.compensated", "workflow.compensate_failed"}
INSTANCE_STATES = {"step.queued": "queued", "step.started": "running",
                   "step.completed": "completed", "step.failed": "failed"}


def _time(value: object) -> datetime | None:
    if isinstance(value, datetime):
        stamp = value
    elif isinstance(value, str):
        try:
            stamp = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def _wait_detail(waits: object) -> str:
    """What a step.waiting waits for, in a few words: `approval`, `event order.paid`."""
    if not isinstance(waits, Mapping):
        return "wait"
    kind = str(waits.get("kind") or "wait")
    more = {"event": waits.get("event"), "signal": waits.get("signal"),
            "child": str(waits.get("run_id") or "")[:8] or None,
            "map": f"{waits.get('items')} items" if waits.get("items") is not None else None
            }.get(kind)
    return f"{kind} {more}" if more else kind


@dataclass
class _Open:
    attempt: int
    kind: str
    start: datetime
    detail: str = ""


@dataclass
class _Instances:
    """A map's instances, folded into one summary."""

    start: datetime
    end: datetime
    states: dict[int, str] = field(default_factory=dict)
    closed: datetime | None = None

    def bar(self, step_id: str, now: datetime) -> Bar:
        counts: dict[str, int] = {}
        for state in self.states.values():
            counts[state] = counts.get(state, 0) + 1
        busy = counts.get("queued", 0) + counts.get("running", 0)
        outcome = ("cancelled" if self.closed else "running") if busy else \
            "failed" if counts.get("failed") else "completed"
        end = max(self.closed or now, self.end) if busy else self.end
        words = [f"{len(self.states)} items", f"{counts.get('completed', 0)} ok"]
        words += [f"{counts[s]} {s}" for s in ("failed", "running", "queued") if counts.get(s)]
        return Bar(step_id, 0, "instances", self.start, end, outcome,
                   f"{step_id} · instances", " · ".join(words))


class _Fold:
    """Events in, bars out: one open span per step at a time."""

    def __init__(self) -> None:
        self.bars: list[Bar] = []
        self.open: dict[str, _Open] = {}
        self.rows: dict[tuple[str, int], str] = {}
        self.maps: dict[str, _Instances] = {}

    def label(self, step_id: str, attempt: int) -> str:
        return self.rows.setdefault((step_id, attempt), f"{step_id} · attempt {attempt}")

    def begin(self, step_id: str, attempt: int, kind: str, at: datetime,
              detail: str = "") -> None:
        self.label(step_id, attempt)
        self.open[step_id] = _Open(attempt, kind, at, detail)

    def close(self, step_id: str, at: datetime, outcome: str) -> _Open | None:
        span = self.open.pop(step_id, None)
        if span is not None:
            self.bars.append(Bar(step_id, span.attempt, span.kind, span.start,
                                 max(at, span.start), outcome,
                                 self.label(step_id, span.attempt), span.detail))
        return span

    def ended(self, step_id: str, attempt: int, at: datetime, outcome: str,
              began: datetime | None) -> None:
        """A step.completed or step.failed: its open span ends. A quick step's run has
        not begun: it began at `began` (its started_at), else it is shown as an instant."""
        span = self.open.get(step_id)
        if span is None or span.kind == "queue":
            self.close(step_id, began or at, "started")
            self.begin(step_id, attempt, "run", began or at)
        self.close(step_id, at, outcome)
        if step_id in self.maps:
            self.maps[step_id].closed = at

    def instance(self, step_id: str, index: int, kind: str, at: datetime) -> None:
        span = self.maps.setdefault(step_id, _Instances(at, at))
        self.label(step_id, 0)  # its row comes where its first instance does
        span.start, span.end = min(span.start, at), max(span.end, at)
        span.states[index] = INSTANCE_STATES.get(kind, span.states.get(index, "queued"))

    def feed(self, event: Mapping[str, Any]) -> None:
        kind, step_id, at = event.get("type"), event.get("step_id"), _time(event.get("timestamp"))
        if at is None:
            return
        if kind in RUN_END_EVENTS:
            for open_id in list(self.open):
                self.close(open_id, at, "cancelled")
            for span in self.maps.values():
                span.closed = span.closed or at
            return
        if not isinstance(step_id, str) or not isinstance(kind, str):
            return
        if "[" in step_id:
            try:
                map_id, index = parse_instance_step_id(step_id)
            except ValueError:
                return
            self.instance(map_id, index, kind, at)
            return
        attempt = event.get("attempt") if isinstance(event.get("attempt"), int) else 0
        self.step_event(kind, step_id, int(attempt or 0), at, event.get("data") or {})

    def step_event(self, kind: str, step_id: str, attempt: int, at: datetime,
                   data: Mapping[str, Any]) -> None:
        if kind == "step.queued":
            self.close(step_id, at, "cancelled")
            loop = data.get("loop")
            if isinstance(loop, Mapping) and loop.get("iteration") is not None:
                self.rows[(step_id, attempt)] = f"{step_id} · iteration {loop['iteration']}"
            self.begin(step_id, attempt, "queue", at)
        elif kind == "step.started":
            span = self.open.get(step_id)
            self.close(step_id, at, "resumed" if span and span.kind == "wait" else "started")
            self.begin(step_id, attempt, "run", at)
        elif kind in ("step.completed", "step.failed"):
            self.ended(step_id, attempt, at, kind.removeprefix("step."),
                       _time(data.get("started_at")))
        elif kind in ("step.waiting", "step.planned"):
            span = self.close(step_id, at, kind.removeprefix("step."))
            waits = {"kind": "plan"} if kind == "step.planned" else data.get("waiting_for")
            self.begin(step_id, span.attempt if span else attempt, "wait", at,
                       _wait_detail(waits))
        elif kind == "step.iterated":
            self.close(step_id, at, "iterated")

    def finish(self, now: datetime) -> list[Bar]:
        for step_id, span in list(self.open.items()):
            self.close(step_id, max(now, span.start), OPEN_OUTCOMES[span.kind])
        self.bars += [span.bar(step_id, now) for step_id, span in self.maps.items()]
        order = {key: index for index, key in enumerate(self.rows)}
        return sorted(self.bars, key=lambda bar: (order.get((bar.step_id, bar.attempt), 0),
                                                  bar.start))


def timeline(events: Iterable[Mapping[str, Any]], now: datetime | None = None) -> list[Bar]:
    """A run's events (as `run events --json` prints them) as timeline bars.

    One row per step attempt (an agent_loop's: per iteration), its bars the time queued,
    the time run and the time waited; a map's instances as one summary row. Spans still
    open end at `now` (default: the current time).
    """
    fold = _Fold()
    for event in sorted(events, key=lambda e: e.get("seq") or 0):
        fold.feed(event)
    return fold.finish(_time(now) or datetime.now(UTC))


# --- drawing the timeline --------------------------------------------------------------

ROW_H, BAR_H, AXIS_H = 22, 12, 26
TICKS_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120,
           300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400, 172800, 604800)


def short_duration(seconds: float) -> str:
    """A duration in a few characters: 12ms, 1.2s, 3m05s, 2h10m, 3d4h."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}".removesuffix(".0") + "s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    return f"{hours // 24}d{hours % 24}h"


def _bar_text(bar: Bar) -> str:
    took = short_duration(bar.seconds)
    if bar.kind == "queue":
        return f"queued {took}" + (" (cancelled)" if bar.outcome == "cancelled" else "")
    if bar.kind == "instances":
        return f"{bar.detail} · {took}"
    if bar.kind == "wait":
        verb = "waiting for" if bar.outcome == "waiting" else "waited for"
        return f"{verb} {bar.detail} {took}"
    verb = {"failed": "failed after", "running": "running", "cancelled": "cancelled after",
            "iterated": "iterated in", "planned": "planned in"}.get(bar.outcome, "ran")
    return f"{verb} {took}"


def _axis(start: datetime, span: float, x0: float, scale: float, height: float) -> list[str]:
    step = next((s for s in TICKS_S if span / s <= 6), TICKS_S[-1])
    out = []
    for n in range(int(span / step) + 1):
        x = x0 + n * step * scale
        out.append(f'<line class="tl-grid" x1="{x:.1f}" y1="{AXIS_H - 6}" x2="{x:.1f}" '
                   f'y2="{height:g}" stroke="#8c959f" stroke-opacity="0.3"/>'
                   f'<text class="tl-tick" x="{x:.1f}" y="{AXIS_H - 10}" font-size="10" '
                   f'text-anchor="middle" fill="currentColor">'
                   f"{'0' if n == 0 else '+' + short_duration(n * step)}</text>")
    return out


def _row(bars: list[Bar], y: float, place: Callable[[datetime], float],
         box: tuple[float, float], hatch: str, label_chars: int) -> str:
    """One row: its label, its bars, and their durations as text after the last bar (or
    before the first when there is no room after it; `box` is the track's left and right)."""
    first = bars[0]
    tip = "\n".join([first.label, *(f"{b.kind} {b.outcome}: {b.start.isoformat()} → "
                                    f"{b.end.isoformat()} ({_bar_text(b)})" for b in bars)])
    out = [f'<g class="tl-row" data-step="{_esc(first.step_id)}" '
           f'data-attempt="{first.attempt}"><title>{_esc(tip)}</title>'
           f'<text class="tl-label" x="8" y="{y + 15:g}" font-size="12" fill="currentColor">'
           f"{_esc(_clip(first.label, label_chars))}</text>"]
    for bar in bars:
        x1, x2 = place(bar.start), place(bar.end)
        shape = (f'x="{x1:.1f}" y="{y + 5:g}" width="{max(x2 - x1, 2):.1f}" '
                 f'height="{BAR_H}" rx="2"')
        out.append(f'<rect class="tl-bar tl-{bar.kind} o-{_token(bar.outcome)}" {shape} '
                   'fill="#8c959f"/>')
        if bar.kind == "wait":
            out.append(f'<rect class="tl-hatched" {shape} fill="url(#{hatch})"/>')
    text = " · ".join(_bar_text(bar) for bar in bars)
    left, right = place(bars[0].start), max(place(bars[-1].end), place(bars[0].start) + 2)
    room = len(text) * 6.6
    if right + 6 + room <= box[1]:
        x, anchor = right + 6, "start"
    elif left - 6 - room >= box[0]:
        x, anchor = left - 6, "end"
    else:  # no room beside the bars: over them, inside the longest if the text fits in it
        longest = max(bars, key=lambda bar: bar.seconds)
        inside = place(longest.start) + 6 + room
        x = inside if inside <= min(place(longest.end) - 4, box[1]) else box[1]
        anchor = "end"
        out.append(f'<rect class="tl-dur-bg" x="{x - room - 3:.1f}" y="{y + 4:g}" '
                   f'width="{room + 6:.1f}" height="14" rx="2" fill="#ffffff" '
                   'fill-opacity="0.85"/>')
    out.append(f'<text class="tl-dur" x="{x:.1f}" y="{y + 15:g}" font-size="11" '
               f'text-anchor="{anchor}" fill="currentColor">{_esc(text)}</text></g>')
    return "".join(out)


def timeline_svg(bars: list[Bar], *, width: int = 960, label_width: int = 220,
                 max_rows: int = 200) -> str:
    """Timeline bars as an `<svg>` waterfall: a time axis, then one row per step attempt
    (its label on the left, its bars, and their durations as text); past `max_rows` rows,
    a last line says how many were left out."""
    rows: dict[tuple[str, int], list[Bar]] = {}
    for bar in bars:
        rows.setdefault((bar.step_id, bar.attempt), []).append(bar)
    shown = list(rows.values())[:max_rows]
    left_out = len(rows) - len(shown)
    height = AXIS_H + len(shown) * ROW_H + (ROW_H if left_out or not shown else 0) + 8
    hatch = _svg_id("tl-hatch", (f"{k[0]}#{k[1]}" for k in rows))
    out = [f'<svg xmlns="{SVG_NS}" class="tl" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="{MONO}" role="img" '
           'aria-label="run timeline">'
           f'<defs><pattern id="{hatch}" width="6" height="6" patternUnits="userSpaceOnUse" '
           'patternTransform="rotate(45)"><rect class="tl-hatch" width="2.5" height="6" '
           'fill="#8c959f"/></pattern></defs>']
    if shown:
        start = min(bar.start for row in shown for bar in row)
        end = max(bar.end for row in shown for bar in row)
        span = max((end - start).total_seconds(), 0.001)
        x0 = label_width + 8
        scale = (width - x0 - 12) / span

        def place(at: datetime) -> float:
            return x0 + (at - start).total_seconds() * scale

        out += _axis(start, span, x0, scale, height - 8)
        label_chars = int((label_width - 12) / 7.2)
        out += [_row(row, AXIS_H + index * ROW_H, place, (x0, width - 4), hatch, label_chars)
                for index, row in enumerate(shown)]
    note = (f"{left_out} more rows left out" if left_out else
            "" if shown else "nothing has run yet")
    if note:
        out.append(f'<text class="tl-note" x="8" y="{height - 12}" font-size="11" '
                   f'fill="currentColor">{_esc(note)}</text>')
    out.append("</svg>")
    return "".join(out)


# --- styles ----------------------------------------------------------------------------

_COLOURS = """
.dag, .tl {
  --dag-fg: #1f2328; --dag-muted: #59636e; --dag-bg: #ffffff; --dag-line: #8c959f;
  --dag-ok: #1a7f37; --dag-ok-bg: #dafbe1; --dag-run: #0969da; --dag-run-bg: #ddf4ff;
  --dag-wait: #9a6700; --dag-wait-bg: #fff8c5; --dag-fail: #cf222e; --dag-fail-bg: #ffebe9;
  --dag-off: #8c959f; --dag-off-bg: #f6f8fa;
  --dag-mono: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  color: var(--dag-fg);
}
@media (prefers-color-scheme: dark) {
  .dag, .tl {
    --dag-fg: #e6edf3; --dag-muted: #9198a1; --dag-bg: #151b23; --dag-line: #656c76;
    --dag-ok: #3fb950; --dag-ok-bg: #12261e; --dag-run: #4493f8; --dag-run-bg: #121d2f;
    --dag-wait: #d29922; --dag-wait-bg: #272115; --dag-fail: #f85149; --dag-fail-bg: #2d1517;
    --dag-off: #656c76; --dag-off-bg: #1b2028;
  }
}
"""

TIMELINE_CSS = _COLOURS + """
.tl text { font-family: var(--dag-mono); }
.tl-label, .tl-dur { fill: var(--dag-fg); }
.tl-dur { fill: var(--dag-muted); paint-order: stroke; stroke: var(--dag-bg);
  stroke-width: 3px; stroke-linejoin: round; }
.tl-tick, .tl-note { fill: var(--dag-muted); }
.tl-dur-bg { fill: var(--dag-bg); fill-opacity: .85; }
.tl-grid { stroke: var(--dag-line); stroke-opacity: .25; }
.tl-bar { fill: var(--dag-ok); }
.tl-queue { fill: var(--dag-line); fill-opacity: .45; }
.tl-run.o-failed, .tl-instances.o-failed { fill: var(--dag-fail); }
.tl-run.o-running, .tl-instances.o-running { fill: var(--dag-run);
  animation: dag-pulse 1.6s ease-in-out infinite; }
.tl-run.o-cancelled, .tl-instances.o-cancelled, .tl-queue.o-cancelled { fill: var(--dag-off); }
.tl-run.o-iterated, .tl-run.o-planned, .tl-run.o-waiting { fill: var(--dag-run); }
.tl-wait { fill: var(--dag-wait-bg); stroke: var(--dag-wait); stroke-width: 1; }
.tl-wait.o-failed { stroke: var(--dag-fail); }
.tl-hatch { fill: var(--dag-wait); fill-opacity: .55; }
.tl-hatched { pointer-events: none; }
.tl-row:hover .tl-label { font-weight: 600; }
"""

DAG_CSS = TIMELINE_CSS + """
.dag text { font-family: var(--dag-mono); }
.dag { max-width: 100%; min-width: calc(var(--dag-w) * .8); height: auto; }
.dag-box { fill: var(--dag-bg); stroke: var(--dag-line); stroke-width: 1.25; }
.dag-id { fill: var(--dag-fg); }
.dag-kind, .dag-meta, .dag-retry, .dag-child { fill: var(--dag-muted); }
.dag-link .dag-child { fill: var(--dag-run); text-decoration: underline; }
.dag-track { fill: var(--dag-line); fill-opacity: .3; }
.dag-progress { fill: var(--dag-run); }
.dag-edge { fill: none; stroke: var(--dag-line); stroke-width: 1.4; }
.dag-edge-plan { stroke-dasharray: 5 4; }
.dag-edge-aux { stroke: var(--dag-fail); stroke-opacity: .6; stroke-dasharray: 2 4; }
.dag-arrow { fill: var(--dag-line); }
.dag-node:hover .dag-box { stroke-width: 2.5; }
.st-pending .dag-box { stroke-dasharray: 4 3; }
.st-completed .dag-box { fill: var(--dag-ok-bg); stroke: var(--dag-ok); }
.st-completed .dag-progress { fill: var(--dag-ok); }
.st-recovered .dag-box { fill: var(--dag-ok-bg); stroke: var(--dag-wait); }
.st-queued .dag-box { fill: var(--dag-run-bg); stroke: var(--dag-run); stroke-dasharray: 4 3; }
.st-running .dag-box { fill: var(--dag-run-bg); stroke: var(--dag-run); stroke-width: 2;
  animation: dag-pulse 1.6s ease-in-out infinite; }
.st-waiting .dag-box { fill: var(--dag-wait-bg); stroke: var(--dag-wait); }
.st-failed .dag-box { fill: var(--dag-fail-bg); stroke: var(--dag-fail); stroke-width: 2; }
.st-failed .dag-progress { fill: var(--dag-fail); }
.st-skipped .dag-box, .st-cancelled .dag-box { fill: var(--dag-off-bg); stroke: var(--dag-off); }
.st-skipped, .st-cancelled { opacity: .7; }
@keyframes dag-pulse { 50% { stroke-opacity: .35; fill-opacity: .6; } }
@media (prefers-reduced-motion: reduce) {
  .st-running .dag-box, .tl-run.o-running, .tl-instances.o-running { animation: none; }
}
"""
"""The CSS for both drawings (it includes TIMELINE_CSS): put it once in the page."""
