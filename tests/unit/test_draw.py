"""The console's drawings (`dagnats.http.draw`): DAG layout and node content, and the
timeline folded from a run's events; every drawing is parsed as XML."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any

from dagnats.http.draw import DAG_CSS, TIMELINE_CSS, Bar, dag_svg, timeline, timeline_svg

NS = "{http://www.w3.org/2000/svg}"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def definition(steps: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"name": "wf", "version": "1", "steps": steps, **extra}


def nodes(svg: str) -> dict[str, ET.Element]:
    """The node groups of a DAG drawing by step id (asserting each id has one)."""
    found = [g for g in ET.fromstring(svg).iter(f"{NS}g")
             if "dag-node" in g.get("class", "").split()]
    by_id = {g.get("data-step", ""): g for g in found}
    assert len(by_id) == len(found)
    return by_id


def edges(svg: str, kind: str = "dag-edge") -> list[ET.Element]:
    return [p for p in ET.fromstring(svg).iter(f"{NS}path") if p.get("class") == kind]


def box(node: ET.Element) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) of a node's rectangle."""
    match = re.fullmatch(r"translate\(([-\d.]+),([-\d.]+)\)", node.get("transform", ""))
    assert match
    rect = node.find(f"{NS}rect")
    assert rect is not None
    x, y = float(match[1]), float(match[2])
    return x, y, x + float(rect.get("width", 0)), y + float(rect.get("height", 0))


def texts(node: ET.Element) -> list[str]:
    return ["".join(t.itertext()) for t in node.iter(f"{NS}text")]


def grid(layers: int = 6, width: int = 5) -> dict[str, Any]:
    """`layers` x `width` steps, each depending on two of the layer before."""
    steps = []
    for layer in range(layers):
        for i in range(width):
            deps = [f"s{layer - 1}-{j}" for j in sorted({i, (i + 2) % width})] if layer else []
            steps.append({"id": f"s{layer}-{i}", "task": "work", "depends_on": deps})
    return definition(steps)


def test_every_step_has_one_node_with_its_status():
    wf = definition([{"id": "a", "task": "x"}, {"id": "b", "task": "y", "depends_on": ["a"]},
                     {"id": "c", "type": "approval", "depends_on": ["a"]}])
    drawn = nodes(dag_svg(wf, {"a": {"status": "completed"}, "b": {"status": "running"},
                               "c": {"status": "waiting"}}))
    assert set(drawn) == {"a", "b", "c"}
    assert drawn["a"].get("class") == "dag-node kind-task st-completed"
    assert drawn["b"].get("data-status") == "running"
    assert "kind-approval" in drawn["c"].get("class", "")
    assert "st-waiting" in drawn["c"].get("class", "")
    assert all(n.get("data-status") is None for n in nodes(dag_svg(wf)).values())


def test_one_edge_per_dependency():
    wf = grid()
    svg = dag_svg(wf)
    drawn = edges(svg)
    assert len(drawn) == sum(len(s["depends_on"]) for s in wf["steps"])
    pairs = {(p.get("data-from"), p.get("data-to")) for p in drawn}
    assert ("s0-0", "s1-0") in pairs and ("s0-2", "s1-0") in pairs
    assert all(p.get("marker-end", "").startswith("url(#dag-arrow-") for p in drawn)


def test_x_grows_with_depth():
    wf = definition([{"id": "a", "task": "x"}, {"id": "b", "task": "x", "depends_on": ["a"]},
                     {"id": "c", "task": "x", "depends_on": ["a", "b"]},
                     {"id": "d", "task": "x"}])
    drawn = {step: box(node)[0] for step, node in nodes(dag_svg(wf)).items()}
    assert drawn["a"] == drawn["d"] < drawn["b"] < drawn["c"]


def overlapping(boxes: list[tuple[float, float, float, float]]) -> list[Any]:
    return [(one, two) for i, one in enumerate(boxes) for two in boxes[i + 1:]
            if one[0] < two[2] and two[0] < one[2] and one[1] < two[3] and two[1] < one[3]]


def test_thirty_steps_never_overlap_and_fit_the_view():
    chain = definition([{"id": f"step-{i}", "task": "t",
                         "depends_on": [f"step-{i - 1}"] if i else []} for i in range(30)])
    for wf in (grid(), chain):
        svg = dag_svg(wf)
        root = ET.fromstring(svg)
        boxes = [box(node) for node in nodes(svg).values()]
        assert len(boxes) == 30
        assert overlapping(boxes) == []
        width, height = float(root.get("width", 0)), float(root.get("height", 0))
        assert root.get("viewBox") == f"0 0 {width:g} {height:g}"
        assert all(0 <= b[0] and b[2] <= width and 0 <= b[1] and b[3] <= height for b in boxes)


def test_an_edge_across_layers_bends_around_the_nodes_between():
    wf = definition([{"id": "a", "task": "x"}, {"id": "b", "task": "x", "depends_on": ["a"]},
                     {"id": "c", "task": "x", "depends_on": ["a", "b"]}])
    svg = dag_svg(wf)
    long = next(p for p in edges(svg) if p.get("data-to") == "c" and p.get("data-from") == "a")
    b_box = box(nodes(svg)["b"])
    straight = re.findall(r"L([-\d.]+),([-\d.]+)", long.get("d", ""))
    assert len(straight) == 1  # its run across b's layer...
    assert not b_box[1] <= float(straight[0][1]) <= b_box[3]  # ...passes beside b


def test_long_ids_are_cut_with_the_full_id_in_the_tooltip():
    long_id = "resize-every-thumbnail-in-the-bucket"
    node = nodes(dag_svg(definition([{"id": long_id, "task": "resize"}])))[long_id]
    shown = texts(node)[0]
    assert shown.endswith("…") and long_id.startswith(shown[:-1]) and len(shown) <= 21
    title = node.find(f"{NS}title")
    assert title is not None and (title.text or "").splitlines()[0] == long_id


def test_user_text_is_escaped():
    evil = "<script>alert(1)</script>"
    wf = definition([{"id": "a", "task": "x", "description": evil}])
    svg = dag_svg(wf, {"a": {"status": "failed\"><script>", "error": evil},
                       f"x{evil}": {"status": "pending"}})
    assert "<script>" not in svg
    drawn = nodes(svg)
    assert f"x{evil}" in drawn
    title = drawn["a"].find(f"{NS}title")
    assert title is not None and f"error: {evil}" in (title.text or "")
    assert drawn["a"].get("class") == "dag-node kind-task st-failedscript"


def test_node_lines_show_kind_retries_and_run_details():
    wf = definition([
        {"id": "list", "task": "ls"},
        {"id": "each", "type": "map", "task": "thumbnail", "depends_on": ["list"]},
        {"id": "nap", "type": "sleep", "config": {"duration": "5m"}, "depends_on": ["each"]},
        {"id": "child", "type": "sub_workflow", "config": {"workflow": "billing"},
         "retry": {"max_attempts": 5}, "depends_on": ["nap"]},
    ], default_retry={"max_attempts": 3})
    run = {"list": {"status": "completed", "attempts": 2},
           "each": {"status": "waiting", "attempts": 1, "waiting_for": {"kind": "map"},
                    "instances": {"total": 100, "counts": {"completed": 37, "failed": 2}}},
           "nap": {"status": "waiting", "waiting_for": {"kind": "time"}},
           "child": {"status": "running", "child_run_id": "0123456789abcdef"}}
    svg = dag_svg(wf, run, link=lambda run_id: f"/runs/{run_id}?a=1&b=2")
    assert 'href="/runs/0123456789abcdef?a=1&amp;b=2"' in svg
    drawn = nodes(svg)
    assert texts(drawn["list"]) == ["list", "task · ls", "↻3", "attempt 2"]
    assert texts(drawn["each"])[1:] == ["map · thumbnail", "↻3", "37/100 · 2 failed"]
    bar = next(r for r in drawn["each"].iter(f"{NS}rect") if r.get("class") == "dag-progress")
    assert float(bar.get("width", 0)) == 160 * 0.37
    assert texts(drawn["nap"])[1:] == ["sleep 5m", "waits: time"]
    assert texts(drawn["child"]) == ["child", "sub_workflow · bil…", "↻5", "↗ 01234567"]
    assert "↗ 01234567" in texts(nodes(dag_svg(wf, run))["child"])  # no link: plain text


def test_planner_added_steps_are_drawn_after_their_planner():
    wf = definition([{"id": "plan", "type": "planner", "task": "think"},
                     {"id": "after", "task": "sum", "depends_on": ["plan"]}])
    run = {"plan": {"status": "waiting"}, "plan.fetch": {"status": "completed"},
           "plan.parse": {"status": "running", "task": "parse"}, "after": {"status": "pending"}}
    svg = dag_svg(wf, run)
    drawn = nodes(svg)
    assert set(drawn) == {"plan", "after", "plan.fetch", "plan.parse"}
    assert "kind-added" in drawn["plan.parse"].get("class", "")
    assert texts(drawn["plan.parse"])[1] == "task · parse"
    assert {p.get("data-to") for p in edges(svg, "dag-edge dag-edge-plan")} == {
        "plan.fetch", "plan.parse"}
    assert box(drawn["plan"])[0] < box(drawn["plan.fetch"])[0] == box(drawn["plan.parse"])[0]

    extra = [{"id": "plan.fetch", "task": "get"},
             {"id": "plan.parse", "task": "parse", "depends_on": ["plan.fetch"]}]
    svg = dag_svg(wf, run, extra_steps=extra)
    drawn = nodes(svg)
    assert [p.get("data-to") for p in edges(svg, "dag-edge dag-edge-plan")] == ["plan.fetch"]
    assert ("plan.fetch", "plan.parse") in {(p.get("data-from"), p.get("data-to"))
                                            for p in edges(svg)}
    xs = [box(drawn[step])[0] for step in ("plan", "plan.fetch", "plan.parse", "after")]
    assert xs == sorted(xs) and len(set(xs)) == 4  # its dependents come after its plan


def test_css_has_status_classes_and_a_dark_scheme():
    for needed in (".st-completed", ".st-running", ".st-waiting", ".st-failed", ".st-skipped",
                   ".dag-edge", "prefers-color-scheme: dark"):
        assert needed in DAG_CSS
    assert TIMELINE_CSS in DAG_CSS and ".tl-wait" in TIMELINE_CSS


# --- the timeline ----------------------------------------------------------------------


def event(type_: str, step_id: str | None, attempt: int, seconds: float,
          **data: Any) -> dict[str, Any]:
    return {"seq": 0, "type": type_, "run_id": "r1", "step_id": step_id, "attempt": attempt,
            "timestamp": (T0 + timedelta(seconds=seconds)).isoformat(), "data": data}


def numbered(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**e, "seq": seq} for seq, e in enumerate(events, 1)]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_a_retried_step_gives_a_row_per_attempt_with_queue_time_apart():
    bars = timeline(numbered([
        event("workflow.started", None, 0, 0),
        event("step.queued", "fetch", 1, 0.1), event("step.started", "fetch", 1, 0.3),
        event("step.failed", "fetch", 1, 1.0, error="boom"),
        event("step.queued", "fetch", 2, 2.0), event("step.started", "fetch", 2, 2.5),
        event("step.completed", "fetch", 2, 4.0),
        event("workflow.completed", None, 0, 4.1),
    ]), now=at(60))
    assert [(b.attempt, b.kind, b.outcome, b.start, b.end) for b in bars] == [
        (1, "queue", "started", at(0.1), at(0.3)), (1, "run", "failed", at(0.3), at(1.0)),
        (2, "queue", "started", at(2.0), at(2.5)), (2, "run", "completed", at(2.5), at(4.0))]
    assert bars[2].label == "fetch · attempt 2"


def test_a_quick_step_begins_its_run_at_started_at():
    bars = timeline([event("step.queued", "q", 1, 0),
                     event("step.completed", "q", 1, 2, started_at=at(1.5).isoformat())],
                    now=at(9))
    assert [(b.kind, b.start, b.end, b.outcome) for b in bars] == [
        ("queue", at(0), at(1.5), "started"), ("run", at(1.5), at(2), "completed")]


def test_an_outcome_without_a_start_is_an_instant_run():
    bars = timeline([event("step.queued", "q", 1, 0), event("step.failed", "q", 1, 2)],
                    now=at(9))
    assert [(b.kind, b.start, b.end, b.outcome) for b in bars] == [
        ("queue", at(0), at(2), "started"), ("run", at(2), at(2), "failed")]


def test_a_waiting_approval_is_a_wait_bar_open_until_now():
    bars = timeline([event("step.waiting", "approve", 1, 5,
                           waiting_for={"kind": "approval", "approvers": ["ann"]})],
                    now=at(65))
    assert bars == [Bar("approve", 1, "wait", at(5), at(65), "waiting",
                        "approve · attempt 1", "approval")]


def test_a_handler_that_waits_then_resumes():
    bars = timeline(numbered([
        event("step.queued", "h", 1, 0), event("step.started", "h", 1, 1),
        event("step.waiting", "h", 1, 2, waiting_for={"kind": "signal", "signal": "go"}),
        event("step.started", "h", 1, 8), event("step.completed", "h", 1, 9)]), now=at(20))
    assert [(b.kind, b.outcome, b.detail) for b in bars] == [
        ("queue", "started", ""), ("run", "waiting", ""), ("wait", "resumed", "signal go"),
        ("run", "completed", "")]
    assert {b.attempt for b in bars} == {1}


def test_open_bars_end_at_now_and_a_cancelled_run_ends_them():
    events = [event("step.queued", "a", 1, 0), event("step.started", "a", 1, 1),
              event("step.queued", "b", 1, 1)]
    bars = timeline(numbered(events), now=at(30))
    assert [(b.step_id, b.kind, b.end, b.outcome) for b in bars] == [
        ("a", "queue", at(1), "started"), ("a", "run", at(30), "running"),
        ("b", "queue", at(30), "queued")]
    bars = timeline(numbered([*events, event("workflow.cancelled", None, 0, 4)]), now=at(30))
    assert [(b.end, b.outcome) for b in bars[1:]] == [(at(4), "cancelled")] * 2


def test_agent_loop_iterations_get_a_row_each():
    bars = timeline(numbered([
        event("step.queued", "agent", 1, 0, loop={"iteration": 1}),
        event("step.started", "agent", 1, 0.5), event("step.iterated", "agent", 1, 2),
        event("step.queued", "agent", 2, 2.1, loop={"iteration": 2}),
        event("step.started", "agent", 2, 2.2), event("step.completed", "agent", 2, 3)]),
        now=at(9))
    assert [(b.label, b.kind, b.outcome) for b in bars] == [
        ("agent · iteration 1", "queue", "started"), ("agent · iteration 1", "run", "iterated"),
        ("agent · iteration 2", "queue", "started"), ("agent · iteration 2", "run", "completed")]


def map_events(count: int, open_ones: int = 0) -> list[dict[str, Any]]:
    events = [event("step.queued", "list", 1, 0), event("step.started", "list", 1, 0.25),
              event("step.completed", "list", 1, 1),
              event("step.waiting", "each", 1, 1, waiting_for={"kind": "map", "items": count})]
    for i in range(count):
        events.append(event("step.queued", f"each[{i}]", 1, 1 + i / 1000))
        if i >= open_ones:
            events.append(event("step.completed", f"each[{i}]", 1, 2 + i / 100))
    if not open_ones:
        events.append(event("step.completed", "each", 1, 2 + count / 100))
    return numbered(events)


def test_a_maps_instances_are_one_summary_row():
    bars = timeline(map_events(1000), now=at(100))
    assert not any("[" in b.step_id for b in bars)
    summary = [b for b in bars if b.kind == "instances"]
    assert summary == [Bar("each", 0, "instances", at(1), at(2 + 999 / 100), "completed",
                           "each · instances", "1000 items · 1000 ok")]
    assert [b.kind for b in bars if b.step_id == "each"] == ["wait", "instances"]
    still = [b for b in timeline(map_events(10, open_ones=3), now=at(100))
             if b.kind == "instances"]
    assert (still[0].end, still[0].outcome) == (at(100), "running")
    assert still[0].detail == "10 items · 7 ok · 3 queued"


def test_timeline_svg_draws_a_row_per_attempt():
    approve = event("step.waiting", "approve", 1, 3, waiting_for={"kind": "approval"})
    bars = timeline(numbered([*map_events(50), approve]), now=at(10))
    svg = timeline_svg(bars)
    rows = [g for g in ET.fromstring(svg).iter(f"{NS}g") if g.get("class") == "tl-row"]
    assert [(r.get("data-step"), r.get("data-attempt")) for r in rows] == [
        ("list", "1"), ("each", "1"), ("each", "0"), ("approve", "1")]
    assert texts(rows[0]) == ["list · attempt 1", "queued 250ms · ran 750ms"]
    wait = rows[3].findall(f"{NS}rect")
    assert [r.get("class") for r in wait] == ["tl-bar tl-wait o-waiting", "tl-hatched"]
    assert texts(rows[3])[1] == "waiting for approval 7s"
    ticks = [t.text for t in ET.fromstring(svg).iter(f"{NS}text")
             if t.get("class") == "tl-tick"]
    assert ticks[0] == "0" and len(ticks) >= 3


def test_timeline_svg_caps_rows_and_says_how_many_were_left_out():
    bars = [Bar(f"s{i}", 1, "run", at(i), at(i + 1), "completed", f"s{i} · attempt 1")
            for i in range(250)]
    root = ET.fromstring(timeline_svg(bars, max_rows=200))
    assert sum(g.get("class") == "tl-row" for g in root.iter(f"{NS}g")) == 200
    notes = [t.text for t in root.iter(f"{NS}text") if t.get("class") == "tl-note"]
    assert notes == ["50 more rows left out"]
    empty = ET.fromstring(timeline_svg([]))
    assert [t.text for t in empty.iter(f"{NS}text")] == ["nothing has run yet"]
