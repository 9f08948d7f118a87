"""The web console in a real browser, against one real `serve` with three example workers:
starting the tutorial's run from its workflow page, a run's page updating live as an event is
published and a step approved on it, replaying a dead letter, the runs list updating live,
and the screenshots in docs/console/ (made here, from the same pages, when
DAGNATS_SCREENSHOTS=docs: `DAGNATS_SCREENSHOTS=docs bin/test tests/browser`)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.harness import ROOT, Serve, free_port, wait_until
from tests.e2e.http_calls import call, sse

EXAMPLES = ROOT / "examples"
WORKERS = [EXAMPLES / "order-approval" / "worker.py", EXAMPLES / "flaky-worker" / "worker.py",
           EXAMPLES / "hello-pipeline" / "worker.py"]
DEFINITIONS = [EXAMPLES / "hello-pipeline" / "pipeline.json",
               EXAMPLES / "order-approval" / "workflow.json",
               EXAMPLES / "flaky-worker" / "labels.json"]
SHOTS = ROOT / "docs" / "console"
SCREENSHOTS_ENV = "DAGNATS_SCREENSHOTS"

# A 30-step workflow to draw (never run): 6 layers of 5, fanning out and in, every kind.
LAYERS = [
    ["intake-web", "intake-mobile", "intake-partner-api", "intake-email", "intake-batch-nightly"],
    ["parse-web", "parse-mobile", "wait-partner-ack", "parse-email", "hold-batch-window"],
    ["dedupe-customers", "score-fraud-risk", "enrich-with-crm-and-loyalty-data",
     "geocode", "price-quotes"],
    ["resize-images", "manual-fraud-review", "reserve-stock", "route-couriers", "tax"],
    ["charge-cards", "notify-warehouse", "cool-down", "print-labels", "ledger"],
    ["ship", "email-receipts", "sign-off-finance", "archive", "report-daily"],
]
KINDS: dict[str, dict[str, Any]] = {
    "wait-partner-ack": {"type": "wait_for_event",
                         "config": {"event": "partner.ack", "timeout": "1h"}},
    "hold-batch-window": {"type": "sleep", "config": {"duration": "5m"}},
    "cool-down": {"type": "sleep", "config": {"duration": "30s"}},
    "manual-fraud-review": {"type": "approval", "config": {"approvers": ["risk"]}},
    "sign-off-finance": {"type": "approval", "config": {"timeout": "24h"}},
    "resize-images": {"type": "map", "task": "resize", "config": {"concurrency": 8}},
    "print-labels": {"type": "map", "task": "print-label", "config": {"fail_fast": False}},
}
SINGLE_DEP_KINDS = {"map", "sleep", "wait_for_event"}


def big_workflow() -> dict[str, Any]:
    """The 30-step definition: each step after the first layer depends on the step above it,
    and every other one also on its neighbour's (a map on one step only)."""
    steps: list[dict[str, Any]] = []
    for depth, layer in enumerate(LAYERS):
        for index, step_id in enumerate(layer):
            step: dict[str, Any] = {"id": step_id, "task": step_id}
            step.update(KINDS.get(step_id, {}))
            if step.get("type") in ("sleep", "wait_for_event", "approval"):
                del step["task"]
            if depth:
                above = LAYERS[depth - 1]
                deps = [above[index]]
                if (depth + index) % 2 == 0 and step.get("type") not in SINGLE_DEP_KINDS:
                    deps.append(above[(index + 2) % len(above)])
                step["depends_on"] = deps
            if index % 3 == 0 and step.get("type") in (None, "map"):
                step["retry"] = {"max_attempts": 2 + depth, "strategy": "exponential",
                                 "initial_delay": "1s"}
            steps.append(step)
    return {"name": "order-fulfilment", "version": "3",
            "description": "Orders from five channels, checked, paid, shipped and reported.",
            "steps": steps}


@pytest.fixture(scope="module")
def printer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The flaky worker's printer: online while this file exists (absent at first)."""
    return tmp_path_factory.mktemp("printer") / "online"


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory, printer: Path) -> Iterator[str]:
    """One serve for the module: the three example workers, the console on a free port, and
    the examples' workflows (and the 30-step one) registered. Yields the console's URL."""
    port = free_port()
    serve = Serve(tmp_path_factory.mktemp("console") / "data", WORKERS,
                  env={"FLAKY_PRINTER_FILE": str(printer)}, args=["--http-port", str(port)])
    try:
        serve.wait_for_output("Press Ctrl-C to stop")
        base = f"http://127.0.0.1:{port}"
        for definition in [*(json.loads(p.read_text()) for p in DEFINITIONS), big_workflow()]:
            reply = call("POST", f"{base}/api/v1/workflows", definition)
            assert reply.status == 201, reply.raw
        wait_until(lambda: len(call("GET", f"{base}/api/v1/workers").json) >= len(WORKERS),
                   30, "the three workers to be live")
        yield base
    finally:
        procs = serve.tree() if serve.proc.poll() is None else []
        try:
            serve.stop()
        except subprocess.TimeoutExpired:  # leave nothing behind
            for proc in procs:
                with contextlib.suppress(psutil.NoSuchProcess):
                    proc.kill()


def start(console: str, workflow: str, value: Any) -> str:
    """A run started over the API; its id."""
    reply = call("POST", f"{console}/api/v1/runs", {"workflow": workflow, "input": value})
    assert reply.status == 201, reply.raw
    return str(reply.json["run_id"])


def ended(console: str, run_id: str) -> dict[str, Any]:
    """The run once it has ended (following its events until the stream ends)."""
    sse(f"{console}/api/v1/runs/{run_id}/events?follow=true")
    return dict(call("GET", f"{console}/api/v1/runs/{run_id}").json)


def step_status(console: str, run_id: str, step_id: str) -> str:
    return str(call("GET", f"{console}/api/v1/runs/{run_id}").json["steps"][step_id]["status"])


def node(page: Page, step_id: str) -> Any:
    """A step's node on the page's drawn DAG."""
    return page.locator(f'svg.dag g.dag-node[data-step="{step_id}"]')


def mark(page: Page) -> None:
    """Leave a marker on the window: still there later means the page was never reloaded."""
    page.evaluate("window.__stayed = 'here'")


def stayed(page: Page) -> bool:
    return bool(page.evaluate("window.__stayed === 'here'"))


def shot(page: Page, name: str) -> None:
    """A full-page screenshot: into docs/console/ when DAGNATS_SCREENSHOTS=docs (how the
    docs' pictures are remade), else beside the test's other files."""
    folder = SHOTS if os.environ.get(SCREENSHOTS_ENV) == "docs" else Path(
        tempfile.gettempdir()) / "dagnats-console-shots"
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=folder / name, full_page=True, animations="disabled")


def test_the_tutorials_run_starts_from_its_workflow_page_and_is_drawn(
        page: Page, console: str) -> None:
    page.goto(f"{console}/workflows/hello-pipeline")
    expect(page.locator("svg.dag g.dag-node")).to_have_count(3)
    typed = page.locator("#run-input")
    submit = page.get_by_role("button", name="Start run")
    typed.fill('{"World"')
    expect(submit).to_be_disabled()
    expect(page.locator("#input-error")).to_contain_text("not valid JSON")
    expect(typed).to_have_attribute("aria-invalid", "true")
    typed.fill('"World"')
    expect(submit).to_be_enabled()
    expect(page.locator("#input-error")).to_have_text("")
    submit.click()
    page.wait_for_url(f"{console}/runs/*")
    for step_id in ("greet", "uppercase", "reverse"):
        expect(node(page, step_id)).to_have_attribute("data-status", "completed")
    expect(page.locator(".runhead .badge")).to_have_text("completed")
    expect(page.locator("svg.tl g.tl-row")).to_have_count(3)
    expect(page.locator("#events tr[data-seq] summary").last).to_have_text("workflow.completed")
    expect(page.get_by_text('"!DLROW ,OLLEH"').first).to_be_visible()
    greet = page.locator('table.steps tr[data-step="greet"]')  # each step's input and output
    expect(greet).to_contain_text('"World"')
    expect(greet).to_contain_text('"Hello, World!"')
    run_id = page.url.rsplit("/", 1)[1]
    assert call("GET", f"{console}/api/v1/runs/{run_id}").json["input"] == "World"

    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_text("Rerun with a new input").click()  # a new run, with a new input
    page.locator("form.rerun textarea").fill('"Moon"')
    page.get_by_role("button", name="Start the new run").click()
    expect(page).not_to_have_url(f"{console}/runs/{run_id}")
    expect(page.get_by_text('"!NOOM ,OLLEH"').first).to_be_visible()


def test_a_run_page_follows_an_event_and_an_approval_without_reloading(
        page: Page, console: str) -> None:
    run_id = start(console, "order-approval", {"order_id": 42})
    page.goto(f"{console}/runs/{run_id}")
    mark(page)
    expect(node(page, "pay")).to_have_attribute("data-status", "waiting")
    expect(page.locator("ul.why")).to_contain_text("pay")
    typing = page.get_by_label("signal name")  # what is being typed survives a live refresh
    typing.fill("half-typ")
    page.evaluate("document.querySelector('#live .runhead').dataset.old = 'yes'")
    call("POST", f"{console}/api/v1/runs/{run_id}/signals/other", {"value": 1})
    expect(page.locator("#live .runhead")).not_to_have_attribute("data-old", "yes")
    expect(page.get_by_label("signal name")).to_have_value("half-typ")
    expect(page.get_by_label("signal name")).to_be_focused()
    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_label("event type").fill("payment.received")
    page.get_by_label("event data").fill('{"order_id": 42, "amount": 120}')
    page.get_by_role("button", name="Publish event").click()
    expect(page.locator("#flash")).to_have_text("Sent event payment.received.")
    expect(node(page, "pay")).to_have_attribute("data-status", "completed")
    expect(node(page, "gift")).to_have_attribute("data-status", "completed")
    expect(node(page, "review")).to_have_attribute("data-status", "waiting")
    assert stayed(page)
    page.get_by_role("button", name="Approve review").click()
    expect(page.locator(".runhead .badge")).to_have_text("completed")
    expect(node(page, "ship")).to_have_attribute("data-status", "completed")
    expect(page.locator("table.steps tr[data-step=ship]")).to_contain_text(
        "shipped with gift for order 42, approved by console")
    expect(page.get_by_role("button", name="Approve review")).to_have_count(0)
    assert stayed(page)
    shot(page, "run.png")


def test_a_dead_letter_is_replayed_from_its_page_once_the_printer_is_back(
        page: Page, console: str, printer: Path) -> None:
    run_id = start(console, "labels", {"order_id": 7, "copies": 2})
    failed = ended(console, run_id)
    assert failed["status"] == "failed" and f"printer offline (no {printer})" in failed["error"]
    page.goto(f"{console}/dead-letters")
    row = page.locator("tr", has=page.locator(f'a[href="/runs/{run_id}"]'))
    expect(row).to_contain_text("print-labels")
    expect(row.locator("td.err")).to_contain_text("printer offline")
    printer.touch()
    page.on("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Replay").click()
    expect(row).to_have_count(0)  # replayed: no longer waiting
    page.goto(f"{console}/runs/{run_id}")
    expect(page.locator(".runhead .badge")).to_have_text("completed")
    expect(node(page, "print")).to_have_attribute("data-status", "completed")
    expect(page.locator("table.steps tr[data-step=print]")).to_contain_text(
        "printed 2 labels for order 7")


def test_the_runs_list_shows_a_new_run_without_reloading(page: Page, console: str) -> None:
    page.goto(f"{console}/runs")
    expect(page.get_by_role("heading", name="Runs")).to_be_visible()
    mark(page)
    run_id = start(console, "hello-pipeline", "list")
    row = page.locator("table.runs tr", has=page.locator(f'a[href="/runs/{run_id}"]'))
    expect(row).to_contain_text(run_id[:8])
    expect(row.locator(".badge")).to_have_text("completed")
    assert stayed(page)


@pytest.mark.parametrize("page", ["dark"], indirect=True)
def test_a_waiting_run_in_dark_mode(page: Page, console: str) -> None:
    run_id = start(console, "order-approval", {"order_id": 7})
    wait_until(lambda: step_status(console, run_id, "pay") == "waiting", 20,
               "the run to wait for its payment")
    paid = call("POST", f"{console}/api/v1/events/payment.received",
                {"data": {"order_id": 7, "amount": 35}})
    assert paid.status == 201, paid.raw
    wait_until(lambda: step_status(console, run_id, "review") == "waiting", 20,
               "the review to wait")
    page.goto(f"{console}/runs/{run_id}")
    expect(node(page, "gift")).to_have_attribute("data-status", "skipped")
    expect(node(page, "review")).to_have_attribute("data-status", "waiting")
    expect(page.get_by_role("button", name="Approve review")).to_be_visible()
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(20, 22, 26)", background
    approve = page.get_by_role("button", name="Approve review")
    assert approve.evaluate("b => getComputedStyle(b).color") == "rgb(13, 17, 23)"  # on blue
    shot(page, "run-dark.png")


def test_the_overview_and_a_30_step_workflow_drawn_to_fit(page: Page, console: str) -> None:
    run_id = start(console, "hello-pipeline", "overview")
    assert ended(console, run_id)["status"] == "completed"
    page.goto(console)
    expect(page.locator(f'table.runs a[href="/runs/{run_id}"]')).to_be_visible()
    expect(page.locator(".count.st-completed b").first).not_to_have_text("0")
    expect(page.locator("li", has_text="workers")).to_contain_text("3 live")
    shot(page, "overview.png")
    page.goto(f"{console}/workflows/order-fulfilment")
    expect(page.locator("svg.dag g.dag-node")).to_have_count(30)
    expect(page.locator("svg.dag path.dag-edge")).to_have_count(36)
    expect(node(page, "manual-fraud-review")).to_have_class("dag-node kind-approval")
    texts = page.locator("svg.dag text.dag-id").all_text_contents()
    assert len(texts) == 30 and all(len(text) <= 21 for text in texts), texts
    drawn = page.locator("svg.dag").bounding_box()
    frame = page.locator("div.scroll", has=page.locator("svg.dag")).bounding_box()
    assert drawn and frame and drawn["width"] <= frame["width"]  # scaled to fit: no scrolling
    shot(page, "workflow-dag.png")
