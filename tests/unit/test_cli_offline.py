"""The CLI where no server is needed: validation, input parsing, worker files, exit codes."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from dagnats.cli.main import cli, report
from dagnats.errors import RunNotFound

HELLO_WORLD = """{
"name": "hello-world",
"version": "1.0",
"steps": [
{
"id": "greet",
"task": "greet",
"depends_on": []
},
{
"id": "uppercase",
"task": "uppercase",
"depends_on": ["greet"]
}
]
}"""

HELLO_PIPELINE = """{
"name": "hello-pipeline",
"version": "1.0",
"steps": [
{
"id": "greet",
"task": "greet",
"depends_on": []
},
{
"id": "uppercase",
"task": "uppercase",
"depends_on": ["greet"]
},
{
"id": "reverse",
"task": "reverse",
"depends_on": ["uppercase"]
}
]
}"""

RETRY_STEP = """{
"id": "greet",
"task": "greet",
"depends_on": [],
"timeout": "30s",
"type": "normal",
"retry": {
"max_attempts": 3,
"strategy": "exponential",
"initial_delay": "1s",
"max_delay": "30s",
"multiplier": 2.0
}
}"""

DEFAULT_RETRY = """{
"name": "hello-pipeline",
"version": "1.1",
"default_retry": {
"max_attempts": 2,
"strategy": "fixed",
"initial_delay": "5s",
"max_delay": "5s"
},
"steps": [...]
}"""


def tutorial_documents() -> dict[str, str]:
    """Each JSON document of the tutorial; the elided ones filled with the pipeline's steps."""
    steps = HELLO_PIPELINE[HELLO_PIPELINE.index('"steps"'):].rstrip().removesuffix("}")
    with_retry = HELLO_PIPELINE.replace(
        '{\n"id": "greet",\n"task": "greet",\n"depends_on": []\n}', RETRY_STEP)
    return {
        "hello-world": HELLO_WORLD,
        "hello-pipeline": HELLO_PIPELINE,
        "retry-step": with_retry,
        "default-retry": DEFAULT_RETRY.replace('"steps": [...]\n}', steps + "}"),
    }


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def one_error_line(result: Result, code: int) -> str:
    assert result.exit_code == code, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize("name", sorted(tutorial_documents()))
def test_every_tutorial_document_is_valid(tmp_path: Path, name: str) -> None:
    text = tutorial_documents()[name]
    assert "..." not in text
    path = tmp_path / "definition.json"
    path.write_text(text)
    steps = len(json.loads(text)["steps"])
    result = invoke("workflow", "validate", str(path))
    assert result.exit_code == 0, result.output
    doc = json.loads(text)
    assert result.stdout == f"Valid: {doc['name']} (version {doc['version']}, {steps} steps)\n"


def test_validate_json_and_schema_key(tmp_path: Path) -> None:
    doc = json.loads(HELLO_WORLD)
    path = tmp_path / "w.json"
    path.write_text(json.dumps({"$schema": "https://example.com/s.json", **doc}))
    result = invoke("workflow", "validate", str(path), "--json")
    assert json.loads(result.stdout) == {"valid": True, "name": "hello-world",
                                         "version": "1.0", "steps": 2}


def step(step_id: str, *deps: str, **extra: object) -> dict[str, object]:
    return {"id": step_id, "task": "t", "depends_on": list(deps), **extra}


INVALID = {
    "missing name": ({"version": "1", "steps": [step("a")]}, "missing required field 'name'"),
    "missing steps": ({"name": "w", "version": "1"}, "missing required field 'steps'"),
    "empty step id": ({"name": "w", "version": "1", "steps": [step("")]}, "steps[0].id"),
    "duplicate step id": ({"name": "w", "version": "1", "steps": [step("a"), step("a")]},
                          "duplicate step id 'a'"),
    "unknown dependency": ({"name": "w", "version": "1", "steps": [step("a", "zz")]},
                           "step 'a' depends on unknown step 'zz'"),
    "cycle": ({"name": "w", "version": "1", "steps": [step("a", "b"), step("b", "a")]},
              "dependency cycle: "),
    "bad duration": ({"name": "w", "version": "1", "steps": [step("a", timeout="soon")]},
                     "invalid duration 'soon'"),
    "unknown strategy": ({"name": "w", "version": "1",
                          "steps": [step("a", retry={"strategy": "random"})]}, "strategy"),
    "unknown field": ({"name": "w", "version": "1", "stepz": [], "steps": [step("a")]},
                      "unknown field 'stepz'"),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_definitions_are_one_line_exit_2(tmp_path: Path, case: str) -> None:
    document, expected = INVALID[case]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document, indent=2))
    line = one_error_line(invoke("workflow", "validate", str(path)), 2)
    assert expected in line and str(path) in line


def test_a_cycle_names_its_steps(tmp_path: Path) -> None:
    path = tmp_path / "cycle.json"
    path.write_text(json.dumps({"name": "w", "version": "1", "steps": [
        step("a"), step("b", "a", "d"), step("c", "b"), step("d", "c")]}))
    line = one_error_line(invoke("workflow", "validate", str(path)), 2)
    cycle = line.split("dependency cycle: ")[1].split(" -> ")
    assert cycle[0] == cycle[-1] and sorted(cycle[:-1]) == ["b", "c", "d"]


def test_malformed_json_gives_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{\n  "name": "w",\n  "version": "1"\n  "steps": []\n}')
    line = one_error_line(invoke("workflow", "validate", str(path)), 2)
    assert "malformed JSON at line 4, column 3" in line


def test_invalid_definitions_are_refused_before_connecting(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{}")
    result = invoke("workflow", "register", str(path), "--nats-url", dead_url())
    assert "missing required field" in one_error_line(result, 2)


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    result = invoke("workflow", "validate", str(tmp_path / "nope.json"))
    assert "cannot read" in one_error_line(result, 2)


def dead_url() -> str:
    """A loopback URL nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"nats://127.0.0.1:{port}"


@pytest.mark.parametrize("args", [
    ("workflow", "list"), ("run", "start", "w", '"x"'), ("run", "status", "abcdefgh"),
])
def test_a_stopped_server_is_one_line_exit_3(args: tuple[str, ...]) -> None:
    line = one_error_line(invoke(*args, env={"DAGNATS_NATS_URL": dead_url()}), 3)
    assert "cannot reach NATS" in line and "dagnats serve" in line


def test_bad_run_input_is_refused_before_connecting() -> None:
    result = invoke("run", "start", "w", "World", "--nats-url", dead_url())
    assert "INPUT is not valid JSON (line 1, column 1" in one_error_line(result, 2)


def test_worker_run_runs_the_file_as_main(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    worker = tmp_path / "w.py"
    worker.write_text("import sys\nfrom pathlib import Path\n"
                      f"if __name__ == '__main__':\n    Path({str(marker)!r}).write_text("
                      "sys.argv[0])\n")
    assert invoke("worker", "run", str(worker)).exit_code == 0
    assert marker.read_text() == str(worker)


def test_worker_run_missing_file_is_one_line(tmp_path: Path) -> None:
    line = one_error_line(invoke("worker", "run", str(tmp_path / "missing.py")), 2)
    assert "missing.py does not exist" in line


def test_worker_run_shows_the_traceback_of_user_code(tmp_path: Path) -> None:
    worker = tmp_path / "crash.py"
    worker.write_text("def handler():\n    raise ValueError('user bug')\nhandler()\n")
    result = invoke("worker", "run", str(worker))
    assert result.exit_code == 1
    assert "Traceback" in result.stderr and "ValueError: user bug" in result.stderr


def test_unexpected_errors_are_one_line(capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAGNATS_DEBUG", raising=False)
    assert report(RuntimeError("disk on fire\nsecond line")) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "error: unexpected RuntimeError: disk on fire (DAGNATS_DEBUG=1 shows the traceback)"]
    assert report(RunNotFound("no run 'x'")) == 2
    assert capsys.readouterr().err == "error: no run 'x'\n"


def test_debug_shows_the_traceback(capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGNATS_DEBUG", "1")
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        assert report(exc) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.splitlines()[-1] == "error: unexpected RuntimeError: boom"


def test_hidden_component_group_is_not_listed() -> None:
    result = invoke("--help")
    assert "_component" not in result.stdout and "serve" in result.stdout
