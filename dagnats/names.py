"""Every name dagnats gives: streams, subjects, KV buckets and keys, consumers, API subjects
and message ids. Pure: builders and parsers only; `dagnats.jetstream` is the transport.

Nothing else in the code base formats or parses one of these names: build them here, and
parse them here. Each parser takes exactly what its builder makes (`parse(build(x)) == x`,
a property test checks it) and raises ValueError for anything else.

    Streams and their subjects
    WORKFLOW_HISTORY   history.<p>.<run>.event   every event of a run; the source of truth
                       history.<p>.<run>.task.<task>
                                                 its step.queued events of task steps: the
                                                 tasks workers pull (<p>: the run's partition)
    DEAD_LETTERS       dead.<task>.<run>.<step>  steps that failed for good (30 days)
                       dead._poison.<src>.<seq>  messages nobody could read, raw (<src>:
                                                 history or timer, their prefix)
    TIMERS             timer.<run-id>.<name>     durable timers (work queue) the engine fires
    EVENTS             event.<type>              events wait_for_event steps wait for (24 h);
                                                 <type>: dot-separated tokens

    KV buckets (stream KV_<bucket>, subjects $KV.<bucket>.<key>) and their keys
    workflow_defs      <name>                    registered definitions, every version
    workflow_runs      <run-id>                  run snapshots: a cache rebuilt from history
    run_cancellations  <run-id>                  cancelled runs, watched by workers (7 days)
    run_idempotency    <sha256 hex>              idempotency keys -> run ids (24 h); the
                                                 digest of (workflow, idempotency key)
    event_waiters      <type>.<run-id>.<step>    steps waiting for an event of <type>
    run_signals        <run-id>.<name>           the latest value of each signal of a run
    step_checkpoints   <run-id>.<step-id>        each step's checkpoint (both: until the
                                                 run ends for good, 7 days at most)

    engine_leases      partition.<p>             the engine that handles partition <p>
                       engine.<engine-id>        a live engine (both rewritten each second)

    Durable consumers
    engine_<p>         on WORKFLOW_HISTORY       partition <p>'s events (not tasks); pulled
                                                 by the engine holding its lease
    timers             on TIMERS                 shared by every engine process
    task_<task>        on WORKFLOW_HISTORY       the task's tasks; shared by its workers
    event_matcher      on EVENTS                 shared by every engine process

    Core NATS (not stored)
    approval.requested.<workflow>                approval requests, for notifiers
    dagnats.live.<p>.<run>.<rest>                each stored history event, republished
                                                 by WORKFLOW_HISTORY (followers listen)

    API: micro service dagnats-api, endpoint <operation with - for .>
    dagnats.api.<operation>                      request/reply, such as dagnats.api.run.start

    JetStream API subjects dagnats requests itself
    $JS.API.STREAM.INFO.<stream>                 stream info, with subjects (bucket keys)
    $JS.API.CONSUMER.MSG.NEXT.<stream>.<durable> pull requests
    $JS.API.DIRECT.GET.<stream>                  direct gets (batched: a run's history)

    Message ids (Nats-Msg-Id): deterministic, so a publish repeated after a crash or a
    redelivery is dropped within DUPLICATE_WINDOW_S
    <run>:started                     workflow.started
    <run>:<step>:<attempt>:<kind>     step events; <kind>: queued, started-<delivery>,
                                      completed, failed, recovered-g<gen>, skipped-g<gen>,
                                      waiting, engine-completed, engine-failed (the
                                      engine's outcome of a step it runs itself),
                                      signal-waiting-<n>, signal-resumed-<n> (a handler
                                      waiting for a signal; <n> a random number per wait)
    <run>:<kind>                      run events of generation 0; <kind>: completed, failed,
    <run>:g<gen>:<kind>               cancelled, compensating, compensated, compensate_failed
    <run>:resumed:<gen>               workflow.resumed, starting generation <gen>
    <run>:timer:<name>                a timer, and the timer.fired event it becomes
    <run>:signal:<name>:<µs>          the signal.sent event of one signal
    <run>:<step>:<attempt>:dead       the dead letter of a step's last attempt
    poison:<src>:<seq>                a raw poison dead letter
"""

from __future__ import annotations

import hashlib
import re
import zlib
from typing import NamedTuple

# Streams, buckets, consumers and the prefixes of their subjects (the table above).
HISTORY_STREAM = "WORKFLOW_HISTORY"
HISTORY_PREFIX = "history"
DEFS_BUCKET = "workflow_defs"
RUNS_BUCKET = "workflow_runs"
DEAD_STREAM = "DEAD_LETTERS"
DEAD_PREFIX = "dead"
POISON_TOKEN = "_poison"
TIMER_STREAM = "TIMERS"
TIMER_PREFIX = "timer"
TIMER_CONSUMER = "timers"
CANCEL_BUCKET = "run_cancellations"
IDEMPOTENCY_BUCKET = "run_idempotency"
EVENT_STREAM = "EVENTS"
EVENT_PREFIX = "event"
EVENT_CONSUMER = "event_matcher"
WAITERS_BUCKET = "event_waiters"
SIGNALS_BUCKET = "run_signals"
CHECKPOINTS_BUCKET = "step_checkpoints"
APPROVAL_PREFIX = "approval.requested"
API_PREFIX = "dagnats.api"
API_SERVICE = "dagnats-api"
ENGINE_CONSUMER = "engine"  # store layout 2 before partitions (only the move reads it)
ENGINE_CONSUMER_PREFIX = "engine_"
LEASES_BUCKET = "engine_leases"
#: The last progress report of each running step (`ctx.progress`), for `run status`.
PROGRESS_BUCKET = "step_progress"
#: Core NATS prefixes of progress reports and streamed chunks: live only, never stored.
PROGRESS_PREFIX = "dagnats.progress"
CHUNK_PREFIX = "dagnats.stream"
TASK_CONSUMER_PREFIX = "task_"
KV_PREFIX = "$KV"
KV_STREAM_PREFIX = "KV_"
POISON_MSG_PREFIX = "poison"
# Subjects NATS and JetStream name themselves (dagnats requests some; the bench counts all).
JS_API_PREFIX = "$JS.API"
JS_ACK_PREFIX = "$JS.ACK"
JS_FC_PREFIX = "$JS.FC"
JS_EVENT_PREFIX = "$JS.EVENT"
INBOX_PREFIX = "_INBOX"

#: How long JetStream remembers a Nats-Msg-Id to drop duplicate publishes.
DUPLICATE_WINDOW_S = 10 * 60
#: How long the engine may hold a history event before JetStream redelivers it.
ENGINE_ACK_WAIT_S = 10.0
#: How long dead letters are kept.
DEAD_LETTER_MAX_AGE_S = 30 * 24 * 3600
#: How long an idempotency key maps to its run.
IDEMPOTENCY_TTL_S = 24 * 3600
#: How long a cancellation is remembered for workers (far longer than any queued task waits).
CANCEL_TTL_S = 7 * 24 * 3600

TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")
#: The run-event kinds of message ids (closed: a new run event names its kind here).
RUN_EVENT_KINDS = frozenset(
    {"completed", "failed", "cancelled", "compensating", "compensated", "compensate_failed"})
#: Step-event kinds without a number, and those that carry one (started-3, skipped-g1).
STEP_KINDS = frozenset({"queued", "completed", "failed", "waiting", "engine-completed",
                        "engine-failed", "iterated", "child-completed", "child-failed",
                        "planned", "expanded"})
STEP_NUMBERED_KINDS = {"started": "started-", "recovered": "recovered-g", "skipped": "skipped-g",
                       "signal-waiting": "signal-waiting-", "signal-resumed": "signal-resumed-"}

_NUMBER = re.compile(r"^(0|[1-9][0-9]*)$")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_SUBJECT_TOKEN = re.compile(r"^[^\s.*>]+$")
_ENDPOINT_PART = re.compile(r"^[A-Za-z0-9_]+$")
_JS_API = JS_API_PREFIX.split(".")


def is_token(value: str) -> bool:
    """True when `value` can stand alone as one subject token (and a KV key, a durable name)."""
    return bool(TOKEN.match(value))


def prefix(*tokens: str) -> str:
    """The subject prefix `tokens` make, ending with a dot (to match with str.startswith)."""
    return ".".join(tokens) + "."


def _token(value: str) -> bool:
    """is_token, strictly: no trailing newline either (every parser checks with this)."""
    return bool(TOKEN.fullmatch(value))


def _tokens(value: str, what: str, parts: int, *fixed: str) -> list[str]:
    """`value` split on dots, checked: `parts` tokens, the first ones `fixed`, then tokens."""
    found = value.split(".")
    if (len(found) != parts or found[:len(fixed)] != list(fixed)
            or not all(map(_token, found[len(fixed):]))):
        raise ValueError(f"not {what}: {value!r}")
    return found


def _number(text: str, what: str, value: str) -> int:
    """A non-negative integer written canonically (no sign, no leading zero)."""
    if not _NUMBER.fullmatch(text):
        raise ValueError(f"not {what}: {value!r}")
    return int(text)


# Streams' subjects.
#: History subjects carry a partition of the run id (a hash, fixed for a store's layout), so
#: a consumer can take a share of the runs by filter (several engines, issue 12).
HISTORY_PARTITIONS = 32
#: The last token of a history subject that holds a run's events, but not its tasks.
EVENT_TOKEN = "event"
#: The token before a task name: a step.queued event that is the task workers pull.
TASK_TOKEN = "task"


class HistorySubject(NamedTuple):
    """What a history subject names: the run, and the task when it holds one."""

    run_id: str
    task: str | None


def history_partition(run_id: str) -> int:
    """The partition of a run: a stable hash of its id (CRC-32), modulo HISTORY_PARTITIONS."""
    return zlib.crc32(run_id.encode()) % HISTORY_PARTITIONS


def history_subject(run_id: str) -> str:
    """The subject of a run's events (every event but the tasks)."""
    return f"{HISTORY_PREFIX}.{history_partition(run_id)}.{run_id}.{EVENT_TOKEN}"


def history_task_subject(run_id: str, task: str) -> str:
    """The subject of a run's step.queued events of `task`: the tasks its workers pull."""
    return f"{HISTORY_PREFIX}.{history_partition(run_id)}.{run_id}.{TASK_TOKEN}.{task}"


def history_run_filter(run_id: str) -> str:
    """The subject filter of everything one run stored: its events and its tasks."""
    return f"{HISTORY_PREFIX}.{history_partition(run_id)}.{run_id}.>"


def history_filter() -> str:
    """The subject filter matching every run's history."""
    return f"{HISTORY_PREFIX}.>"


def history_events_filter() -> str:
    """Every run's events but not the tasks (what the engine consumes)."""
    return f"{HISTORY_PREFIX}.*.*.{EVENT_TOKEN}"


def history_tasks_filter(task: str) -> str:
    """Every run's tasks of `task` (what that task's workers consume)."""
    return f"{HISTORY_PREFIX}.*.*.{TASK_TOKEN}.{task}"


def parse_history_subject(subject: str) -> HistorySubject:
    """The run (and task) of a history subject; ValueError for any other subject."""
    parts = subject.split(".")
    if len(parts) == 4 and parts[3] == EVENT_TOKEN:
        task = None
    elif len(parts) == 5 and parts[3] == TASK_TOKEN and _token(parts[4]):
        task = parts[4]
    else:
        raise ValueError(f"not a history subject: {subject!r}")
    if parts[0] != HISTORY_PREFIX or not _token(parts[2]) \
            or parts[1] != str(history_partition(parts[2])):
        raise ValueError(f"not a history subject: {subject!r}")
    return HistorySubject(parts[2], task)


def history_run_of(subject: str) -> str:
    """The run id of a history subject; ValueError for any other subject."""
    return parse_history_subject(subject).run_id


# The layout before store version 2 (read only by the move, dagnats.store.layout): one
# subject per run for every event, and tasks on a work-queue stream of their own.
LEGACY_TASK_STREAM = "TASK_QUEUES"


def legacy_history_subject(run_id: str) -> str:
    """A run's subject in the layout of store version 1: `history.<run-id>`."""
    return f"{HISTORY_PREFIX}.{run_id}"


def legacy_history_filter() -> str:
    """Every run's subject in the layout of store version 1."""
    return f"{HISTORY_PREFIX}.*"


def parse_legacy_history_subject(subject: str) -> str:
    """The run id of a store version 1 history subject; ValueError for any other."""
    return _tokens(subject, "a version 1 history subject", 2, HISTORY_PREFIX)[1]


class DeadSubject(NamedTuple):
    """What a dead-letter subject names."""

    task: str
    run_id: str
    step_id: str


def dead_subject(task: str, run_id: str, step_id: str) -> str:
    """Where the dead letter of a step that failed for good is kept."""
    return f"{DEAD_PREFIX}.{task}.{run_id}.{step_token(step_id)}"


def dead_filter(run_id: str | None = None) -> str:
    """The subject filter of every dead letter, or of one run's."""
    return f"{DEAD_PREFIX}.*.{run_id}.*" if run_id else f"{DEAD_PREFIX}.>"


def parse_dead_subject(subject: str) -> DeadSubject:
    """(task, run id, step id) of a dead-letter subject; ValueError for any other."""
    parts = subject.split(".")
    if len(parts) != 4 or parts[0] != DEAD_PREFIX or not _token(parts[1]) \
            or not _token(parts[2]):
        raise ValueError(f"not a dead-letter subject: {subject!r}")
    if parts[1] == POISON_TOKEN:
        raise ValueError(f"not a dead-letter subject: {subject!r} (a poison message's)")
    try:
        return DeadSubject(parts[1], parts[2], parse_step_token(parts[3]))
    except ValueError:
        raise ValueError(f"not a dead-letter subject: {subject!r}") from None


class PoisonSubject(NamedTuple):
    """What a poison subject names: the source's subject prefix and its stream sequence."""

    source: str
    seq: int


def poison_subject(source: str, seq: int) -> str:
    """Where an unreadable message from `source` (history, task, timer) at `seq` is kept raw."""
    return f"{DEAD_PREFIX}.{POISON_TOKEN}.{source}.{seq}"


def is_poison_subject(subject: str) -> bool:
    """True for a subject in the poison part of the dead letters (cheap: a prefix check)."""
    return subject.startswith(prefix(DEAD_PREFIX, POISON_TOKEN))


def parse_poison_subject(subject: str) -> PoisonSubject:
    """(source, seq) of a poison subject; ValueError for any other."""
    parts = _tokens(subject, "a poison subject", 4, DEAD_PREFIX, POISON_TOKEN)
    return PoisonSubject(parts[2], _number(parts[3], "a poison subject", subject))


class TimerSubject(NamedTuple):
    """What a timer subject names."""

    run_id: str
    name: str


def timer_subject(run_id: str, name: str) -> str:
    """The subject of one durable timer of a run."""
    return f"{TIMER_PREFIX}.{run_id}.{name}"


def timer_filter() -> str:
    """The subject filter matching every timer."""
    return f"{TIMER_PREFIX}.>"


def parse_timer_subject(subject: str) -> TimerSubject:
    """(run id, timer name) of a timer subject; ValueError for any other."""
    parts = subject.split(".")
    if len(parts) != 3 or parts[0] != TIMER_PREFIX or not _token(parts[1]) \
            or not _timer_name_token(parts[2]):
        raise ValueError(f"not a timer subject: {subject!r}")
    return TimerSubject(parts[1], parts[2])


def _timer_name_token(name: str) -> bool:
    """A timer name fits one subject token: a token, or a step timer's (`step_token`)."""
    try:
        parse_timer_name(name)
    except ValueError:
        return _token(name)
    return True


# Consumers.
def event_subject(event_type: str) -> str:
    """The subject events of one type are published on (`event_type`: dot-separated tokens)."""
    return f"{EVENT_PREFIX}.{event_type}"


def event_filter() -> str:
    """The subject filter matching every event."""
    return f"{EVENT_PREFIX}.>"


def parse_event_subject(subject: str) -> str:
    """The event type of an event subject; ValueError for any other subject."""
    head, _, event_type = subject.partition(".")
    if head != EVENT_PREFIX or not event_type or not all(map(_token, event_type.split("."))):
        raise ValueError(f"not an event subject: {subject!r}")
    return event_type


class WaiterKey(NamedTuple):
    """What an event_waiters key names."""

    event_type: str
    run_id: str
    step_id: str


def waiter_key(event_type: str, run_id: str, step_id: str) -> str:
    """The event_waiters key of a step waiting for events of `event_type`."""
    return f"{event_type}.{run_id}.{step_token(step_id)}"


def parse_waiter_key(key: str) -> WaiterKey:
    """(event type, run id, step id) of an event_waiters key; ValueError for others."""
    parts = key.split(".")
    if len(parts) < 3 or not all(map(_token, parts[:-1])):
        raise ValueError(f"not an event waiter key: {key!r}")
    try:
        return WaiterKey(".".join(parts[:-2]), parts[-2], parse_step_token(parts[-1]))
    except ValueError:
        raise ValueError(f"not an event waiter key: {key!r}") from None


def waiters_filter(event_type: str) -> str:
    """The KV subject filter of every waiter for events of one type."""
    return kv_subject(WAITERS_BUCKET, f"{event_type}.*.*")


def approval_subject(workflow: str) -> str:
    """Where approval requests of a workflow's steps are published (core NATS)."""
    return f"{APPROVAL_PREFIX}.{workflow}"


def parse_approval_subject(subject: str) -> str:
    """The workflow of an approval request subject; ValueError for any other."""
    return _tokens(subject, "an approval request subject", 3, *APPROVAL_PREFIX.split("."))[2]


def signal_key(run_id: str, name: str) -> str:
    """The key of the latest value of signal `name` sent to a run (KV run_signals)."""
    return _run_item_key(run_id, name, "signal")


def parse_signal_key(key: str) -> tuple[str, str]:
    """(run id, signal name) of a run_signals key; ValueError for any other key."""
    return _parse_run_item_key(key, "signal")


def signal_filter(run_id: str) -> str:
    """The key filter matching every signal of one run."""
    return _run_item_key(run_id, ">", "signal filter")


def checkpoint_key(run_id: str, step_id: str) -> str:
    """The key of one step's checkpoint in a run (KV step_checkpoints)."""
    token = step_token(step_id)
    try:
        valid = _token(run_id) and parse_step_token(token) == step_id
    except ValueError:
        valid = False
    if not valid:
        raise ValueError(f"cannot build a checkpoint key from run {run_id!r} and step"
                         f" {step_id!r}: each must be one subject token ([A-Za-z0-9_-]+)")
    return f"{run_id}.{token}"


def parse_checkpoint_key(key: str) -> tuple[str, str]:
    """(run id, step id) of a step_checkpoints key; ValueError for any other key."""
    run_id, dot, item = key.partition(".")
    if not dot or not _token(run_id):
        raise ValueError(f"not a checkpoint key: {key!r}")
    try:
        return run_id, parse_step_token(item)
    except ValueError:
        raise ValueError(f"not a checkpoint key: {key!r}") from None


def checkpoint_filter(run_id: str) -> str:
    """The key filter matching every checkpoint of one run."""
    return _run_item_key(run_id, ">", "checkpoint filter")


def _run_item_key(run_id: str, item: str, what: str) -> str:
    if not _token(run_id) or not (item == ">" or _token(item)):
        raise ValueError(f"cannot build a {what} key from run {run_id!r} and {item!r}:"
                         " both must be one subject token ([A-Za-z0-9_-]+)")
    return f"{run_id}.{item}"


def _parse_run_item_key(key: str, what: str) -> tuple[str, str]:
    run_id, dot, item = key.partition(".")
    if not dot or not _token(run_id) or not _token(item):
        raise ValueError(f"not a {what} key: {key!r}")
    return run_id, item


def engine_consumer(partition: int) -> str:
    """The durable consumer of one partition's events, pulled by the engine leasing it."""
    return f"{ENGINE_CONSUMER_PREFIX}{partition}"


def parse_engine_consumer(name: str) -> int:
    """The partition of an engine consumer's name; ValueError for any other name."""
    partition = _number(name.removeprefix(ENGINE_CONSUMER_PREFIX), "an engine consumer", name)
    if not name.startswith(ENGINE_CONSUMER_PREFIX) or partition >= HISTORY_PARTITIONS:
        raise ValueError(f"not an engine consumer: {name!r}")
    return partition


def history_partition_filter(partition: int) -> str:
    """The events (not the tasks) of every run in one partition."""
    return f"{HISTORY_PREFIX}.{partition}.*.{EVENT_TOKEN}"


# The engine_leases bucket: which engine handles which partition, and which engines live.
LEASE_PREFIX = "partition"
ENGINE_KEY_PREFIX = "engine"


def lease_key(partition: int) -> str:
    """The key holding the lease of one partition (the engine id holding it)."""
    return f"{LEASE_PREFIX}.{partition}"


def parse_lease_key(key: str) -> int:
    """The partition of a lease key; ValueError for any other key."""
    parts = key.split(".")
    if len(parts) != 2 or parts[0] != LEASE_PREFIX:
        raise ValueError(f"not a lease key: {key!r}")
    partition = _number(parts[1], "a lease key", key)
    if partition >= HISTORY_PARTITIONS:
        raise ValueError(f"not a lease key: {key!r}")
    return partition


def engine_key(engine_id: str) -> str:
    """The key an engine rewrites every second while it lives."""
    return f"{ENGINE_KEY_PREFIX}.{_token_key(engine_id, 'an engine id')}"


def parse_engine_key(key: str) -> str:
    """The engine id of an engine key; ValueError for any other key."""
    return _tokens(key, "an engine key", 2, ENGINE_KEY_PREFIX)[1]


def task_consumer(task: str) -> str:
    """The durable pull consumer shared by every worker of `task`."""
    return f"{TASK_CONSUMER_PREFIX}{task}"


def parse_task_consumer(name: str) -> str:
    """The task of a task consumer's name; ValueError for any other name."""
    task = name.removeprefix(TASK_CONSUMER_PREFIX)
    if task == name or not _token(task):
        raise ValueError(f"not a task consumer: {name!r}")
    return task


# KV buckets and keys.
class KvSubject(NamedTuple):
    """What a KV subject names."""

    bucket: str
    key: str


def kv_subject(bucket: str, key: str) -> str:
    """The subject a KV bucket stores `key` under."""
    return f"{KV_PREFIX}.{bucket}.{key}"


def kv_filter(bucket: str) -> str:
    """The subject filter matching every key of a bucket."""
    return f"{KV_PREFIX}.{bucket}.>"


def parse_kv_subject(subject: str) -> KvSubject:
    """(bucket, key) of a KV subject; ValueError for any other. A key may hold dots."""
    parts = subject.split(".")
    if (len(parts) < 3 or parts[0] != KV_PREFIX or not _token(parts[1])
            or not all(_SUBJECT_TOKEN.fullmatch(part) for part in parts[2:])):
        raise ValueError(f"not a KV subject: {subject!r}")
    return KvSubject(parts[1], ".".join(parts[2:]))


def kv_stream(bucket: str) -> str:
    """The stream that holds a KV bucket."""
    return f"{KV_STREAM_PREFIX}{bucket}"


def parse_kv_stream(stream: str) -> str:
    """The bucket a KV stream holds; ValueError for any other stream name."""
    bucket = stream.removeprefix(KV_STREAM_PREFIX)
    if bucket == stream or not _token(bucket):
        raise ValueError(f"not a KV stream: {stream!r}")
    return bucket


def _token_key(value: str, what: str) -> str:
    if not _token(value):
        raise ValueError(f"not {what}: {value!r}")
    return value


def def_key(workflow: str) -> str:
    """The key of a workflow's record in workflow_defs: its name."""
    return workflow


def parse_def_key(key: str) -> str:
    """The workflow name a workflow_defs key stands for; ValueError for any other key."""
    return _token_key(key, "a workflow definition key")


def run_key(run_id: str) -> str:
    """The key of a run's snapshot in workflow_runs: its id."""
    return run_id


def parse_run_key(key: str) -> str:
    """The run id a workflow_runs key stands for; ValueError for any other key."""
    return _token_key(key, "a run snapshot key")


def cancel_key(run_id: str) -> str:
    """The key of a run's cancellation in run_cancellations: its id."""
    return run_id


def parse_cancel_key(key: str) -> str:
    """The run id a run_cancellations key stands for; ValueError for any other key."""
    return _token_key(key, "a run cancellation key")


def idempotency_key(workflow: str, key: str) -> str:
    """The run_idempotency key of an idempotency key of a workflow: a sha256 hex digest."""
    return hashlib.sha256(f"{workflow}\x00{key}".encode()).hexdigest()


def parse_idempotency_key(key: str) -> str:
    """The key itself once checked to be a digest (a digest cannot be turned back);
    ValueError for anything else."""
    if not _DIGEST.fullmatch(key):
        raise ValueError(f"not an idempotency key digest: {key!r}")
    return key


# The API.
def api_subject(operation: str) -> str:
    """The request subject of one API operation, such as `run.start`."""
    return f"{API_PREFIX}.{operation}"


def parse_api_subject(subject: str) -> str:
    """The operation of an API request subject; ValueError for any other subject."""
    operation = subject.removeprefix(prefix(API_PREFIX))
    if operation == subject or not all(map(_token, operation.split("."))):
        raise ValueError(f"not an API subject: {subject!r}")
    return operation


def api_endpoint(operation: str) -> str:
    """The micro service endpoint name of an operation (`run.start` -> `run-start`)."""
    return operation.replace(".", "-")


def parse_api_endpoint(name: str) -> str:
    """The operation of an endpoint name (an operation's tokens hold no -); ValueError for
    any other name."""
    if not all(_ENDPOINT_PART.fullmatch(part) for part in name.split("-")):
        raise ValueError(f"not an API endpoint name: {name!r}")
    return name.replace("-", ".")


# JetStream API subjects dagnats requests by hand.
class ConsumerNext(NamedTuple):
    """What a pull request subject names."""

    stream: str
    durable: str


def stream_info_subject(stream: str) -> str:
    """The JetStream API subject of a stream's info request."""
    return f"{JS_API_PREFIX}.STREAM.INFO.{stream}"


def parse_stream_info_subject(subject: str) -> str:
    """The stream of a stream info request subject; ValueError for any other."""
    return _tokens(subject, "a stream info subject", 5, *_JS_API, "STREAM", "INFO")[4]


def consumer_next_subject(stream: str, durable: str) -> str:
    """The JetStream API subject a pull request for a consumer's next messages goes to."""
    return f"{JS_API_PREFIX}.CONSUMER.MSG.NEXT.{stream}.{durable}"


def parse_consumer_next_subject(subject: str) -> ConsumerNext:
    """(stream, durable) of a pull request subject; ValueError for any other."""
    parts = _tokens(subject, "a pull request subject", 7, *_JS_API, "CONSUMER", "MSG", "NEXT")
    return ConsumerNext(parts[5], parts[6])


# Message ids.
class StepEventId(NamedTuple):
    """What a step event's message id names."""

    run_id: str
    step_id: str
    attempt: int
    kind: str


class RunEventId(NamedTuple):
    """What a run event's message id names."""

    run_id: str
    kind: str
    generation: int


class AttemptId(NamedTuple):
    """What the message id of a task or a dead letter names: one attempt of one step."""

    run_id: str
    step_id: str
    attempt: int


class StepKind(NamedTuple):
    """A step event kind: its name, and its number (delivery or generation) if it has one."""

    name: str
    number: int | None


def _msg_parts(msg_id: str, what: str, parts: int) -> list[str]:
    found = msg_id.split(":")
    if len(found) != parts or not all(map(_token, found)):
        raise ValueError(f"not {what}: {msg_id!r}")
    return found


def started_msg_id(run_id: str) -> str:
    """Msg id of a run's workflow.started event."""
    return f"{run_id}:started"


def parse_started_msg_id(msg_id: str) -> str:
    """The run id of a workflow.started msg id; ValueError for any other."""
    run_id, kind = _msg_parts(msg_id, "a workflow.started msg id", 2)
    if kind != "started":
        raise ValueError(f"not a workflow.started msg id: {msg_id!r}")
    return run_id


def started_kind(delivery: int) -> str:
    """The step kind of a step.started event, for one delivery of the task."""
    return f"{STEP_NUMBERED_KINDS['started']}{delivery}"


def recovered_kind(generation: int) -> str:
    """The step kind of a step.recovered event, in one generation of the run."""
    return f"{STEP_NUMBERED_KINDS['recovered']}{generation}"


def skipped_kind(generation: int) -> str:
    """The step kind of a step.skipped event, in one generation of the run."""
    return f"{STEP_NUMBERED_KINDS['skipped']}{generation}"


def signal_waiting_kind(wait: int) -> str:
    """The step kind of the step.waiting of a handler's signal wait (`wait`: its number)."""
    return f"{STEP_NUMBERED_KINDS['signal-waiting']}{wait}"


def signal_resumed_kind(wait: int) -> str:
    """The step kind of the step.started that ends a handler's signal wait."""
    return f"{STEP_NUMBERED_KINDS['signal-resumed']}{wait}"


def step_token(step_id: str) -> str:
    """A step id as one subject token and KV key part: a planner's step `plan.fetch` is
    `plan/fetch`, a map instance's `each[3]` is `each=3` (a subject token takes no dot, a KV
    key no bracket; `/` and `=` are in no step id). A plain step id is itself."""
    token = step_id.replace(".", "/")
    if token.endswith("]") and "[" in token:
        step, _, index = token[:-1].partition("[")
        return f"{step}={index}"
    return token


def parse_step_token(token: str) -> str:
    """The step id of a `step_token`; ValueError for anything else."""
    step, equals, index = token.partition("=")
    if not all(map(_token, step.split("/"))) or (equals and not _NUMBER.fullmatch(index)):
        raise ValueError(f"not a step token: {token!r}")
    step = step.replace("/", ".")
    return instance_step_id(step, int(index)) if equals else step


def progress_subject(run_id: str, step_id: str) -> str:
    """Core NATS subject of a step's progress reports (`ctx.progress`): not stored."""
    return f"{PROGRESS_PREFIX}.{_checked_run(run_id)}.{step_token(step_id)}"


def progress_filter(run_id: str | None = None) -> str:
    """Every progress report of a run (of every run: None)."""
    return f"{PROGRESS_PREFIX}.{_checked_run(run_id)}.*" if run_id else f"{PROGRESS_PREFIX}.>"


def chunk_subject(run_id: str, step_id: str) -> str:
    """Core NATS subject of a step's streamed chunks (`ctx.stream`): not stored."""
    return f"{CHUNK_PREFIX}.{_checked_run(run_id)}.{step_token(step_id)}"


def chunk_filter(run_id: str | None = None) -> str:
    """Every streamed chunk of a run (of every run: None)."""
    return f"{CHUNK_PREFIX}.{_checked_run(run_id)}.*" if run_id else f"{CHUNK_PREFIX}.>"


def parse_telemetry_subject(subject: str) -> tuple[str, str, str]:
    """(kind "progress" or "stream", run id, step id) of a progress or chunk subject."""
    parts = subject.split(".")
    if len(parts) != 4 or ".".join(parts[:2]) not in (PROGRESS_PREFIX, CHUNK_PREFIX) \
            or not _token(parts[2]):
        raise ValueError(f"not a progress or stream subject: {subject!r}")
    return parts[1], parts[2], parse_step_token(parts[3])


def progress_key(run_id: str, step_id: str) -> str:
    """KV key (bucket `step_progress`) of a step's last progress report."""
    return f"{_checked_run(run_id)}.{step_token(step_id)}"


def _checked_run(run_id: str) -> str:
    if not _token(run_id):
        raise ValueError(f"not a run id: {run_id!r}")
    return run_id


def child_run_id(parent_run_id: str, step_id: str, attempt: int, generation: int) -> str:
    """The run id of the child a sub_workflow step's attempt starts: derived, so starting
    it again (a redelivery, another engine) names the same run."""
    seed = f"child\x00{parent_run_id}\x00{step_id}\x00{attempt}\x00{generation}"
    return hashlib.sha256(seed.encode()).hexdigest()[:32]


def instance_step_id(step_id: str, index: int) -> str:
    """The step id that one instance of a map step reports under (`each[3]`): brackets
    never occur in a declared step id, so it cannot meet one."""
    return f"{step_id}[{index}]"


def parse_instance_step_id(value: str) -> tuple[str, int]:
    """(map step id, index) of an instance's step id; ValueError for any other."""
    step_id, bracket, rest = value.partition("[")
    if not bracket or not rest.endswith("]") or not all(map(_token, step_id.split("."))):
        raise ValueError(f"not a map instance's step id: {value!r}")
    return step_id, _number(rest[:-1], "a map instance's step id", value)


def parse_step_kind(kind: str) -> StepKind:
    """(name, number) of a step kind (`started-3` -> ("started", 3)); ValueError otherwise."""
    if kind in STEP_KINDS:
        return StepKind(kind, None)
    for name, head in STEP_NUMBERED_KINDS.items():
        if kind.startswith(head):
            return StepKind(name, _number(kind[len(head):], "a step kind", kind))
    raise ValueError(f"not a step kind: {kind!r}")


def step_event_msg_id(run_id: str, step_id: str, attempt: int, kind: str) -> str:
    """Msg id of a step event (`kind`: queued, completed, failed, or one of started_kind,
    recovered_kind, skipped_kind)."""
    return f"{run_id}:{step_id}:{attempt}:{kind}"


def parse_step_event_msg_id(msg_id: str) -> StepEventId:
    """(run id, step id, attempt, kind) of a step event's msg id; ValueError for any other."""
    run_id, step_id, attempt, kind = _msg_parts(msg_id, "a step event msg id", 4)
    parse_step_kind(kind)
    return StepEventId(run_id, step_id, _number(attempt, "a step event msg id", msg_id), kind)


def run_event_msg_id(run_id: str, kind: str, generation: int = 0) -> str:
    """Msg id of a run-level event (completed, failed, ...) in one generation of the run."""
    return f"{run_id}:g{generation}:{kind}" if generation else f"{run_id}:{kind}"


def parse_run_event_msg_id(msg_id: str) -> RunEventId:
    """(run id, kind, generation) of a run event's msg id; ValueError for any other."""
    what = "a run event msg id"
    parts = _msg_parts(msg_id, what, 3 if msg_id.count(":") == 2 else 2)
    run_id, kind, generation = parts[0], parts[-1], 0
    if len(parts) == 3:
        generation = _number(parts[1].removeprefix("g"), what, msg_id)
        if not parts[1].startswith("g") or generation == 0:
            raise ValueError(f"not {what}: {msg_id!r}")
    if kind not in RUN_EVENT_KINDS:
        raise ValueError(f"not {what}: {msg_id!r}")
    return RunEventId(run_id, kind, generation)


def resumed_msg_id(run_id: str, generation: int) -> str:
    """Msg id of the workflow.resumed event that starts `generation` (so one retry wins)."""
    return f"{run_id}:resumed:{generation}"


def parse_resumed_msg_id(msg_id: str) -> RunEventId:
    """(run id, "resumed", generation) of a workflow.resumed msg id; ValueError otherwise."""
    run_id, kind, generation = _msg_parts(msg_id, "a workflow.resumed msg id", 3)
    if kind != "resumed":
        raise ValueError(f"not a workflow.resumed msg id: {msg_id!r}")
    return RunEventId(run_id, kind, _number(generation, "a workflow.resumed msg id", msg_id))


# Timer names (the <name> of timer.<run-id>.<name>): the run timeout of one generation, and
# the timer of one attempt of a step (a sleep's wake-up, a wait's or an approval's timeout).
RUN_TIMEOUT_PREFIX = "timeout-"
STEP_TIMER_PREFIX = "step-"


def timeout_timer_name(generation: int) -> str:
    """The name of the run-timeout timer of one generation of a run."""
    return f"{RUN_TIMEOUT_PREFIX}{generation}"


def step_timer_name(step_id: str, attempt: int) -> str:
    """The name of the timer of one attempt of a step."""
    return f"{STEP_TIMER_PREFIX}{step_token(step_id)}-{attempt}"


class StepTimer(NamedTuple):
    """What a step timer's name names."""

    step_id: str
    attempt: int


def parse_timer_name(name: str) -> int | StepTimer:
    """The generation of a run-timeout timer, or (step, attempt) of a step timer."""
    if name.startswith(RUN_TIMEOUT_PREFIX):
        return _number(name[len(RUN_TIMEOUT_PREFIX):], "a timer name", name)
    token, dash, attempt = name[len(STEP_TIMER_PREFIX):].rpartition("-")
    if not name.startswith(STEP_TIMER_PREFIX) or not dash:
        raise ValueError(f"not a timer name: {name!r}")
    try:
        step_id = parse_step_token(token)
    except ValueError:
        raise ValueError(f"not a timer name: {name!r}") from None
    return StepTimer(step_id, _number(attempt, "a timer name", name))


def signal_sent_msg_id(run_id: str, name: str, sent_at_us: int) -> str:
    """Msg id of the signal.sent event of one signal (its send time in microseconds)."""
    return f"{run_id}:signal:{name}:{sent_at_us}"


def parse_signal_sent_msg_id(msg_id: str) -> tuple[str, str, int]:
    """(run id, signal name, sent at in µs) of a signal.sent msg id; ValueError otherwise."""
    run_id, kind, name, sent = _msg_parts(msg_id, "a signal.sent msg id", 4)
    if kind != "signal":
        raise ValueError(f"not a signal.sent msg id: {msg_id!r}")
    return run_id, name, _number(sent, "a signal.sent msg id", msg_id)


def timer_msg_id(run_id: str, name: str) -> str:
    """Msg id of a timer, and of the timer.fired event it becomes."""
    return f"{run_id}:timer:{name}"


def parse_timer_msg_id(msg_id: str) -> TimerSubject:
    """(run id, timer name) of a timer's msg id; ValueError for any other."""
    run_id, kind, name = _msg_parts(msg_id, "a timer msg id", 3)
    if kind != "timer":
        raise ValueError(f"not a timer msg id: {msg_id!r}")
    return TimerSubject(run_id, name)


def _attempt_msg_id(run_id: str, step_id: str, attempt: int, kind: str) -> str:
    return f"{run_id}:{step_id}:{attempt}:{kind}"


def _parse_attempt_msg_id(msg_id: str, kind: str, what: str) -> AttemptId:
    run_id, step_id, attempt, found = _msg_parts(msg_id, what, 4)
    if found != kind:
        raise ValueError(f"not {what}: {msg_id!r}")
    return AttemptId(run_id, step_id, _number(attempt, what, msg_id))


def dead_letter_msg_id(run_id: str, step_id: str, attempt: int) -> str:
    """Msg id of the dead letter of a step's last attempt."""
    return _attempt_msg_id(run_id, step_id, attempt, "dead")


def parse_dead_letter_msg_id(msg_id: str) -> AttemptId:
    """(run id, step id, attempt) of a dead letter's msg id; ValueError for any other."""
    return _parse_attempt_msg_id(msg_id, "dead", "a dead letter msg id")


def poison_msg_id(source: str, seq: int) -> str:
    """Msg id of the raw dead letter of an unreadable message from `source` at `seq`."""
    return f"{POISON_MSG_PREFIX}:{source}:{seq}"


def parse_poison_msg_id(msg_id: str) -> PoisonSubject:
    """(source, seq) of a poison dead letter's msg id; ValueError for any other."""
    head, source, seq = _msg_parts(msg_id, "a poison msg id", 3)
    if head != POISON_MSG_PREFIX:
        raise ValueError(f"not a poison msg id: {msg_id!r}")
    return PoisonSubject(source, _number(seq, "a poison msg id", msg_id))


# NATS permissions (what a login may publish and subscribe to; see dagnats.server.auth).
def js_api_subject(*tokens: str) -> str:
    """A JetStream API subject, $JS.API.<tokens> (a permission may end with * or >)."""
    return ".".join([JS_API_PREFIX, *tokens])


def parse_js_api_subject(subject: str) -> tuple[str, ...]:
    """The tokens after $JS.API of a JetStream API subject; ValueError for any other."""
    parts = subject.split(".")
    if parts[:len(_JS_API)] != _JS_API or len(parts) <= len(_JS_API) or not all(parts):
        raise ValueError(f"not a JetStream API subject: {subject!r}")
    return tuple(parts[len(_JS_API):])


def js_ack_filter(stream: str) -> str:
    """The subjects acks (and naks, progress) of `stream`'s consumers are published to."""
    return f"{JS_ACK_PREFIX}.{stream}.>"


def js_flow_control_filter() -> str:
    """The subjects JetStream's flow control asks replies on (ordered consumers, KV watches)."""
    return f"{JS_FC_PREFIX}.>"


def inbox_filter() -> str:
    """Every reply inbox (nats-py's request replies, fetches and push deliveries)."""
    return f"{INBOX_PREFIX}.>"


def poison_filter(source: str) -> str:
    """Where unreadable messages from `source` are kept (see poison_subject)."""
    return f"{DEAD_PREFIX}.{POISON_TOKEN}.{source}.>"


# Out-of-line payloads (the claim check): one object store bucket, one object per value
# and run, named `<run id>.<sha256 hex of the value's JSON>`, so a run's payloads are the
# objects whose names start with `<run id>.` and the same value is one object per run.
PAYLOADS_BUCKET = "run_payloads"
OBJECT_STREAM_PREFIX = "OBJ_"


def payloads_stream() -> str:
    """The stream behind the payloads object store."""
    return f"{OBJECT_STREAM_PREFIX}{PAYLOADS_BUCKET}"


def payload_object(run_id: str, digest: str) -> str:
    """The object holding the value with this digest (sha256 hex) for a run."""
    if not _token(run_id) or not _DIGEST.match(digest):
        raise ValueError(f"cannot name a payload of run {run_id!r} with digest {digest!r}:"
                         " the run id must be one token and the digest 64 hex digits")
    return f"{run_id}.{digest}"


def payload_prefix(run_id: str) -> str:
    """The prefix every payload object of a run starts with."""
    if not _token(run_id):
        raise ValueError(f"not a run id: {run_id!r}")
    return f"{run_id}."


def parse_payload_object(name: str) -> tuple[str, str]:
    """(run id, digest) of a payload object's name; ValueError for any other name."""
    run_id, dot, digest = name.partition(".")
    if not dot or not _token(run_id) or not _DIGEST.match(digest):
        raise ValueError(f"not a payload object name: {name!r}")
    return run_id, digest


OBJECT_SUBJECT_PREFIX = "$O"


def payload_chunks_subject(nuid: str) -> str:
    """The subject holding the chunks of one stored version (`nuid`) of a payload object,
    as nats-py's object store writes them, read back chunk by chunk with direct gets."""
    if not _token(nuid):
        raise ValueError(f"not an object nuid: {nuid!r}")
    return f"{OBJECT_SUBJECT_PREFIX}.{PAYLOADS_BUCKET}.C.{nuid}"


def parse_payload_chunks_subject(subject: str) -> str:
    """The nuid of a payload chunks subject; ValueError for any other subject."""
    return _tokens(subject, "a payload chunks subject", 4, OBJECT_SUBJECT_PREFIX,
                   PAYLOADS_BUCKET, "C")[3]


# The run index (issue 10, "lists in constant time"): stream RUN_INDEX, one subject per run
# holding that run's latest summary (status, workflow, times), written by the engine when a
# run's status changes; `run list` reads it instead of every snapshot.
#     RUN_INDEX   runindex.<run-id>     a run's summary (the last two kept, see store/run_index)
#                 runindex._backfilled  the marker: snapshots from before the index are in it
#     msg id      <run>:index:<seq>     the summary of the run's state as of history seq <seq>
INDEX_STREAM = "RUN_INDEX"
INDEX_PREFIX = "runindex"
INDEX_BACKFILLED_TOKEN = "_backfilled"


def run_index_subject(run_id: str) -> str:
    """The subject that holds one run's summary in the run index."""
    return f"{INDEX_PREFIX}.{run_id}"


def run_index_filter() -> str:
    """The subject filter matching every subject of the run index (the marker too)."""
    return f"{INDEX_PREFIX}.>"


def parse_run_index_subject(subject: str) -> str:
    """The run id of a run index subject; ValueError for any other subject (the marker too)."""
    run_id = _tokens(subject, "a run index subject", 2, INDEX_PREFIX)[1]
    if run_id == INDEX_BACKFILLED_TOKEN:
        raise ValueError(f"not a run index subject: {subject!r} (the backfill marker)")
    return run_id


def run_index_marker_subject() -> str:
    """The subject of the marker saying snapshots from before the index were backfilled."""
    return f"{INDEX_PREFIX}.{INDEX_BACKFILLED_TOKEN}"


def run_index_msg_id(run_id: str, seq: int) -> str:
    """Msg id of a run's summary as of history sequence `seq` (a repeat is dropped)."""
    return f"{run_id}:index:{seq}"


def parse_run_index_msg_id(msg_id: str) -> tuple[str, int]:
    """(run id, history seq) of a run summary's msg id; ValueError for any other."""
    run_id, kind, seq = _msg_parts(msg_id, "a run index msg id", 3)
    if kind != "index":
        raise ValueError(f"not a run index msg id: {msg_id!r}")
    return run_id, _number(seq, "a run index msg id", msg_id)


# Following runs: the history stream republishes each stored event (core NATS, not stored).
LIVE_PREFIX = "dagnats.live"


def live_run_filter(run_id: str) -> str:
    """Where WORKFLOW_HISTORY republishes each stored event of a run (followers listen)."""
    return f"{LIVE_PREFIX}.{history_run_filter(run_id)[len(HISTORY_PREFIX) + 1:]}"


def live_filter() -> str:
    """The republish destination of WORKFLOW_HISTORY: every run's live subject."""
    return f"{LIVE_PREFIX}.>"


def parse_live_subject(subject: str) -> HistorySubject:
    """The run (and task) of a live subject; ValueError for any other subject."""
    if not subject.startswith(LIVE_PREFIX + "."):
        raise ValueError(f"not a live history subject: {subject!r}")
    try:
        return parse_history_subject(HISTORY_PREFIX + subject[len(LIVE_PREFIX):])
    except ValueError:
        raise ValueError(f"not a live history subject: {subject!r}") from None


def direct_get_subject(stream: str) -> str:
    """The JetStream API subject of a stream's direct gets (allow_direct streams)."""
    return f"{JS_API_PREFIX}.DIRECT.GET.{stream}"


def parse_direct_get_subject(subject: str) -> str:
    """The stream of a direct get subject; ValueError for any other."""
    return _tokens(subject, "a direct get subject", 5, *_JS_API, "DIRECT", "GET")[4]
# Retention (dagnats.store.retention).
def stream_purge_subject(stream: str) -> str:
    """The JetStream API subject of a stream purge request."""
    return f"{JS_API_PREFIX}.STREAM.PURGE.{stream}"


def parse_stream_purge_subject(subject: str) -> str:
    """The stream of a stream purge request subject; ValueError for any other."""
    return _tokens(subject, "a stream purge subject", 5, *_JS_API, "STREAM", "PURGE")[4]


def timer_run_filter(run_id: str) -> str:
    """The subject filter of every timer of one run."""
    return f"{TIMER_PREFIX}.{run_id}.*"


def parse_timer_run_filter(subject: str) -> str:
    """The run id of a run's timer filter; ValueError for any other subject."""
    parts = subject.split(".")
    if len(parts) != 3 or parts[0] != TIMER_PREFIX or parts[2] != "*" or not _token(parts[1]):
        raise ValueError(f"not a run's timer filter: {subject!r}")
    return parts[1]


def object_filter(bucket: str) -> str:
    """Every subject of an object store bucket: its chunks and its metadata."""
    return f"{OBJECT_SUBJECT_PREFIX}.{bucket}.>"


# Worker presence (issue 11, "who serves what"): stream WORKER_PRESENCE, one subject per
# running worker, holding its latest heartbeat; each message expires by its own TTL.
#     WORKER_PRESENCE   presence.<worker-id>   a live worker: tasks, in flight, host, pid
#     msg id <worker-id>:presence:<beat>       one heartbeat (a repeat is dropped)
PRESENCE_STREAM = "WORKER_PRESENCE"
PRESENCE_PREFIX = "presence"


def presence_subject(worker_id: str) -> str:
    """The subject holding one running worker's latest heartbeat."""
    return f"{PRESENCE_PREFIX}.{worker_id}"


def presence_filter() -> str:
    """The subject filter matching every worker's heartbeat."""
    return f"{PRESENCE_PREFIX}.>"


def parse_presence_subject(subject: str) -> str:
    """The worker id of a presence subject; ValueError for any other subject."""
    return _tokens(subject, "a presence subject", 2, PRESENCE_PREFIX)[1]


def presence_msg_id(worker_id: str, beat: int) -> str:
    """Msg id of a worker's heartbeat number `beat` (a repeated publish is dropped)."""
    return f"{worker_id}:presence:{beat}"


def parse_presence_msg_id(msg_id: str) -> tuple[str, int]:
    """(worker id, beat) of a heartbeat's msg id; ValueError for any other."""
    worker_id, kind, beat = _msg_parts(msg_id, "a presence msg id", 3)
    if kind != "presence":
        raise ValueError(f"not a presence msg id: {msg_id!r}")
    return worker_id, _number(beat, "a presence msg id", msg_id)
