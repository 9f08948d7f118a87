"""The HTTP API against a real `serve`: the exact routes scripts hard-code, the same JSON and
errors as the CLI, following a run over SSE (resumable), and the OpenAPI document."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dagnats.http.api import ROUTES
from dagnats.http.openapi import openapi_path
from tests.e2e.harness import DAGNATS, ROOT, Serve, free_port, status_json, wait_until
from tests.e2e.http_calls import call, sse

PIPELINE = ROOT / "examples" / "hello-pipeline" / "pipeline.json"
WORKER = ROOT / "examples" / "hello-pipeline" / "worker.py"
APPROVAL = {"name": "http-approval", "version": "1",
            "steps": [{"id": "review", "type": "approval"}]}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Serve, str]]:
    """One serve with the tutorial's worker and its HTTP API on a free port."""
    port = free_port()
    serve = Serve(tmp_path_factory.mktemp("http") / "data", [WORKER],
                  args=["--http-port", str(port)])
    try:
        serve.wait_for_output("Press Ctrl-C to stop")
        yield serve, f"http://127.0.0.1:{port}"
    finally:
        serve.stop()


@pytest.fixture(scope="module")
def api(served: tuple[Serve, str]) -> str:
    """The API's base URL, with the tutorial's workflow and an approval one registered."""
    base = served[1] + "/api/v1"
    for definition in (json.loads(PIPELINE.read_text()), APPROVAL):
        reply = call("POST", f"{base}/workflows", definition)
        assert reply.status == 201, reply.raw
    return base


def finished(api: str, run_id: str) -> dict:
    """The run once it has ended (SSE follow ends with it)."""
    sse(f"{api}/runs/{run_id}/events?follow=true")
    return call("GET", f"{api}/runs/{run_id}").json


def test_the_banner_prints_the_console_url(served: tuple[Serve, str]) -> None:
    serve, base = served
    assert any(f"console    {base}/" in line for line in serve.output), serve.output


def test_a_run_started_over_http_reads_as_run_status_json(served: tuple[Serve, str],
                                                         api: str) -> None:
    started = call("POST", f"{api}/runs", {"workflow": "hello-pipeline", "input": "World"})
    assert started.status == 201
    run_id = started.json["run_id"]
    run = finished(api, run_id[:8])  # an 8-character prefix works as in the CLI
    assert run["status"] == "completed" and run["output"] == "!DLROW ,OLLEH"
    assert run == status_json(served[0], run_id)


def test_the_same_idempotency_key_starts_one_run(api: str) -> None:
    body = {"workflow": "hello-pipeline", "input": "once"}
    first = call("POST", f"{api}/runs", body, {"Idempotency-Key": "order-42"})
    again = call("POST", f"{api}/runs", body, {"Idempotency-Key": "order-42"})
    other = call("POST", f"{api}/runs", body, {"Idempotency-Key": "order-43"})
    assert first.json["run_id"] == again.json["run_id"] != other.json["run_id"]


def test_following_a_run_streams_every_event_then_ends_and_resumes_from_last_event_id(
        api: str) -> None:
    run_id = call("POST", f"{api}/runs", {"workflow": "hello-pipeline", "input": "x"}
                  ).json["run_id"]
    messages = sse(f"{api}/runs/{run_id}/events?follow=true")
    seqs = [int(m["id"]) for m in messages]
    assert seqs == sorted(seqs) and messages[0]["event"] == "workflow.started"
    assert messages[-1]["event"] == "workflow.completed"
    assert [m["data"]["type"] for m in messages] == [m["event"] for m in messages]
    stored = call("GET", f"{api}/runs/{run_id}/events").json
    assert [e["seq"] for e in stored["events"]] == seqs and stored["next"] is None
    later = sse(f"{api}/runs/{run_id}/events?follow=true", {"Last-Event-ID": str(seqs[2])})
    assert [int(m["id"]) for m in later] == seqs[3:]
    paged = call("GET", f"{api}/runs/{run_id}/events?after={seqs[2]}").json
    assert [e["seq"] for e in paged["events"]] == seqs[3:]


def test_runs_are_listed_newest_first_with_filters_and_a_cursor(api: str) -> None:
    ids = [call("POST", f"{api}/runs", {"workflow": "hello-pipeline", "input": str(n)}
                ).json["run_id"] for n in range(3)]
    for run_id in ids:
        finished(api, run_id)
    first = call("GET", f"{api}/runs?workflow=hello-pipeline&limit=2").json
    assert [r["run_id"] for r in first["runs"]] == ids[::-1][:2]
    rest = call("GET", f"{api}/runs?workflow=hello-pipeline&limit=2&cursor="
                f"{first['next_cursor']}").json
    assert rest["runs"][0]["run_id"] == ids[0]
    assert call("GET", f"{api}/runs?status=failed&workflow=hello-pipeline").json["runs"] == []
    counts = call("GET", f"{api}/run-counts").json
    assert counts["counts"]["completed"] >= 3 and counts["total"] >= 3


def test_errors_are_problem_details_with_the_cli_message_and_type(served: tuple[Serve, str],
                                                                  api: str) -> None:
    missing = call("GET", f"{api}/runs/0123456789abcdef")
    assert missing.status == 404 and missing.kind == "application/problem+json"
    cli = served[0].cli("run", "status", "0123456789abcdef")
    assert missing.json["error"] == "RunNotFound"
    said = cli.stderr.replace(str(ROOT / "bin" / "dagnats"), "dagnats")  # the CLI's own name
    assert said == f"error: {missing.json['detail']}\n"
    bad = call("POST", f"{api}/workflows", {"name": "x", "version": "1", "steps": []})
    assert bad.status == 422 and bad.json["error"] == "InvalidDefinition"
    typo = call("POST", f"{api}/runs", {"workflow": "hello-pipeline", "inptu": 1})
    assert typo.status == 422 and "inptu" in typo.json["detail"]
    unknown = call("POST", f"{api}/runs", {"workflow": "no-such-flow"})
    assert unknown.status == 404 and unknown.json["error"] == "WorkflowNotFound"
    form = call("POST", f"{api}/runs", raw=b"workflow=x",
                headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert form.status == 415
    assert call("GET", f"{api}/nowhere").status == 404
    wrong = call("PUT", f"{api}/runs")
    assert wrong.status == 405 and wrong.kind == "application/problem+json"


def test_approval_signal_event_and_cancel_routes(api: str) -> None:
    run_id = call("POST", f"{api}/runs", {"workflow": "http-approval"}).json["run_id"]
    wait_until(lambda: call("GET", f"{api}/runs/{run_id}").json["steps"]["review"]["status"]
               == "waiting", 20, "the approval to wait")
    decided = call("POST", f"{api}/runs/{run_id}/steps/review/approve", {"by": "ana"})
    assert decided.status == 200 and decided.json["approved"] and decided.json["by"] == "ana"
    again = call("POST", f"{api}/runs/{run_id}/steps/review/reject")
    assert again.status == 409 and again.json["error"] == "NotWaiting"
    assert finished(api, run_id)["status"] == "completed"
    ended = call("POST", f"{api}/runs/{run_id}/signals/go", {"value": 1})
    assert ended.status == 409 and ended.json["error"] == "RunEnded"
    published = call("POST", f"{api}/events/payment.received", {"data": {"order_id": 1}})
    assert published.status == 201 and published.json["seq"] >= 1
    waiting = call("POST", f"{api}/runs", {"workflow": "http-approval"}).json["run_id"]
    cancelled = call("POST", f"{api}/runs/{waiting}/cancel")
    assert cancelled.json["status"] == "cancelled" and cancelled.json["changed"]
    assert call("POST", f"{api}/runs/{waiting}/retry").json["run_id"] == waiting
    rerun = call("POST", f"{api}/runs/{run_id}/rerun")
    assert rerun.status == 201 and rerun.json["run_id"] != run_id


def test_workflows_dead_letters_workers_and_health(served: tuple[Serve, str], api: str) -> None:
    base = served[1]
    listed = {w["name"] for w in call("GET", f"{api}/workflows").json}
    assert {"hello-pipeline", "http-approval"} <= listed
    one = call("GET", f"{api}/workflows/hello-pipeline/versions/1.0").json
    assert one["definition"]["name"] == "hello-pipeline" and one["latest"] == "1.0"
    checked = call("POST", f"{api}/workflows/validate", APPROVAL)
    assert checked.json == {"valid": True, "name": "http-approval", "version": "1", "steps": 1}
    assert call("GET", f"{api}/dead-letters").json == {"dead_letters": [], "total": 0,
                                                        "next": None}
    assert call("POST", f"{api}/dead-letters/99999/replay").json["error"] == \
        "DeadLetterNotFound"
    workers = call("GET", f"{api}/workers").json
    assert any("greet" in w["tasks"] for w in workers)
    assert call("GET", f"{base}/healthz").json == {"status": "ok"}
    ready = call("GET", f"{base}/readyz")
    assert ready.status == 200 and ready.json["down"] == []
    assert set(ready.json["components"]) == {"nats", "api", "engine", "workers"}


def test_every_route_is_in_the_openapi_document_and_the_offline_docs(
        served: tuple[Serve, str]) -> None:
    base = served[1]
    spec = call("GET", f"{base}/openapi.json").json
    assert spec["openapi"].startswith("3.1")
    for route in ROUTES:
        operation = spec["paths"][openapi_path(route.path)][route.method.lower()]
        assert operation["operationId"] == route.name
    docs = call("GET", f"{base}/docs")
    assert docs.status == 200
    page = docs.raw.decode()
    assert all(f'id="{route.name}"' in page for route in ROUTES)
    assert "http://" not in page.replace(base, "").replace("http://127.0.0.1", "") \
        .replace("localhost:8422", "")  # nothing loaded from elsewhere


def test_serve_refuses_to_listen_beyond_loopback_without_a_token(tmp_path: Path) -> None:
    serve = Serve(tmp_path / "data", [], args=["--http-host", "0.0.0.0", "--http-port",
                                               str(free_port())])
    assert serve.proc.wait(timeout=30) != 0
    line = serve.wait_for_output("without a token", timeout_s=5)
    assert line.startswith("error: the HTTP API would listen on 0.0.0.0")
    assert not any("Traceback" in said for said in serve.output)


def test_without_a_token_a_cross_site_browser_post_is_still_refused(api: str) -> None:
    run_id = call("POST", f"{api}/runs", {"workflow": "http-approval"}).json["run_id"]
    forged = call("POST", f"{api}/runs/{run_id}/cancel", raw=b"",
                  headers={"Content-Type": "application/x-www-form-urlencoded",
                           "Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"})
    assert forged.status == 403 and forged.json["error"] == "CrossSiteRefused"
    assert call("GET", f"{api}/runs/{run_id}").json["status"] == "running"
    call("POST", f"{api}/runs/{run_id}/cancel")


def test_dagnats_http_serves_the_api_against_an_existing_nats(served: tuple[Serve, str],
                                                              api: str) -> None:
    serve = served[0]
    port = free_port()
    standalone = subprocess.Popen(
        [DAGNATS, "http", "--nats-url", serve.url, "--http-port", str(port)],
        env=serve.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert standalone.stdout is not None
        first = standalone.stdout.readline()
        assert first.startswith(f"dagnats http: the console is at http://127.0.0.1:{port}/")
        other = f"http://127.0.0.1:{port}/api/v1"
        assert {w["name"] for w in call("GET", f"{other}/workflows").json} == \
            {w["name"] for w in call("GET", f"{api}/workflows").json}
        assert call("GET", f"http://127.0.0.1:{port}/readyz").json["ready"]
    finally:
        standalone.terminate()
        assert standalone.wait(timeout=20) == 0
