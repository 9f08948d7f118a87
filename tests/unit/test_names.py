"""dagnats.names: every builder's output parses back to what it was built from, parsers
refuse anything else, and the module stays pure."""

from __future__ import annotations

import ast
import pathlib
import string
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dagnats import names

#: Small runs keep the unit tier fast; each property still sees a good spread of names.
small = settings(max_examples=100, deadline=None)

tokens = st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=40)
run_ids = tokens
counts = st.integers(min_value=0, max_value=10**9)
#: A token of a subject as NATS stores it: no dot, wildcard or whitespace (KV keys use these).
subject_tokens = st.text(
    st.characters(blacklist_categories=("Z", "C"), blacklist_characters=".*>"),
    min_size=1, max_size=12)
operations = st.lists(st.text(string.ascii_letters + string.digits + "_", min_size=1,
                              max_size=12), min_size=1, max_size=3).map(".".join)
step_kinds = st.one_of(st.sampled_from(sorted(names.STEP_KINDS)),
                       counts.map(names.started_kind), counts.map(names.recovered_kind),
                       counts.map(names.skipped_kind), counts.map(names.signal_waiting_kind),
                       counts.map(names.signal_resumed_kind))
event_types = st.lists(tokens, min_size=1, max_size=4).map(".".join)


@small
@given(event_types)
def test_event_subject(event_type: str) -> None:
    assert names.parse_event_subject(names.event_subject(event_type)) == event_type
    assert names.event_subject(event_type).startswith(names.event_filter()[:-1])


@small
@given(event_types, run_ids, tokens)
def test_waiter_key(event_type: str, run_id: str, step_id: str) -> None:
    key = names.waiter_key(event_type, run_id, step_id)
    assert names.parse_waiter_key(key) == (event_type, run_id, step_id)
    filtered = names.waiters_filter(event_type)
    assert names.kv_subject(names.WAITERS_BUCKET, key).split(".")[:-2] == filtered.split(".")[:-2]
    assert len(filtered.split(".")) == len(names.kv_subject(names.WAITERS_BUCKET, key).split("."))


@small
@given(tokens)
def test_approval_subject(workflow: str) -> None:
    assert names.parse_approval_subject(names.approval_subject(workflow)) == workflow


@small
@given(run_ids, tokens)
def test_signal_and_checkpoint_keys(run_id: str, item: str) -> None:
    assert names.parse_signal_key(names.signal_key(run_id, item)) == (run_id, item)
    assert names.parse_checkpoint_key(names.checkpoint_key(run_id, item)) == (run_id, item)
    assert names.signal_key(run_id, item).startswith(names.signal_filter(run_id)[:-1])


@small
@given(run_ids, tokens, counts)
def test_signal_sent_msg_id(run_id: str, name: str, sent_at_us: int) -> None:
    msg_id = names.signal_sent_msg_id(run_id, name, sent_at_us)
    assert names.parse_signal_sent_msg_id(msg_id) == (run_id, name, sent_at_us)


@small
@given(counts, tokens, counts)
def test_timer_names(generation: int, step_id: str, attempt: int) -> None:
    assert names.parse_timer_name(names.timeout_timer_name(generation)) == generation
    step_timer = names.step_timer_name(step_id, attempt)
    assert names.parse_timer_name(step_timer) == (step_id, attempt)
    assert names.is_token(step_timer)


@pytest.mark.parametrize("bad", ["event", "event.", "event.a b", "events.x", "event.a..b"])
def test_foreign_event_subjects_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        names.parse_event_subject(bad)


@pytest.mark.parametrize("bad", ["timeout-x", "timeout-01", "step-", "step-a", "step-a-", "x"])
def test_foreign_timer_names_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        names.parse_timer_name(bad)


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: `*` one token, `>` one or more at the end."""
    want, have = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or token not in ("*", have[i]):
            return False
    return len(have) == len(want)


@small
@given(run_ids, tokens)
def test_history_subjects(run_id: str, task: str) -> None:
    events, tasks = names.history_subject(run_id), names.history_task_subject(run_id, task)
    assert names.parse_history_subject(events) == (run_id, None)
    assert names.parse_history_subject(tasks) == (run_id, task)
    assert names.history_run_of(tasks) == names.history_run_of(events) == run_id
    partition = names.history_partition(run_id)
    assert 0 <= partition < names.HISTORY_PARTITIONS and partition == zlib.crc32(
        run_id.encode()) % names.HISTORY_PARTITIONS
    for subject in (events, tasks):
        assert subject_matches(names.history_filter(), subject)
        assert subject_matches(names.history_run_filter(run_id), subject)
    # The engine consumes events, not tasks; a task's workers consume its tasks only.
    assert subject_matches(names.history_events_filter(), events)
    assert not subject_matches(names.history_events_filter(), tasks)
    assert subject_matches(names.history_tasks_filter(task), tasks)
    assert not subject_matches(names.history_tasks_filter(task), events)
    assert not subject_matches(names.history_tasks_filter(task + "x"), tasks)
    assert not subject_matches(names.history_run_filter(run_id + "x"), events)
    legacy = names.legacy_history_subject(run_id)
    assert names.parse_legacy_history_subject(legacy) == run_id
    assert subject_matches(names.legacy_history_filter(), legacy)
    assert not subject_matches(names.legacy_history_filter(), events)
    with pytest.raises(ValueError):
        names.parse_history_subject(legacy)


@small
@given(tokens)
def test_task_consumer(task: str) -> None:
    assert names.parse_task_consumer(names.task_consumer(task)) == task
    assert names.is_token(names.task_consumer(task))


@small
@given(tokens.filter(lambda t: t != names.POISON_TOKEN), run_ids, tokens)
def test_dead_subject(task: str, run_id: str, step_id: str) -> None:
    subject = names.dead_subject(task, run_id, step_id)
    assert names.parse_dead_subject(subject) == (task, run_id, step_id)
    assert not names.is_poison_subject(subject)


@small
@given(tokens, counts)
def test_poison_subject(source: str, seq: int) -> None:
    subject = names.poison_subject(source, seq)
    assert names.parse_poison_subject(subject) == (source, seq)
    assert names.is_poison_subject(subject)


@small
@given(run_ids, tokens)
def test_timer_subject(run_id: str, name: str) -> None:
    assert names.parse_timer_subject(names.timer_subject(run_id, name)) == (run_id, name)
    assert names.timer_subject(run_id, name).startswith(names.timer_filter()[:-1])


@small
@given(tokens, st.lists(subject_tokens, min_size=1, max_size=4).map(".".join))
def test_kv_subject_and_stream(bucket: str, key: str) -> None:
    assert names.parse_kv_subject(names.kv_subject(bucket, key)) == (bucket, key)
    assert names.kv_subject(bucket, key).startswith(names.kv_filter(bucket)[:-1])
    assert names.parse_kv_stream(names.kv_stream(bucket)) == bucket


@small
@given(tokens)
def test_kv_keys(value: str) -> None:
    assert names.parse_def_key(names.def_key(value)) == value
    assert names.parse_run_key(names.run_key(value)) == value
    assert names.parse_cancel_key(names.cancel_key(value)) == value


@small
@given(tokens, st.text(max_size=60))
def test_idempotency_key(workflow: str, key: str) -> None:
    built = names.idempotency_key(workflow, key)
    assert names.parse_idempotency_key(built) == built  # a digest: its shape is all to check
    assert names.idempotency_key(workflow, key) == built


@small
@given(operations)
def test_api_subject_and_endpoint(operation: str) -> None:
    assert names.parse_api_subject(names.api_subject(operation)) == operation
    assert names.parse_api_endpoint(names.api_endpoint(operation)) == operation


@small
@given(tokens, tokens)
def test_jetstream_api_subjects(stream: str, durable: str) -> None:
    assert names.parse_stream_info_subject(names.stream_info_subject(stream)) == stream
    subject = names.consumer_next_subject(stream, durable)
    assert names.parse_consumer_next_subject(subject) == (stream, durable)


def test_instance_step_id_round_trip_and_refusals() -> None:
    assert names.parse_instance_step_id(names.instance_step_id("each", 37)) == ("each", 37)
    for bad in ("each", "each[]", "each[01]", "each[-1]", "[3]", "a..b[3]", "each[3]x"):
        with pytest.raises(ValueError):
            names.parse_instance_step_id(bad)
    assert names.parse_instance_step_id("plan.each[3]") == ("plan.each", 3)


#: Step ids as runs have them: declared, a planner's (`plan.fetch`), a map instance's.
step_ids = st.one_of(tokens, st.tuples(tokens, tokens).map(".".join),
                     st.tuples(tokens, counts).map(lambda p: names.instance_step_id(*p)),
                     st.tuples(tokens, tokens, counts).map(
                         lambda p: names.instance_step_id(f"{p[0]}.{p[1]}", p[2])))


@small
@given(run_ids, tokens, step_ids, counts)
def test_every_name_built_from_a_step_id_parses_back(run_id: str, task: str, step_id: str,
                                                     attempt: int) -> None:
    token = names.step_token(step_id)
    assert names.is_token(token.replace("/", "_").replace("=", "_"))
    assert "." not in token and names.parse_step_token(token) == step_id
    assert names.parse_dead_subject(names.dead_subject(task, run_id, step_id)) == (
        task, run_id, step_id)
    assert names.parse_waiter_key(names.waiter_key("a.b", run_id, step_id)) == (
        "a.b", run_id, step_id)
    assert names.parse_checkpoint_key(names.checkpoint_key(run_id, step_id)) == (
        run_id, step_id)
    timer = names.step_timer_name(step_id, attempt)
    assert names.parse_timer_name(timer) == (step_id, attempt)
    assert names.parse_timer_subject(names.timer_subject(run_id, timer)) == (run_id, timer)


@small
@given(tokens, counts)
def test_instance_step_id(step_id: str, index: int) -> None:
    built = names.instance_step_id(step_id, index)
    assert names.parse_instance_step_id(built) == (step_id, index)
    assert not names.is_token(built)


@small
@given(run_ids, tokens, counts, step_kinds)
def test_step_event_msg_id(run_id: str, step_id: str, attempt: int, kind: str) -> None:
    msg_id = names.step_event_msg_id(run_id, step_id, attempt, kind)
    assert names.parse_step_event_msg_id(msg_id) == (run_id, step_id, attempt, kind)


@small
@given(counts)
def test_step_kinds(number: int) -> None:
    assert names.parse_step_kind(names.started_kind(number)) == ("started", number)
    assert names.parse_step_kind(names.recovered_kind(number)) == ("recovered", number)
    assert names.parse_step_kind(names.skipped_kind(number)) == ("skipped", number)
    for kind in names.STEP_KINDS:
        assert names.parse_step_kind(kind) == (kind, None)


@small
@given(run_ids, st.sampled_from(sorted(names.RUN_EVENT_KINDS)), counts)
def test_run_event_msg_ids(run_id: str, kind: str, generation: int) -> None:
    msg_id = names.run_event_msg_id(run_id, kind, generation)
    assert names.parse_run_event_msg_id(msg_id) == (run_id, kind, generation)
    assert names.parse_started_msg_id(names.started_msg_id(run_id)) == run_id
    resumed = names.resumed_msg_id(run_id, generation)
    assert names.parse_resumed_msg_id(resumed) == (run_id, "resumed", generation)


@small
@given(run_ids, tokens, counts)
def test_attempt_msg_ids(run_id: str, step_id: str, attempt: int) -> None:
    dead = names.dead_letter_msg_id(run_id, step_id, attempt)
    assert names.parse_dead_letter_msg_id(dead) == (run_id, step_id, attempt)
    assert names.parse_timer_msg_id(names.timer_msg_id(run_id, step_id)) == (run_id, step_id)


@small
@given(tokens, counts)
def test_poison_msg_id(source: str, seq: int) -> None:
    assert names.parse_poison_msg_id(names.poison_msg_id(source, seq)) == (source, seq)


MSG_ID_PARSERS: dict[str, Callable[[str], Any]] = {
    "started": names.parse_started_msg_id, "step": names.parse_step_event_msg_id,
    "run": names.parse_run_event_msg_id, "resumed": names.parse_resumed_msg_id,
    "timer": names.parse_timer_msg_id,
    "dead": names.parse_dead_letter_msg_id, "poison": names.parse_poison_msg_id,
}


@small
@given(st.uuids().map(lambda u: u.hex), tokens, counts, step_kinds,
       st.sampled_from(sorted(names.RUN_EVENT_KINDS)))
def test_each_msg_id_kind_is_read_by_its_parser_alone(run_id: str, step_id: str, n: int,
                                                      kind: str, run_kind: str) -> None:
    built = {
        "started": names.started_msg_id(run_id),
        "step": names.step_event_msg_id(run_id, step_id, n, kind),
        "run": names.run_event_msg_id(run_id, run_kind, n),
        "resumed": names.resumed_msg_id(run_id, n), "timer": names.timer_msg_id(run_id, step_id),
        "dead": names.dead_letter_msg_id(run_id, step_id, n),
        "poison": names.poison_msg_id(names.HISTORY_PREFIX, n),
    }
    for which, msg_id in built.items():
        accepted = set()
        for parser_kind, parse in MSG_ID_PARSERS.items():
            try:
                parse(msg_id)
            except ValueError:
                continue
            accepted.add(parser_kind)
        assert accepted == {which}, msg_id


@pytest.mark.parametrize(("parse", "wrong"), [
    (names.parse_history_subject, "history"),
    (names.parse_history_subject, "history."),
    (names.parse_history_subject, "history.a.b"),
    (names.parse_history_subject, "history.abc"),
    (names.parse_history_subject, "history.0.abc.event"),  # the wrong partition (it is 2)
    (names.parse_history_subject, "history.2.abc.events"),
    (names.parse_history_subject, "history.2.abc.task"),
    (names.parse_history_subject, "history.2.abc.task.>"),
    (names.parse_history_subject, "history.2.abc.task.t.u"),
    (names.parse_history_subject, "history.2.a b.event"),
    (names.parse_history_subject, "history.2.abc.event\n"),
    (names.parse_history_subject, "task.2.abc.event"),
    (names.parse_legacy_history_subject, "history.2.abc.event"),
    (names.parse_dead_subject, "dead.t.r"),
    (names.parse_dead_subject, "dead._poison.task.1"),
    (names.parse_poison_subject, "dead._poison.task.01"),
    (names.parse_poison_subject, "dead._poison.task.x"),
    (names.parse_timer_subject, "timer.r"),
    (names.parse_task_consumer, "engine"),
    (names.parse_task_consumer, "task_"),
    (names.parse_kv_subject, "$KV.bucket"),
    (names.parse_kv_subject, "$KV.bucket.a b"),
    (names.parse_kv_subject, "KV.bucket.key"),
    (names.parse_kv_stream, "WORKFLOW_HISTORY"),
    (names.parse_run_key, "a.b"),
    (names.parse_cancel_key, ""),
    (names.parse_def_key, "a/b"),
    (names.parse_idempotency_key, "ab" * 31),
    (names.parse_idempotency_key, "AB" * 32),
    (names.parse_api_subject, "dagnats.api."),
    (names.parse_api_subject, "dagnats.apix.run"),
    (names.parse_api_endpoint, "run.start"),
    (names.parse_api_endpoint, "run--start"),
    (names.parse_stream_info_subject, "$JS.API.STREAM.INFO"),
    (names.parse_consumer_next_subject, "$JS.API.CONSUMER.MSG.NEXT.S"),
    (names.parse_started_msg_id, "r:completed"),
    (names.parse_step_event_msg_id, "r:s:1:task"),
    (names.parse_step_event_msg_id, "r:s:01:queued"),
    (names.parse_step_event_msg_id, "r:s:1:started-"),
    (names.parse_step_kind, "recovered-1"),
    (names.parse_run_event_msg_id, "r:started"),
    (names.parse_run_event_msg_id, "r:g0:completed"),
    (names.parse_run_event_msg_id, "r:resumed:2"),
    (names.parse_run_event_msg_id, "r:g1:queued"),
    (names.parse_resumed_msg_id, "r:resumed:-1"),
    (names.parse_timer_msg_id, "r:timers:x"),
    (names.parse_dead_letter_msg_id, "r:s:x:dead"),
    (names.parse_poison_msg_id, "poison:task"),
])
def test_parsers_refuse_other_names(parse: Callable[[str], Any], wrong: str) -> None:
    with pytest.raises(ValueError):
        parse(wrong)


def test_the_documented_wire_format() -> None:
    """What other tools and stored data rely on: changing any of these breaks them."""
    assert names.history_subject("r1") == "history.17.r1.event"
    assert names.history_task_subject("r1", "greet") == "history.17.r1.task.greet"
    assert names.history_tasks_filter("greet") == "history.*.*.task.greet"
    assert names.history_events_filter() == "history.*.*.event"
    assert names.task_consumer("greet") == "task_greet"
    assert names.dead_subject("t", "r", "s") == "dead.t.r.s"
    assert names.poison_subject("task", 7) == "dead._poison.task.7"
    assert names.timer_subject("r", "timeout-0") == "timer.r.timeout-0"
    assert names.kv_subject("workflow_runs", "r") == "$KV.workflow_runs.r"
    assert names.api_subject("run.start") == "dagnats.api.run.start"
    assert names.step_event_msg_id("r", "s", 1, names.started_kind(2)) == "r:s:1:started-2"
    assert names.run_event_msg_id("r", "failed", 2) == "r:g2:failed"
    assert names.run_event_msg_id("r", "failed") == "r:failed"
    assert names.started_msg_id("r") == "r:started"
    assert names.step_event_msg_id("r", "s", 0, names.skipped_kind(1)) == "r:s:0:skipped-g1"
    assert names.step_event_msg_id("r", "s", 2, names.recovered_kind(0)) == "r:s:2:recovered-g0"
    assert names.resumed_msg_id("r", 1) == "r:resumed:1"
    assert names.timer_msg_id("r", "timeout-0") == "r:timer:timeout-0"
    assert names.dead_letter_msg_id("r", "s", 1) == "r:s:1:dead"
    assert names.poison_msg_id("task", 7) == "poison:task:7"
    assert names.api_endpoint("run.start") == "run-start"
    assert names.kv_stream("workflow_runs") == "KV_workflow_runs"
    assert names.stream_info_subject("S") == "$JS.API.STREAM.INFO.S"
    assert names.consumer_next_subject("S", "d") == "$JS.API.CONSUMER.MSG.NEXT.S.d"
    assert names.idempotency_key("w", "k") == (  # sha256 of "w\x00k"
        "a5b43d98815e8e448671201f5fa1101b"
        "8bc1de284287e623ce31dd38c3a07573")


def test_the_names_module_is_pure() -> None:
    allowed = {"__future__", "hashlib", "re", "typing", "dataclasses", "zlib"}
    tree = ast.parse(pathlib.Path("dagnats/names.py").read_text())
    for node in ast.walk(tree):
        found = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        for module in found:
            assert module.split(".")[0] in allowed, f"dagnats/names.py imports {module}"


digests = st.text("0123456789abcdef", min_size=64, max_size=64)


@small
@given(run_ids, digests)
def test_payload_object(run_id: str, digest: str) -> None:
    name = names.payload_object(run_id, digest)
    assert names.parse_payload_object(name) == (run_id, digest)
    assert name.startswith(names.payload_prefix(run_id))


@pytest.mark.parametrize("bad", ["run", "run.", "run.abc", "a.b." + "0" * 64, "." + "0" * 64,
                                 "run." + "G" * 64])
def test_foreign_payload_names_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        names.parse_payload_object(bad)


@small
@given(tokens)
def test_payload_chunks_subject(nuid: str) -> None:
    assert names.parse_payload_chunks_subject(names.payload_chunks_subject(nuid)) == nuid


@small
@given(st.lists(st.one_of(tokens, st.sampled_from(["*", ">"])), min_size=1, max_size=6))
def test_js_api_subject(tokens_: list[str]) -> None:
    assert names.parse_js_api_subject(names.js_api_subject(*tokens_)) == tuple(tokens_)
    assert names.js_api_subject(*tokens_).startswith(names.JS_API_PREFIX + ".")


@pytest.mark.parametrize("subject", ["$JS.API", "$JS.API.", "$JS.ACK.S.x", "JS.API.INFO",
                                     "$JS.API..INFO"])
def test_parse_js_api_subject_refuses(subject: str) -> None:
    with pytest.raises(ValueError):
        names.parse_js_api_subject(subject)


@small
@given(tokens, tokens, counts)
def test_permission_filters_match_what_they_allow(stream: str, source: str, seq: int) -> None:
    def matches(pattern: str, subject: str) -> bool:
        head = pattern.removesuffix(">")
        return subject.startswith(head) and len(subject) > len(head)

    assert matches(names.poison_filter(source), names.poison_subject(source, seq))
    assert matches(names.js_ack_filter(stream), f"{names.JS_ACK_PREFIX}.{stream}.d.1.2.3")
    assert names.js_flow_control_filter() == "$JS.FC.>"
    assert names.inbox_filter() == "_INBOX.>"


@given(run_ids.filter(lambda run_id: run_id != names.INDEX_BACKFILLED_TOKEN), counts, tokens)
def test_run_index_names(run_id: str, seq: int, stream: str) -> None:
    subject = names.run_index_subject(run_id)
    assert names.parse_run_index_subject(subject) == run_id
    assert subject.startswith(names.run_index_filter()[:-1])
    assert names.run_index_marker_subject().startswith(names.run_index_filter()[:-1])
    with pytest.raises(ValueError):
        names.parse_run_index_subject(names.run_index_marker_subject())
    assert names.parse_run_index_msg_id(names.run_index_msg_id(run_id, seq)) == (run_id, seq)
    assert names.parse_direct_get_subject(names.direct_get_subject(stream)) == stream
@given(run_ids, tokens)
def test_live_subject_and_direct_get(run_id: str, stream: str) -> None:
    for task in (None, stream):
        stored = names.history_task_subject(run_id, task) if task else names.history_subject(
            run_id)
        live = names.LIVE_PREFIX + stored.removeprefix(names.HISTORY_PREFIX)  # the republish
        assert names.parse_live_subject(live) == (run_id, task)
        assert subject_matches(names.live_run_filter(run_id), live)
        assert subject_matches(names.live_filter(), live)
    assert names.parse_direct_get_subject(names.direct_get_subject(stream)) == stream


@pytest.mark.parametrize(("parse", "wrong"), [
    (names.parse_live_subject, "dagnats.live"),
    (names.parse_live_subject, "dagnats.live.a.b"),
    (names.parse_live_subject, "dagnats.live.abc"),
    (names.parse_live_subject, "history.2.abc.event"),
    (names.parse_direct_get_subject, "$JS.API.DIRECT.GET"),
    (names.parse_direct_get_subject, "$JS.API.DIRECT.GET.S.x"),
])
def test_live_parsers_refuse_other_names(parse: Any, wrong: str) -> None:
    with pytest.raises(ValueError):
        parse(wrong)


def test_the_live_wire_format() -> None:
    """Followers and other tools rely on these."""
    assert names.live_run_filter("r1") == "dagnats.live.17.r1.>"
    assert names.direct_get_subject("WORKFLOW_HISTORY") == "$JS.API.DIRECT.GET.WORKFLOW_HISTORY"
@given(tokens, run_ids, tokens)
def test_retention_names(stream: str, run_id: str, timer: str) -> None:
    assert names.parse_stream_purge_subject(names.stream_purge_subject(stream)) == stream
    run_filter = names.timer_run_filter(run_id)
    assert names.parse_timer_run_filter(run_filter) == run_id
    assert names.timer_subject(run_id, timer).startswith(run_filter[:-1])
    with pytest.raises(ValueError):
        names.parse_timer_run_filter(names.timer_subject(run_id, timer))
    with pytest.raises(ValueError):
        names.parse_stream_purge_subject(names.stream_info_subject(stream))


@small
@given(tokens, counts)
def test_presence_names(worker_id: str, beat: int) -> None:
    subject = names.presence_subject(worker_id)
    assert names.parse_presence_subject(subject) == worker_id
    assert subject.startswith(names.presence_filter()[:-1])
    msg_id = names.presence_msg_id(worker_id, beat)
    assert names.parse_presence_msg_id(msg_id) == (worker_id, beat)
    with pytest.raises(ValueError):
        names.parse_presence_subject(names.legacy_history_subject(worker_id))


@given(st.integers(0, names.HISTORY_PARTITIONS - 1), run_ids, tokens)
def test_partition_names(partition: int, run_id: str, engine_id: str) -> None:
    assert names.parse_engine_consumer(names.engine_consumer(partition)) == partition
    assert names.is_token(names.engine_consumer(partition))
    assert names.parse_lease_key(names.lease_key(partition)) == partition
    assert names.parse_engine_key(names.engine_key(engine_id)) == engine_id
    events = names.history_subject(run_id)
    mine = names.history_partition(run_id)
    assert subject_matches(names.history_partition_filter(mine), events)
    assert not subject_matches(names.history_partition_filter((mine + 1) % 32), events)
    assert not subject_matches(names.history_partition_filter(mine),
                               names.history_task_subject(run_id, engine_id))


@pytest.mark.parametrize(("parse", "wrong"), [
    (names.parse_engine_consumer, "engine"),
    (names.parse_engine_consumer, "engine_32"),
    (names.parse_engine_consumer, "engine_01"),
    (names.parse_engine_consumer, "task_1"),
    (names.parse_lease_key, "partition"),
    (names.parse_lease_key, "partition.32"),
    (names.parse_lease_key, "partition.x"),
    (names.parse_lease_key, "engine.1"),
    (names.parse_engine_key, "engine"),
    (names.parse_engine_key, "engine.a.b"),
    (names.parse_engine_key, "partition.1"),
])
def test_partition_parsers_refuse_other_names(parse: Any, wrong: str) -> None:
    with pytest.raises(ValueError):
        parse(wrong)
