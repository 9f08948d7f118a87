"""Every size and time limit dagnats enforces, named once (pure: no I/O, no imports).

A flat list: each constant says what it bounds and why it has that value. docs/handlers.md
and docs/step-types.md show them in tables; change both together.
"""

from __future__ import annotations

#: The furthest ahead a durable timer may be set: a sleep, a wait's or an approval's timeout.
TIMER_HORIZON_S = 365 * 24 * 3600.0
#: An event published up to this long before a wait_for_event step starts still matches it.
EVENT_MATCH_WINDOW_S = 10 * 60.0
#: How long published events are kept in the EVENTS stream (for matching and inspection).
EVENT_MAX_AGE_S = 24 * 3600.0
#: The largest event body (JSON) accepted by `dagnats event publish` and the client.
EVENT_MAX_BYTES = 256 * 1024

#: The largest signal value, as compact UTF-8 JSON. A signal is a decision or a small
#: document (an approval, an address), not a bulk transfer: pass a reference to big data.
SIGNAL_MAX_BYTES = 64 * 1024

#: The longest signal name, in characters. A name is one subject token: [A-Za-z0-9_-]+.
SIGNAL_NAME_MAX_CHARS = 128

#: How long `ctx.wait_for_signal` waits when no timeout is given.
SIGNAL_WAIT_DEFAULT_S = 5 * 60.0

#: The longest a handler may wait for one signal. A waiting handler holds a worker slot (and,
#: when sync, a thread); a wait of days belongs in a workflow step that waits, not a handler.
SIGNAL_WAIT_MAX_S = 24 * 3600.0

#: The largest checkpoint state, as compact UTF-8 JSON (NATS' default max payload is 1 MiB).
CHECKPOINT_MAX_BYTES = 512 * 1024

#: How long signals and checkpoints are kept at most (the buckets' TTL). They are deleted
#: when their run ends; this is only the backstop for a run whose end never deleted them.
RUN_DATA_MAX_AGE_S = 7 * 24 * 3600.0

#: A value (a run input, a step's input or output, a run output) whose compact JSON is
#: larger than this goes out of line, into the payloads object store, and history and the
#: snapshot carry a reference (digest and size, about 100 bytes) instead. A snapshot then
#: holds at most (2 x steps + 2) x this much data whatever the payloads, so its size
#: depends on the number of steps, not on the data. Small values (the common case) stay
#: inline: no extra round trip.
PAYLOAD_INLINE_MAX_BYTES = 4 * 1024

#: How many items a map step takes when its config does not say (`max_items`), and the
#: most it may say: each item is an instance with its own task message and events, and the
#: run's state keeps a status letter and an attempt count per item.
MAP_DEFAULT_MAX_ITEMS = 1_000
MAP_MAX_ITEMS = 10_000
#: How many failed items' errors a map step keeps in the run's state (the rest are in history).
MAP_ERRORS_KEPT = 20

#: The most iterations an agent_loop step may allow (`config.max_iterations`): each one is
#: a task and a few events in the run's history.
AGENT_LOOP_MAX_ITERATIONS = 10_000

#: A handler's progress message (`ctx.progress(fraction, message)`) is cut to this many
#: characters: it is one line of `run status` and of `--watch`.
PROGRESS_MESSAGE_MAX_CHARS = 200
#: How often at most a step's last progress is written to KV for `run status` (every
#: report still goes out live to followers): a handler may report in a tight loop.
PROGRESS_WRITE_EVERY_S = 0.25
#: How long a step's last progress is kept in KV (the bucket's TTL): it is shown only while
#: the step runs.
PROGRESS_MAX_AGE_S = 24 * 3600.0
#: The largest streamed chunk (`ctx.stream(data)`), as compact JSON with its envelope: a
#: chunk is a token or a line, not a document.
STREAM_CHUNK_MAX_BYTES = 64 * 1024

#: How deep runs may nest through sub_workflow steps (a root run is 1 deep): checked when
#: a child would start, so a workflow that starts itself fails at that depth instead of
#: forever.
MAX_RUN_DEPTH = 5

#: The most steps one planner's plan may hold (`config.max_steps`); a run's steps, its own
#: and those its planners added, are at most WORKFLOW_MAX_STEPS in all.
PLANNER_MAX_STEPS = 500
#: How deep planners may nest (`config.max_depth`): a plan holding planners, whose plans
#: hold planners... Each level is a step id with one more dot.
PLANNER_MAX_DEPTH = 3
#: The largest plan a planner's handler may return, as compact JSON: it travels inline in
#: its step.planned event and joins the run's definition in every snapshot.
PLAN_MAX_BYTES = 256 * 1024

#: The largest value dagnats carries, as compact UTF-8 JSON: a run input over it is refused
#: at `run start`; a step output over it fails the step at once (not retried).
PAYLOAD_MAX_BYTES = 32 * 1024 * 1024

#: The chunk size of out-of-line payloads in the object store (under NATS's 1 MiB payload).
PAYLOAD_CHUNK_BYTES = 256 * 1024

#: A step's error message (a handler's exception) is cut to this many characters: it is
#: kept in history and in the snapshot, which must not grow with it.
STEP_ERROR_MAX_CHARS = 4096

#: How much of the out-of-line values it read for `advance` (a skip_if on a large output)
#: the engine keeps in memory, so the steps after it do not fetch them again.
PAYLOAD_CACHE_BYTES = 64 * 1024 * 1024

#: The deepest nesting of arrays and objects accepted in any JSON that enters dagnats (run
#: inputs, events, signals, definitions, API requests). Stored documents wrap user data in
#: a few levels of their own, and pydantic's JSON reader stops at 200 levels; Python's own
#: parser at about 1,000. 100 leaves room for both (serde_json stops at 128).
JSON_MAX_DEPTH = 100

#: The most steps one workflow definition may have (checked at registration). A run's
#: snapshot holds the definition and every step's state in one KV message, which NATS caps
#: at 1 MB. Measured with every step retried once and completed with a small output: about
#: 490 bytes a step with 20-character ids and task names, 710 with 64 and 1,030 with 128
#: (the longest allowed). So 500 steps is 240-350 KB for usual names and 510 KB at worst,
#: well under the cap (tests/unit/test_strict_input.py keeps it so).
WORKFLOW_MAX_STEPS = 500

#: How much of an unreadable (poison) message its dead letter keeps, raw. Base64 makes it a
#: third larger, so the copy always fits in one NATS message (1 MB); the original stays in
#: its stream at the sequence the dead letter names.
POISON_RAW_MAX_BYTES = 512 * 1024
#: Events asked for per batched direct get when reading a run's history (one request, the
#: server answers message by message), and the bytes one such batch may carry at most.
HISTORY_READ_BATCH = 256
HISTORY_READ_MAX_BYTES = 8 * 1024 * 1024
#: How long a history read waits for each answer of the server before it gives up.
HISTORY_READ_TIMEOUT_S = 5.0
#: A follower (client.wait, client.watch, `run start --watch`) that has heard nothing live for
#: this long reads history once more: a republished event lost in a reconnect or dropped by
#: a slow subscription is found this way even when it was the run's last one.
FOLLOW_IDLE_CHECK_S = 15.0
#: How often a running worker renews its presence entry (who serves which tasks), and how
#: long an entry outlives the worker's last heartbeat (its TTL: three heartbeats, so one
#: late heartbeat never makes a live worker vanish; a worker killed with -9 is gone after it).
PRESENCE_HEARTBEAT_S = 3.0
PRESENCE_TTL_S = 10.0
#: A task step queued this long while no live worker serves its task is reported ("no
#: worker is serving task ...") by --watch, `run watch` and `run status`.
UNSERVED_AFTER_S = 5.0
