"""Parsing and validating workflow definitions: the tutorial's documents and every refusal."""

from __future__ import annotations

import json

import pytest

from dagnats.dag.durations import format_duration, parse_duration
from dagnats.dag.validate import parse_definition, topological_order
from dagnats.errors import InvalidDefinition

PIPELINE = {
    "name": "hello-pipeline", "version": "1.0",
    "steps": [
        {"id": "greet", "task": "greet", "depends_on": []},
        {"id": "uppercase", "task": "uppercase", "depends_on": ["greet"]},
        {"id": "reverse", "task": "reverse", "depends_on": ["uppercase"]},
    ],
}


def with_steps(*steps: dict) -> dict:
    return {"name": "w", "version": "1", "steps": list(steps)}


def test_tutorial_retry_step_and_default_retry_parse() -> None:
    doc = {
        "$schema": "https://example.invalid/schema.json",
        "name": "hello-pipeline", "version": "1.1",
        "default_retry": {"max_attempts": 2, "strategy": "fixed", "initial_delay": "5s",
                          "max_delay": "5s"},
        "steps": [{
            "id": "greet", "task": "greet", "depends_on": [], "timeout": "30s", "type": "normal",
            "retry": {"max_attempts": 3, "strategy": "exponential", "initial_delay": "1s",
                      "max_delay": "30s", "multiplier": 2.0},
        }, {"id": "uppercase", "task": "uppercase", "depends_on": ["greet"]}],
    }
    definition = parse_definition(json.dumps(doc))
    greet = definition.step("greet")
    assert greet.timeout == 30.0
    assert greet.retry is not None and greet.retry.max_delay == 30.0
    assert definition.retry_policy(definition.step("uppercase")) == definition.default_retry
    assert definition.to_json_dict()["steps"][0]["timeout"] == "30s"


@pytest.mark.parametrize(("source", "expected"), [
    ('{"name": "w",\n "steps": [}', "malformed JSON at line 2, column 12"),
    ({"version": "1", "steps": [{"id": "a", "task": "a"}]}, "missing required field 'name'"),
    ({"name": "w", "version": "1"}, "missing required field 'steps'"),
    (with_steps(), "steps: a workflow needs at least one step"),
    (with_steps({"id": "", "task": "a"}), "steps[0].id: String should match pattern"),
    (with_steps({"id": "a", "task": "a"}, {"id": "a", "task": "b"}), "duplicate step id 'a'"),
    (with_steps({"id": "a", "task": "a", "depends_on": ["zz"]}),
     "step 'a' depends on unknown step 'zz'"),
    (with_steps({"id": "a", "task": "a", "depends_on": ["c"]},
                {"id": "b", "task": "b", "depends_on": ["a"]},
                {"id": "c", "task": "c", "depends_on": ["b"]}),
     "dependency cycle: "),
    (with_steps({"id": "a", "task": "a", "timeout": "30 parsecs"}),
     "step \"a\": timeout: invalid duration '30 parsecs'"),
    (with_steps({"id": "a", "task": "a", "retry": {"strategy": "random"}}),
     "step \"a\": retry.strategy: Input should be 'fixed', 'linear' or 'exponential'"),
    (with_steps({"id": "a", "task": "a", "timeoutt": "3s"}),
     "unknown field 'timeoutt' in step \"a\" (a typo?)"),
    (with_steps({"id": "a.b", "task": "a"}),
     "step 'a.b': an id is letters, digits, _ and - (a dot names a step that a planner added)"),
    ("[1, 2]", "must be a JSON object"),
])
def test_invalid_definitions_get_one_clear_line(source: object, expected: str) -> None:
    with pytest.raises(InvalidDefinition) as caught:
        parse_definition(source, origin="pipeline.json")  # type: ignore[arg-type]
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("pipeline.json: ")
    assert expected in message


def test_cycle_names_every_step_on_it() -> None:
    doc = with_steps({"id": "root", "task": "t"},
                     {"id": "a", "task": "t", "depends_on": ["root", "c"]},
                     {"id": "b", "task": "t", "depends_on": ["a"]},
                     {"id": "c", "task": "t", "depends_on": ["b"]},
                     {"id": "after", "task": "t", "depends_on": ["c"]})
    with pytest.raises(InvalidDefinition) as caught:
        parse_definition(doc)
    cycle = str(caught.value).split("dependency cycle: ")[1].split(" -> ")
    assert cycle[0] == cycle[-1]
    assert sorted(set(cycle)) == ["a", "b", "c"]


def test_topological_order_is_stable_and_respects_dependencies() -> None:
    definition = parse_definition(with_steps(
        {"id": "join", "task": "t", "depends_on": ["left", "right"]},
        {"id": "left", "task": "t", "depends_on": ["start"]},
        {"id": "start", "task": "t"},
        {"id": "right", "task": "t", "depends_on": ["start"]},
    ))
    assert topological_order(definition.steps) == ["start", "left", "right", "join"]
    assert topological_order(parse_definition(PIPELINE).steps) == ["greet", "uppercase", "reverse"]


@pytest.mark.parametrize(("text", "seconds", "canonical"), [
    ("30s", 30.0, "30s"), ("1m30s", 90.0, "1m30s"), ("500ms", 0.5, "500ms"),
    ("2h", 7200.0, "2h"), ("1.5s", 1.5, "1.5s"), (1_500_000_000, 1.5, "1.5s"), ("0", 0.0, "0s"),
])
def test_durations_round_trip(text: object, seconds: float, canonical: str) -> None:
    assert parse_duration(text) == pytest.approx(seconds)
    assert format_duration(parse_duration(text)) == canonical


@pytest.mark.parametrize("bad", ["", "30", "s", "1m 30s", "-1s", 1.5, True, None, -5])
def test_bad_durations_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(bad)
