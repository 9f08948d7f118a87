"""Every user-facing error of docs/errors.md, produced for real: its message and exit code,
and where cheap, that nothing changed. The last test checks that each message listed on
the page was produced here (and every message produced here is on the page)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from dagnats import names
from dagnats.dag.events import Event, EventType
from dagnats.dag.state import RunStatus
from dagnats.errors import Contended, DagnatsError
from dagnats.server.binary import find_nats_server
from dagnats.server.nats_process import NatsServer
from dagnats.store import dead_letters, history
from tests.integration import errors_cases as cases
from tests.integration.failures_harness import FAST_RETRY, Behaviour, Stack, make_worker

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[2]
PAGE = (ROOT / "docs" / "errors.md").read_text().split("## `serve`")[0]
PATTERNS = {span: re.compile(".*".join(re.escape(part) for part in re.split(r"<[^<>]+>", span)))
            for span in re.findall(r"`` (.+?) ``", PAGE)}
COVERED: set[str] = set()


def documented(message: str, exit_code: int | None = None, got: int | None = None) -> None:
    """Assert `message` (without "error: ") is on the page; remember the rows it matches."""
    if exit_code is not None:
        assert got == exit_code, (got, message)
    matched = [span for span, regex in PATTERNS.items() if regex.fullmatch(message)]
    assert matched, f"not in docs/errors.md: {message}"
    COVERED.update(matched)


def cli_error(result: Result, code: int) -> str:
    """The one error line of a failed command, checked against the page."""
    assert result.exit_code == code, (result.exit_code, result.output)
    [line] = result.stderr.splitlines()
    assert line.startswith("error: ")
    documented(line.removeprefix("error: "))
    return line


def raised(exc: DagnatsError, code: int) -> str:
    documented(exc.message, code, exc.exit_code)
    return exc.message


@pytest.fixture(scope="module")
def behaviour() -> Behaviour:
    return Behaviour()


@pytest.fixture(scope="module")
def stack(nats_server: Any, behaviour: Behaviour) -> Iterator[Stack]:
    running = Stack(nats_server.url, make_worker(nats_server.url, behaviour))
    running.client.register_workflow({"name": "versioned", "version": "1",
                                      "steps": [{"id": "a", "task": "echo"}]})
    running.client.register_workflow({"name": "stalled", "version": "1",  # runs forever
                                      "steps": [{"id": "a", "task": "nobody-serves-this"}]})
    try:
        yield running
    finally:
        running.close()


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A nats-server with nothing of dagnats on it."""
    root = tmp_path_factory.mktemp("bare")
    server = NatsServer(find_nats_server(), root / "store", root / "log", port=0)
    asyncio.run(server.start())
    try:
        yield server.url
    finally:
        asyncio.run(server.stop())


def offline(*args: str) -> Result:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"nats://127.0.0.1:{sock.getsockname()[1]}"
    return CliRunner().invoke(cli_root(), list(args), env={"DAGNATS_NATS_URL": dead},
                              catch_exceptions=False)


def cli_root() -> Any:
    from dagnats.cli.main import cli
    return cli


@pytest.mark.parametrize("case", sorted(cases.DEFINITIONS))
def test_definition_errors(tmp_path: Path, case: str) -> None:
    path = tmp_path / "w.json"
    content = cases.DEFINITIONS[case]
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    line = cli_error(offline("workflow", "validate", str(path)), 2)
    assert line.startswith(f"error: {path}: ")


@pytest.mark.parametrize("args", cases.OFFLINE_ARGS)
def test_argument_errors_need_no_server(args: tuple[str, ...], tmp_path: Path) -> None:
    (tmp_path / "BINARY").write_bytes(bytes(range(256)))
    with zipfile.ZipFile(tmp_path / "ZIP", "w") as archive:
        archive.writestr("other.py", "x = 1\n")
    args = tuple(a.replace("TMP", str(tmp_path)).replace("BINARY", str(tmp_path / "BINARY"))
                 .replace("ZIP", str(tmp_path / "ZIP")) for a in args)
    cli_error(offline(*args), 2)


def test_strict_json_errors(stack: Stack) -> None:
    with pytest.raises(DagnatsError) as caught:
        stack.client.start("versioned", float("nan"))
    raised(caught.value, 2)
    with pytest.raises(DagnatsError) as caught:
        stack.client.approve("abcdefgh", "a", by="\udcff")  # undecodable argv bytes
    raised(caught.value, 2)
    reply = stack.run(stack._nc.request(names.api_subject("run.start"), b'{"input": NaN}'))
    error = json.loads(reply.data)["error"]
    documented(error["message"])


def test_no_nats_is_exit_3() -> None:
    cli_error(offline("run", "status", "abcdefgh"), 3)


def test_unexpected_errors_are_one_line(capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from dagnats.cli.main import report
    monkeypatch.delenv("DAGNATS_DEBUG", raising=False)
    assert report(RuntimeError("disk on fire")) == 1
    documented(capsys.readouterr().err.strip().removeprefix("error: "))


def test_not_found(stack: Stack) -> None:
    d = stack.dagnats
    cli_error(d("run", "start", "ghost"), 2)
    cli_error(d("run", "start", "versioned", "--version", "9"), 2)
    cli_error(d("workflow", "show", "a.b"), 2)
    for args in (("status", "0123456789abcdef"), ("status", "abc"), ("events", "a.b*")):
        cli_error(d("run", *args), 2)
    cli_error(d("dlq", "replay", "987654"), 2)
    stack.run(dead_letters.publish_poison(stack.js, names.TIMER_PREFIX, 515151,
                                          names.timer_subject("r", "t"), b"?", "junk"))
    poison = stack.run(stack.js.get_msg(names.DEAD_STREAM,
                                        subject=names.poison_subject(names.TIMER_PREFIX, 515151)))
    cli_error(d("dlq", "replay", str(poison.seq)), 2)
    done = stack.client.start("versioned", "x")
    assert stack.client.wait(done, timeout=20).status is RunStatus.COMPLETED
    cli_error(d("dlq", "replay", "--run", done), 2)


def test_an_ambiguous_prefix(stack: Stack) -> None:
    definition = stack.client.get_workflow("stalled").definition.to_json_dict()
    twins = [f"facade00{n}{'0' * 23}" for n in range(2)]
    for run_id in twins:
        event = Event(type=EventType.WORKFLOW_STARTED, run_id=run_id, timestamp=datetime.now(UTC),
                      data={"workflow": "stalled", "version": "1", "input": None,
                            "definition": definition})
        stack.run(history.append(stack.js, event, names.started_msg_id(run_id)))
    stack.until(lambda: all(stack.client.list_runs("stalled")) and
                len(stack.client.list_runs("stalled")) == 2, "the engine stored both runs")
    cli_error(stack.dagnats("run", "status", "facade00"), 2)


def test_client_side_input_errors(stack: Stack) -> None:
    from dagnats.errors import InvalidInput
    from dagnats.limits import PAYLOAD_MAX_BYTES
    for call in (lambda: stack.client.list_runs(limit=0),
                 lambda: stack.client.list_runs(status="done"),
                 lambda: stack.client.list_runs(after="not-a-cursor"),
                 lambda: stack.client.start("versioned", object()),
                 lambda: stack.client.replay(1, run_id="x"),
                 lambda: stack.client.publish_event("payment received", {}),
                 lambda: stack.client.publish_event("big", "x" * 300_000),
                 lambda: stack.client.start("versioned", "x" * PAYLOAD_MAX_BYTES),
                 lambda: stack.client.approve("x" * 32, "review", comment="x" * 2_000_000)):
        with pytest.raises(InvalidInput) as caught:
            call()
        raised(caught.value, 2)


def test_decisions_that_cannot_be_made(stack: Stack) -> None:
    from dagnats.errors import NotWaiting
    approval = {"id": "review", "type": "approval", "depends_on": ["hold"]}
    stack.client.register_workflow({"name": "gated", "version": "1", "steps": [
        {"id": "hold", "task": "gate"}, approval]})
    stack.client.register_workflow({"name": "hurried", "version": "1", "steps": [
        {"id": "review", "type": "approval", "config": {"timeout": "100ms"}}]})
    gated = stack.client.start("gated", None)
    stack.until_event(gated, EventType.STEP_QUEUED)
    quick = stack.client.start("hurried", None)
    assert stack.client.wait(quick, timeout=20).status is RunStatus.FAILED
    attempts = [lambda: stack.client.approve(gated, "review"),
                lambda: stack.client.approve(gated, "hold"),
                lambda: stack.client.reject(gated, "nope"),
                lambda: stack.client.approve(quick, "review")]
    for call in attempts:
        with pytest.raises(NotWaiting) as caught:
            call()
        raised(caught.value, 2)
    stack.client.cancel(gated)
    with pytest.raises(NotWaiting) as caught:
        stack.client.approve(gated, "review")
    raised(caught.value, 2)
    stack.client.register_workflow({"name": "patient", "version": "1", "steps": [
        {"id": "review", "type": "approval"}]})
    decided = stack.client.start("patient", None)
    stack.until(lambda: stack.client.get_run(decided).steps["review"].waiting_for, "waiting")
    stack.client.approve(decided, "review", by="ana")
    result = stack.dagnats("run", "approve", decided, "review")
    assert "already approved by ana" in cli_error(result, 2)


def test_idempotency_key_missing_from_the_input(stack: Stack) -> None:
    stack.client.register_workflow({"name": "keyed", "version": "1", "idempotency_key": "id",
                                    "steps": [{"id": "a", "task": "echo"}]})
    cli_error(stack.dagnats("run", "start", "keyed", "{}"), 2)


def test_signals_that_cannot_be_taken(stack: Stack) -> None:
    d = stack.dagnats
    live = stack.client.start("stalled")
    cli_error(d("run", "signal", live, "a.b", "1"), 2)
    cli_error(d("run", "signal", live, "big", json.dumps("x" * 70_000)), 2)
    done = stack.client.start("versioned", "x")
    assert stack.client.wait(done, timeout=20).status is RunStatus.COMPLETED
    cli_error(d("run", "signal", done, "go"), 2)
    stack.client.cancel(live)


def test_runs_that_cannot_be_resumed(stack: Stack, behaviour: Behaviour) -> None:
    d = stack.dagnats
    stack.client.register_workflow({"name": "undo", "version": "1", "steps": [
        {"id": "a", "task": "echo", "compensate": "undo_a"},
        {"id": "b", "task": "flaky", "depends_on": ["a"], "retry": FAST_RETRY},
        {"id": "undo_a", "task": "echo"}]})
    behaviour.broken.add("undo")
    undone = stack.client.start("undo", "x")
    assert stack.client.wait(undone, timeout=20).status is RunStatus.COMPENSATED
    before = stack.history(undone)
    cli_error(d("run", "retry", undone), 1)
    assert stack.history(undone) == before

    stack.client.register_workflow({"name": "gated-one", "version": "1",
                                    "steps": [{"id": "g", "task": "gate"}]})
    live = stack.client.start("gated-one")
    stack.until_event(live, EventType.STEP_STARTED)
    cli_error(d("run", "retry", live), 1)
    seq = cases.plant_dead_letter(stack, live)
    cli_error(d("dlq", "replay", str(seq)), 1)
    assert [e.seq for e in stack.client.dead_letters(live)] == [seq]
    stack.client.cancel(live)

    done = stack.client.start("versioned", "x")
    assert stack.client.wait(done, timeout=20).status is RunStatus.COMPLETED
    cli_error(d("run", "retry", done), 1)


def test_two_resumes_of_one_generation(stack: Stack, behaviour: Behaviour) -> None:
    stack.client.register_workflow({"name": "twice", "version": "1", "steps": [
        {"id": "b", "task": "flaky"}]})
    behaviour.broken.add("twice")
    run_id = stack.client.start("twice", "x")
    assert stack.client.wait(run_id, timeout=20).status is RunStatus.FAILED
    with pytest.raises(DagnatsError) as caught:
        stack.run(cases.resume_twice(stack, run_id))
    raised(caught.value, 1)


def test_a_cancel_that_keeps_losing_the_race(stack: Stack,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = stack.client.start("stalled")
    with pytest.raises(DagnatsError) as caught:
        stack.run(cases.cancel_with_stale_history(stack, run_id, monkeypatch))
    raised(caught.value, 1)
    assert stack.client.get_run(run_id).status is RunStatus.RUNNING


def test_a_decision_that_keeps_losing_the_race(stack: Stack,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    stack.client.register_workflow({"name": "decide-race", "version": "1",
                                    "steps": [{"id": "review", "type": "approval"}]})
    run_id = stack.client.start("decide-race")
    with contextlib.closing(stack.client.watch(run_id)) as events:
        next(e for e in events if e.type is EventType.STEP_WAITING and e.step_id == "review")
    with pytest.raises(Contended) as caught:
        stack.run(cases.decide_with_stale_history(stack, run_id, monkeypatch))
    raised(caught.value, 1)
    assert stack.client.get_run(run_id).steps["review"].status.value == "waiting"
    stack.client.cancel(run_id)


def test_claiming_a_key_that_keeps_changing() -> None:
    with pytest.raises(DagnatsError) as caught:
        asyncio.run(cases.claim_against_a_flapping_bucket())
    raised(caught.value, 1)


def test_an_api_failure_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    reply = asyncio.run(cases.answer_with_a_broken_operation(monkeypatch))
    assert reply["ok"] is False and reply["error"]["type"] == "DagnatsError"
    documented(reply["error"]["message"])


def test_unreachable_api(bare: str) -> None:
    cli_error(CliRunner().invoke(cli_root(), ["workflow", "list", "--nats-url", bare]), 3)
    with pytest.raises(DagnatsError) as caught:
        asyncio.run(cases.request_nobody_answers(bare))
    raised(caught.value, 3)


def test_a_bad_request_timeout(bare: str) -> None:
    result = CliRunner().invoke(cli_root(), ["run", "list", "--nats-url", bare],
                                env={"DAGNATS_REQUEST_TIMEOUT": "soon"})
    assert "'soon'" in cli_error(result, 2)


def test_a_watch_that_fails_names_the_run_it_started(bare: str) -> None:
    run_id = "0123456789abcdef0123456789abcdef"
    with cases.api_that_starts_then_fails(bare, run_id):
        result = CliRunner().invoke(cli_root(), ["run", "start", "w", "--watch", "--nats-url",
                                                 bare])
    assert result.stdout.splitlines() == [f"Run {run_id} started"]
    assert run_id in cli_error(result, 3)


def test_a_watch_whose_connection_closes(stack: Stack) -> None:
    run_id = stack.client.start("stalled")
    with pytest.raises(DagnatsError) as caught:
        asyncio.run(cases.watch_then_close(stack.url, run_id))
    raised(caught.value, 3)


def test_the_api_losing_nats(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DagnatsError) as caught:
        asyncio.run(cases.api_that_loses_nats(stack.url, monkeypatch))
    raised(caught.value, 3)


def test_worker_registration_errors() -> None:
    for message in cases.registration_errors():
        documented(message)


def test_worker_connection_errors(bare: str, stack: Stack,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    for message in asyncio.run(cases.worker_connection_errors(bare, stack.url, monkeypatch)):
        documented(message)


def test_retention_errors(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    from dagnats.store import retention

    cli_error(stack.dagnats("run", "purge", "--older-than", "soon"), 2)
    running = stack.client.start("stalled")
    cli_error(stack.dagnats("run", "delete", running), 1)
    ended = stack.client.start("versioned", "x")
    stack.client.wait(ended, timeout=60)

    async def moved_on(js: Any, run_id: str) -> int:
        return -1  # as if `run retry` had appended an event meanwhile

    monkeypatch.setattr(retention, "last_seq", moved_on)
    cli_error(stack.dagnats("run", "delete", ended), 1)
    assert stack.history(ended)  # the history was kept


def test_a_registered_version_is_immutable(stack: Stack, tmp_path: Path) -> None:
    path = tmp_path / "frozen.json"
    path.write_text(json.dumps({"name": "frozen", "version": "1",
                                "steps": [{"id": "a", "task": "t"}]}))
    assert stack.dagnats("workflow", "register", str(path)).exit_code == 0
    again = stack.dagnats("workflow", "register", str(path))
    assert (again.exit_code, again.stdout) == (0, "frozen version 1 is already registered, "
                                                   "unchanged\n")
    path.write_text(json.dumps({"name": "frozen", "version": "1",
                                "steps": [{"id": "a", "task": "other"}]}))
    cli_error(stack.dagnats("workflow", "register", str(path)), 2)
    assert stack.client.get_workflow("frozen").definition.steps[0].task == "t"


def test_every_documented_error_is_produced(request: pytest.FixtureRequest) -> None:
    mine = [item for item in request.session.items if item.module is request.module]
    everything = sum(1 for item in request.module.__dict__ if item.startswith("test_"))
    if len({item.originalname for item in mine}) < everything:
        pytest.skip("run the whole module to check the page")
    assert sorted(set(PATTERNS) - COVERED) == []

