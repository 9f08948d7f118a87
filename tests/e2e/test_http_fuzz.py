"""Schema-driven fuzzing of the HTTP API against a real `serve`: schemathesis reads the
OpenAPI document and sends every operation valid and invalid requests (its coverage phase:
boundaries, missing and wrongly typed values, other methods and media types; then its
fuzzing phase). No input a client can send may get a 500, and every answer must be one the
document describes (status, media type, body schema), so the document is under test too.

A random name or id never names a real object, so some cases are pointed at objects the
fixture made (point_at_real_objects): a waiting approval, a completed run, a workflow to
delete. Nothing is excluded. Runs and seeds are fixed, so CI fuzzes the same cases each run.
"""

from __future__ import annotations

import json
import zlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from dagnats.http.openapi import document
from dagnats.server.about import dagnats_version
from tests.e2e.harness import ROOT, Serve, free_port, wait_until
from tests.e2e.http_calls import call

PIPELINE = ROOT / "examples" / "hello-pipeline" / "pipeline.json"
WORKER = ROOT / "examples" / "hello-pipeline" / "worker.py"
APPROVAL = {"name": "fuzz-approval", "version": "1",
            "steps": [{"id": "review", "type": "approval"}]}
#: Registered only for DELETE /workflows/{name} to delete (the others stay for POST /runs).
DOOMED = {"name": "fuzz-doomed", "version": "1",
          "steps": [{"id": "review", "type": "approval"}]}
VERSIONS = {"hello-pipeline": "1.0", "fuzz-approval": "1"}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
#: No call takes long: a stream that would not end fails its case rather than hanging (run
#: ids are 32 hex characters, prefixes 8 or more, so a generated id never names a run; only
#: ended runs are put in for GET .../events, whose follow=true streams until the run ends).
REQUEST_TIMEOUT_S = 20
SEED = 20240917
#: Fuzzing-phase cases per operation (the coverage phase adds its own systematic ones).
MAX_EXAMPLES = 25
#: Fewer for the two that take a whole definition: the coverage phase sends them ~1400
#: each already (every keyword of WorkflowDefinition's schema, right and wrong).
FEWER_EXAMPLES = {"registerWorkflow": 10, "validateWorkflow": 10}
CONFIG = schemathesis.Config.from_dict({
    "seed": SEED,
    "generation": {"deterministic": True, "database": "none"},
    "phases": {"stateful": {"enabled": False}},
})
#: The document the server serves (test_the_fuzzed_document_is_the_served_one), built at
#: collection: schemathesis makes one test per operation before any fixture runs, and its
#: fixture-loaded schemas (schemathesis.pytest.from_fixture) do not work with pytest 9.
DOCUMENT = document(dagnats_version())
schema = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG)
#: (operationId, status) -> how many cases got it.
ANSWERS: Counter[tuple[str, int]] = Counter()


class Real:
    """The objects the fixture made, which some cases are pointed at."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.base = f"{origin}/api/v1"
        self.completed = ""
        """A completed run (the only one following it over SSE may use: it ends)."""
        self.doomed_run = ""
        """A completed run for DELETE /runs/{run_id} to delete."""
        self.waiting: dict[str, str] = {}
        """Approval runs waiting at step `review`: one each for POST .../approve, .../reject
        and .../cancel (which POST .../retry then resumes), one for the rest."""

    def start(self, workflow: str, data: Any = None) -> str:
        reply = call("POST", f"{self.base}/runs", {"workflow": workflow, "input": data})
        assert reply.status == 201, reply.raw
        return str(reply.json["run_id"])

    def completed_run(self) -> str:
        run_id = self.start("hello-pipeline", "fuzz")
        wait_until(lambda: call("GET", f"{self.base}/runs/{run_id}").json["status"]
                   == "completed", 30, f"run {run_id} to complete")
        return run_id

    def choices(self, operation_id: str) -> dict[str, list[str]]:
        """What each path parameter (and a body's `workflow`) of an operation may be."""
        waiting = self.waiting
        runs = {"getRunEvents": [self.completed],
                "deleteRun": [self.doomed_run, waiting["rest"]],
                "cancelRun": [waiting["cancel"]],
                "retryRun": [waiting["cancel"], self.completed],
                "approveStep": [waiting["approve"]],
                "rejectStep": [waiting["reject"]]}.get(
                    operation_id, [self.completed, waiting["rest"]])
        names = ["fuzz-doomed"] if operation_id == "deleteWorkflow" else [
            "hello-pipeline", "fuzz-approval"]
        return {"run_id": runs, "name": names, "workflow": names, "step_id": ["review"],
                "version": sorted(set(VERSIONS.values()))}


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Real]:
    """One serve with the tutorial's worker, three workflows and six runs."""
    port = free_port()
    serve = Serve(tmp_path_factory.mktemp("fuzz") / "data", [WORKER],
                  args=["--http-port", str(port)])
    try:
        serve.wait_for_output("Press Ctrl-C to stop")
        made = Real(f"http://127.0.0.1:{port}")
        for definition in (json.loads(PIPELINE.read_text()), APPROVAL, DOOMED):
            reply = call("POST", f"{made.base}/workflows", definition)
            assert reply.status == 201, reply.raw
        made.completed, made.doomed_run = made.completed_run(), made.completed_run()
        made.waiting = {role: made.start("fuzz-approval")
                        for role in ("approve", "reject", "cancel", "rest")}
        yield made
    finally:
        serve.stop()


def point_at_real_objects(case: Any, real: Real) -> None:
    """For about one case in three (chosen by its generated values, so the same seed picks
    the same cases; three in four with follow=true), swap the generated names and ids for
    real ones."""
    path = case.path_parameters if isinstance(case.path_parameters, dict) else {}
    body = case.body if isinstance(case.body, dict) else {}
    query = case.query if isinstance(case.query, dict) else {}
    digest = zlib.crc32(repr((sorted(path.items()), body.get("workflow"))).encode())
    # Following a run over SSE is rare among the cases: most of those follow the real one.
    following = str(query.get("follow")).lower() == "true"
    if digest % 3 and not (following and digest % 4):
        return
    choices = real.choices(case.operation.definition.raw["operationId"])
    for key, value in path.items():
        if key in choices and isinstance(value, str):
            path[key] = choices[key][zlib.crc32(value.encode()) % len(choices[key])]
    if isinstance(body.get("workflow"), str):
        body["workflow"] = choices["workflow"][len(body["workflow"]) % 2]
        if isinstance(body.get("version"), str):  # its own, not one of some other workflow
            body["version"] = VERSIONS[body["workflow"]]


def fuzz(case: Any, real: Real) -> None:
    """One case: sent to the real serve, its answer checked against the document."""
    point_at_real_objects(case, real)
    response = case.call(base_url=real.origin, timeout=REQUEST_TIMEOUT_S)
    ANSWERS[case.operation.definition.raw["operationId"], response.status_code] += 1
    case.validate_response(response, checks=CHECKS)


def fuzz_test(operation_id: str) -> Any:
    """The test of one operation: schemathesis' cases for it, each sent to `fuzz`.

    One test per operation, test_fuzz_<operationId>, in the document's order, rather than a
    single `schema.parametrize()` test: under pytest 9 that one's items all get the same node
    id, so pytest-xdist would run one operation only."""
    def test(case: Any, real: Real) -> None:
        fuzz(case, real)

    test.__name__ = f"test_fuzz_{operation_id}"
    return hypothesis.settings(
        max_examples=FEWER_EXAMPLES.get(operation_id, MAX_EXAMPLES), deadline=None,
        derandomize=True, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                               HealthCheck.data_too_large],
    )(schema.include(operation_id=operation_id).parametrize()(test))


for _operation in (op for item in DOCUMENT["paths"].values() for op in item.values()):
    globals()[f"test_fuzz_{_operation['operationId']}"] = fuzz_test(_operation["operationId"])


def test_the_fuzzed_document_is_the_served_one(real: Real) -> None:
    assert call("GET", f"{real.origin}/openapi.json").json == DOCUMENT


def test_the_fuzzing_reached_real_objects() -> None:
    """Calls got past the lookups (a fuzzing run of only 404s and 422s tests little). It
    reads what the fuzzing test counted, so it runs after it (file order; `--dist loadfile`
    keeps a module on one worker)."""
    print(f"\n{sum(ANSWERS.values())} cases:", dict(sorted(ANSWERS.items())))
    succeeded = {operation for (operation, status), _ in ANSWERS.items() if status < 300}
    for operation in ("getWorkflow", "deleteWorkflow", "startRun", "getRun", "getRunEvents",
                      "getRunTree", "cancelRun", "retryRun", "rerunRun", "approveStep",
                      "rejectStep", "signalRun", "publishEvent", "registerWorkflow"):
        assert operation in succeeded, (operation, ANSWERS)
    assert ANSWERS["deleteRun", 409], "a running run was never refused"
