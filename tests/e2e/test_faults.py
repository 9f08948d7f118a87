"""Fault injection end to end: `serve`'s processes under real signals, in the middle of a stream.

Every test drives a stream of runs of tests/e2e/fault_chain.json (three steps of
tests/e2e/workers/fault_worker.py, two retries each) whose inputs predict their ends: most
complete at once, some only after retries, some fail when their retries run out or on a
non-retryable error. Run HELD holds its middle step until the test releases it, so a run is
provably in flight when the damage is done, and the second half of the stream is started
around the damage (just before killing an engine, frozen so that it provably holds events;
just after the other faults, while the system recovers). Then every run must reach its
predicted end within a deadline, and its history must hold:

- exactly one terminal event, the predicted one;
- no event recorded twice: step.queued, step.completed and step.failed are unique per
  (step, attempt), so at most one step.completed per step;
- the attempts its policy predicts, and an output whose trail names steps a, b, c in order;
- a snapshot (`run list`) that agrees with the history (`run status`).

Handlers may run more than once where a test says so (at-least-once delivery after a crash
or a stall); the history must not show it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

import dagnats
from dagnats import jetstream, names
from dagnats.connection import connect
from dagnats.dag.events import Event as CoreEvent
from dagnats.dag.state import RunState
from dagnats.engine import partitions
from dagnats.store.snapshots import Snapshots
from tests.e2e.harness import ROOT, Serve, wait_until

FAULT_WORKER = ROOT / "tests" / "e2e" / "workers" / "fault_worker.py"
FAULT_CHAIN = ROOT / "tests" / "e2e" / "fault_chain.json"
WORKFLOW = "fault-chain"
STEPS = ("a", "b", "c")
RETRIES = 2  # fault_chain.json: default_retry.max_attempts
STREAM_SIZE = 30
FIRST_HALF = 15
HELD = 1  # the run whose step b holds until the test releases it
WORK_S = 0.05
#: How long the stream may take to end after the damage (runs typically need 1-12 s).
END_DEADLINE_S = 40.0
#: How long an API call may keep failing while NATS or the API restarts or is paused.
OUTAGE_S = 20.0
#: Worker leases: a task held by a killed or stalled worker is redelivered this soon.
LEASE_S = "2"


# --- what each run should do --------------------------------------------------------------

@dataclass(frozen=True)
class Planned:
    """One run of the stream: its input, the end its retry policy predicts, its attempts."""

    n: int
    job: dict[str, Any]
    status: str
    attempts: dict[str, int]


def plan(n: int) -> Planned:
    """Run `n`'s input and prediction; one run in ten of each kind fails or retries."""
    job: dict[str, Any] = {"n": n, "work_s": WORK_S}
    if n == HELD:
        job["hold"] = "b"
    kind = n % 10
    if kind == 3:  # b fails once, then completes
        job["fail"] = {"b": 1}
        return Planned(n, job, "completed", {"a": 1, "b": 2, "c": 1})
    if kind == 6:  # c fails twice: its last retry completes
        job["fail"] = {"c": RETRIES}
        return Planned(n, job, "completed", {"a": 1, "b": 1, "c": RETRIES + 1})
    if kind == 7:  # b fails every attempt its policy allows
        job["fail"] = {"b": RETRIES + 1}
        return Planned(n, job, "failed", {"a": 1, "b": RETRIES + 1})
    if kind == 9:  # c's error is not retryable
        job["fatal"] = "c"
        return Planned(n, job, "failed", {"a": 1, "b": 1, "c": 1})
    return Planned(n, job, "completed", {"a": 1, "b": 1, "c": 1})


def run_problems(planned: Planned, run: dagnats.Run, events: list[dagnats.Event]) -> list[str]:
    """Everything wrong with one ended run and its history (empty: all as predicted)."""
    where = f"run {planned.n} ({run.run_id})"
    problems = []
    if run.status != planned.status:
        problems.append(f"{where} ended {run.status.value}, expected {planned.status}: "
                        f"{run.error}")
    ends = [event.type.value for event in events if event.terminal]
    if ends != [f"workflow.{planned.status}"]:
        problems.append(f"{where} has terminal events {ends}")
    recorded = Counter((e.type.value, e.step_id, e.attempt) for e in events
                       if e.type.value in ("step.queued", "step.completed", "step.failed"))
    problems += [f"{where}: {kind} of {step}#{attempt} recorded {count} times"
                 for (kind, step, attempt), count in recorded.items() if count > 1]
    completed = Counter(e.step_id for e in events if e.type.value == "step.completed")
    problems += [f"{where}: step {step} completed {count} times"
                 for step, count in completed.items() if count > 1]
    attempts = {sid: step.attempts for sid, step in run.steps.items() if step.attempts}
    if attempts != planned.attempts:
        problems.append(f"{where} made attempts {attempts}, expected {planned.attempts}")
    if run.status == "completed":
        trail = [(sid, attempt) for sid, attempt, _pid in run.output["trail"]]
        if trail != [(sid, planned.attempts[sid]) for sid in STEPS]:
            problems.append(f"{where} has output trail {trail}")
    return problems


def compact(events: list[dagnats.Event]) -> str:
    """A history in one line: `seq:type[:step#attempt]` for each event."""
    return " ".join(f"{e.seq}:{e.type.value}" + (f":{e.step_id}#{e.attempt}" if e.step_id else "")
                    for e in events)


# --- the test's side of the system ----------------------------------------------------------

class Api:
    """A dagnats.Client that reconnects: NATS may be down, paused or restarting mid-test."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._client: dagnats.Client | None = None

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """`client.<method>(...)`, retried with a new connection until OUTAGE_S have passed.

        Only safe calls are retried: reads, and starts with an idempotency key.
        """
        failures: list[str] = []

        def attempt() -> tuple[Any] | None:
            try:
                if self._client is None:
                    self._client = dagnats.Client.connect(self.url, request_timeout_s=3.0)
                return (getattr(self._client, method)(*args, **kwargs),)
            except dagnats.ServerUnavailable as exc:
                failures.append(str(exc))
                self.close()
                return None

        try:
            return wait_until(attempt, OUTAGE_S, f"{method} to succeed", interval_s=0.1)[0]
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last error: {failures[-1:]}") from None

    def close(self) -> None:
        """Drop the connection (the next call makes a new one)."""
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()


@dataclass
class Stream:
    """A stream of fault-chain runs: started in two halves, then awaited and checked."""

    serve: Serve
    marks: Path
    release_file: Path
    api: Api
    plans: list[Planned] = field(default_factory=lambda: [plan(n) for n in range(STREAM_SIZE)])
    ids: dict[int, str] = field(default_factory=dict)

    def start(self, numbers: range) -> None:
        """Start these runs; an idempotency key per run makes a retried start harmless."""
        for n in numbers:
            self.ids[n] = self.api.call("start", WORKFLOW, self.plans[n].job,
                                        idempotency_key=f"fault-run-{n}")

    def start_first_half(self) -> None:
        """Start the first half and wait until run HELD is in its held step."""
        self.start(range(FIRST_HALF))
        self.holders(timeout_s=30)

    def start_second_half(self) -> None:
        """Start the rest of the stream."""
        self.start(range(FIRST_HALF, STREAM_SIZE))

    def holders(self, count: int = 1, timeout_s: float = 20.0) -> list[int]:
        """The pids that began run HELD's step b, once at least `count` of them did."""
        pattern = f"{self.ids[HELD]}.b.1.*.start"

        def pids() -> list[int]:
            found = sorted({int(mark.name.split(".")[3]) for mark in self.marks.glob(pattern)})
            return found if len(found) >= count else []

        return wait_until(pids, timeout_s, f"{count} process(es) to begin the held step")

    def release(self) -> None:
        """Let every holding (and future) attempt of the held step finish."""
        self.release_file.touch()

    def wait_ended(self, timeout_s: float = END_DEADLINE_S) -> dict[int, dagnats.Run]:
        """Every run once it has ended; fail naming the runs still going at the deadline."""
        ended: dict[int, dagnats.Run] = {}
        last: dict[int, dagnats.Run] = {}

        def all_ended() -> bool:
            for n, run_id in self.ids.items():
                if n not in ended:
                    last[n] = run = self.api.call("get_run", run_id)
                    if run.terminal:
                        ended[n] = run
            return len(ended) == len(self.ids)

        try:
            wait_until(all_ended, timeout_s, "every run to end", interval_s=0.2)
        except AssertionError:
            stuck = {n: (run.status.value, {s: i.status.value for s, i in run.steps.items()})
                     for n, run in last.items() if n not in ended}
            raise AssertionError(f"{len(stuck)} run(s) lost or stuck after {timeout_s}s: "
                                 f"{stuck}") from None
        return ended

    def check(self) -> dict[int, list[dagnats.Event]]:
        """Wait for every run to end, check each against its plan; return the histories."""
        runs = self.wait_ended()
        histories = {n: self.api.call("events", self.ids[n]) for n in runs}
        problems = []
        for n, run in sorted(runs.items()):
            found = run_problems(self.plans[n], run, histories[n])
            if found:
                problems += [*found, f"  history of run {n}: {compact(histories[n])}"]
        assert not problems, "\n".join(problems)
        self.check_snapshots(runs)
        return histories

    def check_snapshots(self, runs: dict[int, dagnats.Run]) -> None:
        """The KV snapshots come to agree with the folded histories, and `run list` (the
        run index) with their statuses."""
        def shape(run: dagnats.Run | RunState) -> tuple[Any, ...]:
            steps = {sid: (s.status.value, s.attempts, s.output) for sid, s in run.steps.items()}
            return run.status.value, run.output, steps

        expected = {run.run_id: shape(run) for run in runs.values()}
        stored: dict[str, tuple[Any, ...]] = {}
        listed: dict[str, str] = {}

        def agree() -> bool:
            stored.clear()
            stored.update((run.run_id, shape(run))
                          for run in stored_snapshots(self.serve.url, list(expected)))
            listed.clear()
            listed.update((run.run_id, run.status.value) for run in
                          self.api.call("list_runs", WORKFLOW, limit=10 * STREAM_SIZE))
            return stored == expected and listed == {
                run_id: want[0] for run_id, want in expected.items()}

        try:
            wait_until(agree, 15, "the snapshots and run list to agree", interval_s=0.2)
        except AssertionError:
            differ = {run_id: {"history": want, "snapshot": stored.get(run_id),
                               "run list": listed.get(run_id)}
                      for run_id, want in expected.items()
                      if stored.get(run_id) != want or listed.get(run_id) != want[0]}
            raise AssertionError(f"run snapshots or run list disagree with the histories: "
                                 f"{differ}") from None


def stored_snapshots(url: str, run_ids: list[str]) -> list[RunState]:
    """The KV snapshots of these runs (on a connection of its own)."""
    async def read() -> list[RunState]:
        nc = await connect(url)  # serve's login, from the registry
        try:
            snapshots = await Snapshots.open(nc.jetstream())
            found = [await snapshots.get(run_id) for run_id in run_ids]
        finally:
            await nc.close()
        return [snapshot.run for snapshot in found if snapshot is not None]

    return asyncio.run(read())


@pytest.fixture
def stream_on(start_serve, tmp_path: Path) -> Iterator[Callable[..., Stream]]:
    """A factory: `serve` with these workers, the workflow registered, a Stream to drive."""
    apis: list[Api] = []

    def make(workers: list[Path]) -> Stream:
        marks = tmp_path / "marks"
        marks.mkdir()
        release = tmp_path / "release"
        serve = start_serve(workers, env={
            "FAULT_MARKS_DIR": str(marks), "FAULT_RELEASE_FILE": str(release),
            "DAGNATS_TASK_LEASE": LEASE_S,
        })
        api = Api(serve.url)
        apis.append(api)
        api.call("register_workflow", str(FAULT_CHAIN))
        return Stream(serve, marks, release, api)

    yield make
    for api in apis:
        api.close()


# --- processes --------------------------------------------------------------------------------

def nats_server_of(serve: Serve, not_pid: int | None = None) -> psutil.Process:
    """serve's live nats-server (other than `not_pid`), once there is one."""
    def find() -> psutil.Process | None:
        for proc in serve.tree():
            with contextlib.suppress(psutil.NoSuchProcess):
                if (proc.name() == "nats-server" and proc.pid != not_pid
                        and proc.status() != psutil.STATUS_ZOMBIE):
                    return proc
        return None

    return wait_until(find, 20, "serve's nats-server to run")


def child_other_than(serve: Serve, marker: str, old_pid: int) -> psutil.Process:
    """serve's child matching `marker` once it is a new process (restarted after `old_pid`)."""
    def find() -> psutil.Process | None:
        for proc in serve.tree()[1:]:
            with contextlib.suppress(psutil.NoSuchProcess):
                if (proc.pid != old_pid and marker in " ".join(proc.cmdline())
                        and proc.status() != psutil.STATUS_ZOMBIE):
                    return proc
        return None

    return wait_until(find, 20, f"serve to restart {marker!r}")


@contextlib.contextmanager
def extra_engine(serve: Serve, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A second engine process beside serve's own, on the same NATS; killed on exit."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "dagnats", "_component", "engine"],
                                env=serve.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: "engine consuming" in log_path.read_text(), 20,
                   f"the second engine to consume (see {log_path})")
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


@dataclass(frozen=True)
class EngineLoad:
    """The engine consumer's counters, and how many events history holds."""

    deliveries: int  # every delivery, redeliveries included (the consumer sequence)
    events: int  # what the engine consumes: events, not tasks
    unacked: int
    undelivered: int

    @property
    def redeliveries(self) -> int:
        """Deliveries of an event already delivered before (cumulative)."""
        return self.deliveries - (self.events - self.undelivered)


def lease_shares(url: str) -> dict[str, int]:
    """How many partitions each engine holds now."""
    async def read() -> dict[str, int]:
        nc = await connect(url)
        try:
            held = await partitions.holders(nc.jetstream())
        finally:
            await nc.close()
        return dict(Counter(held.values()))

    return asyncio.run(read())


def engine_load(url: str) -> EngineLoad:
    """The engine consumer's counters now (on a connection of its own)."""
    async def read() -> EngineLoad:
        nc = await connect(url)  # serve's login, from the registry
        try:
            js = nc.jetstream()
            backlog = await partitions.backlog(js)
            counts = await jetstream.stream_subject_counts(js, names.HISTORY_STREAM,
                                                           names.history_events_filter())
        finally:
            await nc.close()
        return EngineLoad(backlog.delivered, sum(counts.values()), backlog.ack_pending,
                          backlog.pending)

    return asyncio.run(read())


def freeze_holding_events(stream: Stream, engine: psutil.Process | subprocess.Popen[bytes]
                          ) -> None:
    """SIGSTOP `engine`, start the second half, and return once the frozen engine holds events.

    Its pending fetch takes some of the new events; they are held once deliveries have
    stopped for a while with events still unacknowledged (a live engine acks in
    milliseconds). A SIGKILL then provably hits an engine in the middle of its work.
    """
    os.kill(engine.pid, signal.SIGSTOP)
    stream.start_second_half()
    last: list[EngineLoad] = []

    def holding() -> bool:
        load = engine_load(stream.serve.url)
        quiet = bool(last) and load.deliveries == last[-1].deliveries
        last.append(load)
        return quiet and load.unacked > 0

    # With two engines, the frozen one's partitions are taken over once its leases expire.
    wait_until(holding, 8 + partitions.EXPIRY_S, "the frozen engine to hold delivered events",
               interval_s=0.5)


def handed_on(stream: Stream) -> None:
    """The killed engine's events reach a live engine after their ack wait, changing nothing.

    The runs usually end first: an engine that meets a run it does not know replays its
    history, events the dead engine held included.
    """
    def redelivered() -> bool:
        load = engine_load(stream.serve.url)
        return load.unacked == 0 and load.undelivered == 0 and load.redeliveries >= 1

    wait_until(redelivered, names.ENGINE_ACK_WAIT_S + 10, "the held events to be redelivered",
               interval_s=0.25)
    stream.check()


def _cpu_s(proc: subprocess.Popen[bytes]) -> float:
    times = psutil.Process(proc.pid).cpu_times()
    return times.user + times.system


def step_started_pids(marks: Path, run_id: str, step_id: str) -> set[int]:
    """The processes that began any attempt of a step (from the fault worker's marks)."""
    return {int(mark.name.split(".")[3]) for mark in marks.glob(f"{run_id}.{step_id}.*.start")}


# --- the tests --------------------------------------------------------------------------------

def test_kill_9_of_nats_server_mid_stream(stream_on) -> None:
    """serve restarts nats-server on the same store and port; every run ends as predicted."""
    stream = stream_on([FAULT_WORKER])
    stream.start_first_half()
    old = nats_server_of(stream.serve)
    old_argv = old.cmdline()

    old.kill()
    new = nats_server_of(stream.serve, not_pid=old.pid)
    stream.release()
    stream.start_second_half()  # retried until NATS and the API are back

    stream.check()
    new_argv = new.cmdline()
    for flag in ("-sd", "-p"):  # the same store and client port
        assert new_argv[new_argv.index(flag) + 1] == old_argv[old_argv.index(flag) + 1]
    stream.serve.wait_for_output("nats-server exited with code -9", 5)


def test_kill_9_of_the_engine_under_serve_mid_stream(stream_on) -> None:
    """The supervisor restarts the engine; the events it held are redelivered and redone."""
    stream = stream_on([FAULT_WORKER])
    stream.start_first_half()
    engine = stream.serve.child("_component engine")

    freeze_holding_events(stream, engine)
    engine.kill()
    child_other_than(stream.serve, "_component engine", engine.pid)
    stream.release()

    stream.check()
    handed_on(stream)
    stream.serve.wait_for_output("engine exited with code -9", 5)


def test_two_engines_at_once_and_kill_9_of_one_mid_stream(stream_on, tmp_path: Path) -> None:
    """Two engines share the partitions (half each); one dies mid-stream.

    The second engine is never restarted: serve's engine finishes everything, including the
    events the dead one held.
    """
    stream = stream_on([FAULT_WORKER])
    with extra_engine(stream.serve, tmp_path / "engine-2.log") as second:
        wait_until(lambda: sorted(lease_shares(stream.serve.url).values()) == [16, 16], 15,
                   "the two engines to share the partitions")
        idle_cpu_s = _cpu_s(second)
        stream.start_first_half()
        assert _cpu_s(second) > idle_cpu_s, "the second engine handled no event"
        freeze_holding_events(stream, second)
        second.kill()
        stream.release()
        stream.check()
        handed_on(stream)


def test_kill_9_of_a_worker_mid_task(stream_on) -> None:
    """The supervisor restarts the worker; its tasks run again after the lease, once in history."""
    stream = stream_on([FAULT_WORKER])
    stream.start_first_half()
    [holder] = stream.holders()

    os.kill(holder, signal.SIGKILL)
    stream.release()  # only a new delivery, in the restarted worker, can finish it now
    stream.start_second_half()

    histories = stream.check()
    held = stream.ids[HELD]
    restarted = step_started_pids(stream.marks, held, "b") - {holder}
    assert restarted, "the held step never ran again after its worker was killed"
    # The finishing attempt was a redelivery (a delivery killed within 100 ms of its start
    # leaves no step.started; a quick one reports its delivery in its outcome).
    began = [e for e in (CoreEvent.model_validate(h.model_dump()) for h in histories[HELD])
             if e.step_id == "b" and e.begins_attempt()]
    assert max(e.data["delivery"] for e in began) >= 2  # at-least-once
    held_run = stream.api.call("get_run", held)
    assert held_run.output["trail"][1][2] in restarted
    stream.serve.wait_for_output("exited with code -9", 5)


def test_a_worker_stalled_past_its_lease(stream_on) -> None:
    """SIGSTOP: another worker process takes the task; the stalled one's late result is dropped."""
    stream = stream_on([FAULT_WORKER, FAULT_WORKER])
    stream.start_first_half()
    [stalled] = stream.holders()
    held = stream.ids[HELD]

    os.kill(stalled, signal.SIGSTOP)
    try:
        # The lease lapses and JetStream redelivers the task to the other worker process.
        taker = next(pid for pid in stream.holders(count=2) if pid != stalled)
        stream.release()
        stream.start_second_half()
        stream.check()
        before = stream.api.call("get_run", held)
        late = LateResults(stream.serve.url, held)
    finally:
        os.kill(stalled, signal.SIGCONT)

    # The stalled process wakes, finishes the held step and reports it: JetStream drops the
    # report as a duplicate (same message id), and the run does not change.
    late.wait_for(lambda event: _trail_pid(event, "b") == stalled)
    assert before.output["trail"][1][2] == taker
    assert stream.api.call("get_run", held) == before
    stream.check()


def test_nats_server_paused_for_5_s(stream_on) -> None:
    """SIGSTOP nats-server for 5 s, then SIGCONT: every client carries on, nothing is lost."""
    stream = stream_on([FAULT_WORKER])
    stream.start_first_half()
    server = nats_server_of(stream.serve)

    server.suspend()
    resume = threading.Timer(5.0, server.resume)  # the pause is the fault, not a wait
    resume.start()
    try:
        stream.release()
        stream.start_second_half()  # blocks or retries until the server is back
        resume.join()
        stream.check()
    finally:
        resume.cancel()
        with contextlib.suppress(psutil.NoSuchProcess):
            server.resume()
    assert server.pid == nats_server_of(stream.serve).pid  # paused, never restarted


# --- watching late reports ----------------------------------------------------------------

def _trail_pid(event: CoreEvent, step_id: str) -> int | None:
    """The pid in a step.completed event's output trail for `step_id`, if it has one."""
    if event.type.value != "step.completed" or event.step_id != step_id:
        return None
    for sid, _attempt, pid in (event.data.get("output") or {}).get("trail", []):
        if sid == step_id:
            return int(pid)
    return None


class LateResults:
    """Every message published on one run's history subject, duplicates JetStream drops included.

    A plain NATS subscription sees each publish, so it proves a late report was sent even
    though the stream never stores it. It listens on an event loop in a thread of its own.
    """

    def __init__(self, url: str, run_id: str) -> None:
        self.events: list[CoreEvent] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        subscribed = threading.Event()
        self._thread = threading.Thread(
            target=self._loop.run_until_complete, args=(self._listen(url, run_id, subscribed),),
            daemon=True)
        self._thread.start()
        assert subscribed.wait(10), "could not subscribe to the run's history subject"

    async def _listen(self, url: str, run_id: str, subscribed: threading.Event) -> None:
        nc = await connect(url)  # serve's login, from the registry

        async def on_msg(msg: Any) -> None:
            with self._lock:
                self.events.append(CoreEvent.decode(msg.data))

        try:
            await nc.subscribe(names.history_run_filter(run_id), cb=on_msg)
            await nc.flush()
            subscribed.set()
            await self._stop.wait()
        finally:
            await nc.close()

    def wait_for(self, predicate: Callable[[CoreEvent], bool], timeout_s: float = 15.0) -> None:
        """Block until a published event matches `predicate`; then stop listening."""
        def seen() -> bool:
            with self._lock:
                return any(predicate(event) for event in self.events)

        try:
            wait_until(seen, timeout_s, "the stalled worker's late report")
        except AssertionError as exc:
            with self._lock:
                published = [(e.type.value, e.step_id, e.attempt, e.data.get("output"))
                             for e in self.events]
            raise AssertionError(f"{exc}; published meanwhile: {published}") from None
        finally:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(5)
            self._loop.close()
