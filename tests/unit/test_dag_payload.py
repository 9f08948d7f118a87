"""Out-of-line values in the pure core: references travel beside values, are composed by
key, fill back in, and never make a snapshot grow with the data."""

from __future__ import annotations

from typing import Any

from dagnats.dag.actions import CompleteRun, DispatchStep, event_for
from dagnats.dag.advance import advance
from dagnats.dag.events import EventType
from dagnats.dag.payload import MB, encode, materialize, nest, ref_for, refs_json, too_large
from dagnats.limits import PAYLOAD_MAX_BYTES
from tests.unit.test_dag_run import RUN, T0, History, definition

BIG = {"blob": "x" * 100_000, "n": 7}
BIG_REF = ref_for(encode(BIG))
OTHER_REF = ref_for(encode("other"))


def test_nest_and_materialize_compose_by_key() -> None:
    value, refs = nest({"a": (None, {"": BIG_REF}), "b": (2, {}),
                        "c": ({"k": None}, {"k": OTHER_REF})})
    assert value == {"a": None, "b": 2, "c": {"k": None}}
    assert refs == {"a": BIG_REF, "c.k": OTHER_REF}
    found = {BIG_REF.digest: BIG, OTHER_REF.digest: "other"}
    assert materialize(value, refs, found) == {"a": BIG, "b": 2, "c": {"k": "other"}}
    assert materialize(value, refs, {}) == value  # not fetched: stays null
    assert value == {"a": None, "b": 2, "c": {"k": None}}  # a copy: the original is intact


def test_user_data_that_looks_like_a_reference_is_just_data() -> None:
    lookalike = {"digest": BIG_REF.digest, "size": BIG_REF.size}
    h = History(definition([{"id": "a", "task": "t"}]), run_input=lookalike)
    assert h.carry_out() == [DispatchStep("a", "t", 1, lookalike)]


def test_too_large_names_the_size_and_the_limit() -> None:
    assert too_large("output of step \"b\"", PAYLOAD_MAX_BYTES) is None
    assert too_large("output of step \"b\"", 40 * MB) == (
        'output of step "b" is 40.0 MB; the limit is 32 MB')


def big_pipeline() -> History:
    h = History(definition([
        {"id": "a", "task": "t"}, {"id": "b", "task": "t"},
        {"id": "join", "task": "j", "depends_on": ["a", "b"]},
    ]), run_input=None)
    started = h.events[0]
    h.events[0] = started.model_copy(update={"data": {
        **started.data, "input_refs": refs_json({"": BIG_REF})}})
    return h


def test_out_of_line_values_travel_as_references_into_tasks_and_the_run_output() -> None:
    h = big_pipeline()
    assert h.carry_out() == [DispatchStep("a", "t", 1, None, input_refs={"": BIG_REF}),
                             DispatchStep("b", "t", 1, None, input_refs={"": BIG_REF})]
    h.add(EventType.STEP_COMPLETED, "a", 1, output=None,
          output_refs=refs_json({"": OTHER_REF}))
    h.add(EventType.STEP_COMPLETED, "b", 1, output=2)
    [join] = h.carry_out()
    assert join == DispatchStep("join", "j", 1, {"a": None, "b": 2},
                                input_refs={"a": OTHER_REF})
    queued = event_for(join, RUN, T0)
    assert queued.data["input_refs"] == {"a": OTHER_REF.model_dump()}
    h.add(EventType.STEP_COMPLETED, "join", 1, output=None,
          output_refs=refs_json({"": BIG_REF}))
    assert h.carry_out()[0] == CompleteRun(None, {"": BIG_REF})
    run = h.run()
    assert run.output_refs == {"": BIG_REF}
    assert run.steps["join"].input_refs == {"a": OTHER_REF}
    public = run.public()
    assert public["input_refs"] == {"": BIG_REF.model_dump()}
    assert public["steps"]["a"]["output_refs"] == {"": OTHER_REF.model_dump()}


def test_a_snapshot_holds_references_not_data() -> None:
    h = big_pipeline()
    h.carry_out()
    run = h.run()
    stored = run.model_dump_json(exclude_defaults=True)
    assert len(stored) < 4096 and BIG["blob"][:100] not in stored
    assert h.run().model_validate_json(stored).input_refs == {"": BIG_REF}


def test_small_values_carry_no_reference_fields() -> None:
    h = History(definition([{"id": "a", "task": "t"}]))
    [dispatch] = h.carry_out()
    assert "input_refs" not in event_for(dispatch, RUN, T0).data
    assert "input_refs" not in h.run().model_dump_json(exclude_defaults=True)


def skip_on_big_output() -> tuple[History, Any]:
    h = History(definition([
        {"id": "a", "task": "t"},
        {"id": "b", "task": "t", "depends_on": ["a"],
         "skip_if": {"step_id": "a", "field": "n", "op": "==", "value": 7}},
    ]))
    h.carry_out()
    completed = h.add(EventType.STEP_COMPLETED, "a", 1, output=None,
                      output_refs=refs_json({"": BIG_REF}))
    return h, completed


def test_advance_reads_inside_an_out_of_line_output_once_it_is_fetched() -> None:
    h, completed = skip_on_big_output()
    run = h.run()
    assert run.wanted_refs() == [BIG_REF]
    fetched = run.model_copy(update={"fetched": {BIG_REF.digest: BIG}})
    assert fetched.wanted_refs() == []
    [skip] = [a for a in advance(h.definition, fetched, completed)
              if type(a).__name__ == "SkipStep"]
    assert skip.step_id == "b"
    assert "fetched" not in fetched.model_dump_json(exclude_defaults=True)


def test_a_definition_that_reads_nothing_wants_nothing_fetched() -> None:
    h = big_pipeline()
    h.carry_out()
    assert h.run().wanted_refs() == []
