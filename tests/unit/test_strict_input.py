"""Bad input gets one line and exit 2: strict JSON at every edge, strict definitions, a
bounded number of steps, `@FILE` and `-` for JSON arguments, worker files that are not
Python. (The API's and the client's side: tests/integration/test_strict_input.py.)"""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hypothesis import given, settings
from hypothesis import strategies as st

from dagnats import strict_json, worker
from dagnats._client_input import jsonable
from dagnats.cli.inputs import parse_input
from dagnats.cli.main import cli
from dagnats.dag.events import EventType
from dagnats.dag.validate import parse_definition
from dagnats.errors import InvalidDefinition, InvalidInput
from dagnats.limits import JSON_MAX_DEPTH, WORKFLOW_MAX_STEPS
from dagnats.worker._errors import InvalidTaskOutput
from dagnats.worker._registry import build_handler
from tests.unit.test_dag_run import History

NOT_JSON_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e999", "-1e400", "[1, NaN]",
                    '{"a": Infinity}']
LONE_SURROGATES = ['"\\ud800"', '"\\udc00"', '{"\\ud800": 1}', '["ok", "a\\udfffb"]']


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def invoke(*args: str, stdin: str | bytes | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=stdin, catch_exceptions=False,
                              env={"DAGNATS_NATS_URL": "nats://127.0.0.1:1"})


def one_error_line(result: Result, code: int = 2) -> str:
    assert result.exit_code == code, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output and "unexpected" not in result.stderr
    return lines[0]


@pytest.mark.parametrize("text", NOT_JSON_NUMBERS)
def test_non_finite_numbers_are_refused_not_turned_into_null(text: str) -> None:
    with pytest.raises(strict_json.JsonRefused, match=r"NaN or Infinity|infinite"):
        strict_json.loads(text)


@pytest.mark.parametrize("text", LONE_SURROGATES)
def test_lone_surrogates_are_refused(text: str) -> None:
    with pytest.raises(strict_json.JsonRefused, match="lone surrogate"):
        strict_json.loads(text)


def test_surrogate_pairs_escapes_and_brackets_in_strings_are_fine() -> None:
    assert strict_json.loads('"\\ud83d\\ude00"') == "\U0001F600"
    assert strict_json.loads('["\\\\ud800", "[[[[", "\\"]"]') == ["\\ud800", "[[[[", '"]']
    assert strict_json.loads(json.dumps("[" * 10_000)) == "[" * 10_000
    assert strict_json.loads(b'{"a": [1, 2.5, "\xc3\xa9"]}') == {"a": [1, 2.5, "é"]}
    for encoded in ('\ufeff{"a": "é"}'.encode(), '{"a": "é"}'.encode("utf-16"),
                    '{"a": "é"}'.encode("utf-16-le")):  # a BOM, PowerShell's redirection
        assert strict_json.loads(encoded) == {"a": "é"}


def test_nesting_is_bounded_at_the_documented_depth_and_never_recurses_too_deep() -> None:
    assert strict_json.loads(nested(JSON_MAX_DEPTH)) is not None
    for depth in (JSON_MAX_DEPTH + 1, 900, 100_000):
        with pytest.raises(strict_json.JsonRefused, match=f"deeper than {JSON_MAX_DEPTH}"):
            strict_json.loads(nested(depth))
        with pytest.raises(strict_json.JsonRefused, match=f"deeper than {JSON_MAX_DEPTH}"):
            strict_json.loads('{"a": ' + nested(depth) + "}")


def test_other_bad_json_is_one_line() -> None:
    for text in ("1" * 5000, b"\xff\xfe", "[1,", "", "]]]"):
        with pytest.raises(strict_json.JsonRefused) as caught:
            strict_json.loads(text)
        assert "\n" not in str(caught.value)


def test_python_values_are_checked_the_same_way() -> None:
    deep: Any = []
    for _ in range(JSON_MAX_DEPTH + 5):
        deep = [deep]
    for value, problem in ((math.nan, "NaN or Infinity"), ({"x": [math.inf]}, "Infinity"),
                           ("a\ud800", "lone surrogate"), ({"\udc80": 1}, "lone surrogate"),
                           (deep, "deeper than")):
        with pytest.raises(InvalidInput, match=problem) as caught:
            jsonable(value, "the input of w")
        assert caught.value.message.startswith("the input of w ")
    assert jsonable({"a": (1, 2.5)}, "x") == {"a": [1, 2.5]}


# --- the CLI: @FILE, - and strict values ------------------------------------------------


def test_parse_input_reads_a_file_or_standard_input(tmp_path: Path) -> None:
    path = tmp_path / "in.json"
    big = {"text": "x" * 300_000}  # over the ~128 KB a single argv entry can hold
    path.write_text(json.dumps(big))
    assert parse_input(f"@{path}") == big
    assert parse_input('"inline"') == "inline"


@pytest.mark.parametrize("command", [["run", "start", "w"], ["event", "publish", "a.b"],
                                     ["run", "signal", "0123456789abcdef", "go"]])
def test_json_arguments_refuse_bad_files_and_bad_json_in_one_line(
        tmp_path: Path, command: list[str]) -> None:
    assert "No such file" in one_error_line(invoke(*command, f"@{tmp_path}/missing.json"))
    assert "Is a directory" in one_error_line(invoke(*command, f"@{tmp_path}"))
    assert "needs a file name" in one_error_line(invoke(*command, "@"))
    (tmp_path / "bad.json").write_text('{"a": NaN}')
    assert "NaN" in one_error_line(invoke(*command, f"@{tmp_path}/bad.json"))
    assert "from standard input" in one_error_line(invoke(*command, "-", stdin="{oops"))
    assert "deeper than" in one_error_line(invoke(*command, "-", stdin=nested(50_000)))
    for text in [*NOT_JSON_NUMBERS, *LONE_SURROGATES, nested(JSON_MAX_DEPTH + 1)]:
        one_error_line(invoke(*command, "--", text))


def test_argv_bytes_that_are_not_utf8_are_refused_in_one_line() -> None:
    # Python decodes such argv bytes into lone surrogates (surrogateescape).
    assert "lone surrogate" in one_error_line(invoke("run", "start", "w", '"\udcff"'))


# --- definitions --------------------------------------------------------------------------


def definition(**retry: Any) -> dict[str, Any]:
    return {"name": "w", "version": "1", "steps": [{"id": "a", "task": "t", "retry": retry}]}


@pytest.mark.parametrize(("retry", "field"), [
    ({"max_attempts": True}, "max_attempts"), ({"max_attempts": "3"}, "max_attempts"),
    ({"max_attempts": 3.0}, "max_attempts"), ({"multiplier": True}, "multiplier"),
    ({"multiplier": "2"}, "multiplier"), ({"initial_delay": True}, "initial_delay"),
    ({"initial_delay": "9" * 400 + "s"}, "initial_delay"),
])
def test_definitions_coerce_no_numbers(retry: dict[str, Any], field: str) -> None:
    for source in (definition(**retry), json.dumps(definition(**retry))):
        with pytest.raises(InvalidDefinition, match=field) as caught:
            parse_definition(source)
        assert "\n" not in caught.value.message


def test_strict_definitions_still_take_what_they_always_took() -> None:
    parsed = parse_definition(definition(max_attempts=2, multiplier=3, initial_delay="1m30s",
                                         max_delay=5_000_000_000))
    policy = parsed.steps[0].retry_policy(None)
    assert policy is not None
    assert (policy.max_attempts, policy.multiplier, policy.initial_delay,
            policy.max_delay) == (2, 3.0, 90.0, 5.0)


def test_definitions_refuse_non_finite_numbers_and_bad_strings() -> None:
    doc = {"name": "w", "version": "1", "steps": [
        {"id": "a", "task": "t"},
        {"id": "b", "task": "t", "depends_on": ["a"],
         "skip_if": {"step_id": "a", "op": "==", "value": math.nan}}]}
    with pytest.raises(InvalidDefinition, match="NaN"):
        parse_definition(doc)
    text = json.dumps(doc).replace("NaN", "Infinity")
    with pytest.raises(InvalidDefinition, match="Infinity"):
        parse_definition(text)
    with pytest.raises(InvalidDefinition, match="lone surrogate"):
        parse_definition(json.dumps(doc).replace("NaN", '"\\ud800"'))


def many_steps(count: int, id_length: int = 20) -> list[dict[str, Any]]:
    return [{"id": f"s{i:04d}".ljust(id_length, "x"), "task": "t".ljust(id_length, "y"),
             "timeout": "30s", "retry": {"max_attempts": 3}} for i in range(count)]


def test_a_workflow_has_at_most_the_documented_number_of_steps(tmp_path: Path) -> None:
    parse_definition({"name": "w", "version": "1", "steps": many_steps(WORKFLOW_MAX_STEPS)})
    path = tmp_path / "huge.json"
    path.write_text(json.dumps({"name": "w", "version": "1", "steps": many_steps(10_000)}))
    line = one_error_line(invoke("workflow", "validate", str(path)))
    assert f"at most {WORKFLOW_MAX_STEPS} steps (this one has 10000)" in line


def test_a_run_of_the_most_steps_has_a_snapshot_well_under_the_message_limit() -> None:
    steps = many_steps(WORKFLOW_MAX_STEPS, id_length=64)
    h = History({"name": "w", "version": "1", "steps": steps}, run_input={"order": 12345})
    h.carry_out()
    for step in steps:
        h.add(EventType.STEP_STARTED, step["id"], 1, delivery=1, worker="host-12345")
        h.add(EventType.STEP_FAILED, step["id"], 1, error="ConnectionError: timed out",
              error_type="ConnectionError", retryable=True)
    h.carry_out()
    for step in steps:
        h.add(EventType.STEP_COMPLETED, step["id"], 2, output={"ok": True, "n": 42})
    h.carry_out()
    run = h.run()
    assert run.status.value == "completed"
    assert len(run.model_dump_json(exclude_defaults=True)) < 512 * 1024  # NATS: 1 MB


# --- worker files ---------------------------------------------------------------------------


def test_worker_run_refuses_a_file_that_is_not_python_in_one_line(tmp_path: Path) -> None:
    binary = tmp_path / "worker.bin"
    binary.write_bytes(bytes(range(256)) * 8)
    assert "is not Python source" in one_error_line(invoke("worker", "run", str(binary)))
    latin = tmp_path / "latin.py"
    latin.write_bytes(b"\xff\xfe\x00garbage")
    assert "is not Python source" in one_error_line(invoke("worker", "run", str(latin)))
    broken = tmp_path / "broken.py"
    broken.write_text("def handler(:\n    pass\n")
    assert "line 1" in one_error_line(invoke("worker", "run", str(broken)))
    assert "is not a file" in one_error_line(invoke("worker", "run", str(tmp_path)))
    archive = tmp_path / "app.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("other.py", "x = 1\n")
    assert "without __main__.py" in one_error_line(invoke("worker", "run", str(archive)))


def test_a_handler_output_that_json_cannot_hold_fails_the_step_instead_of_becoming_null(
        ) -> None:
    def measure(ctx: worker.TaskContext, value: Any) -> Any:
        return value

    h = build_handler("measure", measure)
    assert h.dump_output({"ratio": 0.5}) == {"ratio": 0.5}
    for value, problem in ((math.nan, "NaN"), ({"x": [math.inf]}, "Infinity"),
                           ("\ud800", "lone surrogate")):
        with pytest.raises(InvalidTaskOutput, match=problem):
            h.dump_output(value)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(), lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(), children, max_size=4), max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES, st.booleans())
def test_every_valid_json_value_round_trips_unchanged(value: Any, ascii_only: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    assert strict_json.loads(text) == value
    assert strict_json.loads(text.encode()) == value
    assert strict_json.check(value) is value
