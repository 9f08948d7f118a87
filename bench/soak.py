#!/usr/bin/env python3
"""Soak: thousands of runs through `dagnats serve` while its processes are killed at random.

    bench/soak.py [--runs 10000] [--seed 1] [--in-flight 100] [--engines 2]
                  [--chaos-every 5] [--stuck-after 90] [--data-dir DIR] [--keep]

Starts `bin/dagnats serve` on a free port with a scratch data dir and two worker processes
of tests/e2e/workers/fault_worker.py, plus a second engine process beside serve's own (two
engines share the work through compare-and-set on the run snapshots), registers a three-step
chain with a retry policy, and keeps --in-flight runs going until --runs have been started.
Each run's input picks random handler failures (a step fails its first k attempts: within
the retries it recovers, beyond them the run fails; or a step raises a non-retryable error),
so every run's end and attempts are known in advance. Meanwhile, every --chaos-every seconds
on average, it kill -9s an engine, a worker or nats-server, or stalls a worker past its task
lease with SIGSTOP; serve restarts what died (and the soak restarts its own engine).

At the end it reads the whole history stream (the source of truth) and prints how many runs
ended in each state, how many ended otherwise than their input predicts, how many histories
break an invariant (a second terminal event, an event recorded twice, a step completed
twice), how many snapshots and `run list` entries disagree with their history, and how
many runs were lost (never in history) or stuck (never ended). It exits 0 only if every
one of those is zero.

Not part of the test suite: 10,000 runs take several minutes.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __name__ == "__main__" and os.environ.get("DAGNATS_SOAK_ENV") != "1":
    sys.path.insert(0, str(ROOT / "bin"))
    from bootstrap import exec_in_env

    os.environ["DAGNATS_SOAK_ENV"] = "1"  # the checkout's venv runs this file again
    exec_in_env("runtime", [str(Path(__file__).resolve()), *sys.argv[1:]])

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import logging  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402

import psutil  # noqa: E402
from nats.js import api as js_api  # noqa: E402

from dagnats import AsyncClient, ServerUnavailable, jetstream, names  # noqa: E402
from dagnats.connection import connect  # noqa: E402
from dagnats.dag.events import RUN_TERMINAL_EVENTS, Event, EventType  # noqa: E402
from dagnats.dag.state import RunState, fold  # noqa: E402
from dagnats.engine import partitions  # noqa: E402
from dagnats.store import run_index  # noqa: E402
from dagnats.store.snapshots import Snapshots  # noqa: E402

WORKER = ROOT / "tests" / "e2e" / "workers" / "fault_worker.py"
WORKFLOW = "soak-chain"
STEPS = ("a", "b", "c")
RETRIES = 2
DEFINITION = {
    "name": WORKFLOW, "version": "1",
    "default_retry": {"max_attempts": RETRIES, "strategy": "fixed", "initial_delay": "50ms"},
    "steps": [{"id": "a", "task": "fault"},
              {"id": "b", "task": "fault", "depends_on": ["a"]},
              {"id": "c", "task": "fault", "depends_on": ["b"]}],
}
LEASE_S = 3
#: How long a start may keep failing (NATS or the API restarting) before it counts as lost.
START_PATIENCE_S = 120.0
#: How often runs not seen ending (their terminal event published while NATS was down) are
#: looked up, and how old they must be.
RECONCILE_EVERY_S = 5.0
RECONCILE_AFTER_S = 10.0
RECOVERABLE = (ServerUnavailable, TimeoutError, ConnectionError)


# --- what each run should do --------------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    """One run: its input for the fault worker, its predicted end and attempts per step."""

    n: int
    job: dict[str, Any]
    status: str
    attempts: dict[str, int]


def plan(rng: random.Random, n: int) -> Plan:
    """A random run: per step, 10% fail and recover, 3% fail for good, 2% fail fatally."""
    job: dict[str, Any] = {"n": n, "work_s": rng.choice((0, 0.005, 0.02)), "fail": {}}
    for step in STEPS:
        roll = rng.random()
        if roll < 0.02 and "fatal" not in job:
            job["fatal"] = step
        elif roll < 0.05:
            job["fail"][step] = RETRIES + 1
        elif roll < 0.15:
            job["fail"][step] = rng.randint(1, RETRIES)
    return Plan(n, job, *predict(job))


def predict(job: dict[str, Any]) -> tuple[str, dict[str, int]]:
    """The end and per-step attempts the retry policy gives `job`."""
    attempts: dict[str, int] = {}
    for step in STEPS:
        if job.get("fatal") == step:
            attempts[step] = 1
            return "failed", attempts
        fails = job["fail"].get(step, 0)
        attempts[step] = min(fails, RETRIES) + 1
        if fails > RETRIES:
            return "failed", attempts
    return "completed", attempts


# --- serve and its processes --------------------------------------------------------------

def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Serve:
    """`bin/dagnats serve` with two fault workers; its output goes to <data dir>/soak-serve.log."""

    def __init__(self, data_dir: Path, workers: int) -> None:
        self.data_dir = data_dir
        self.url = f"nats://127.0.0.1:{free_port()}"
        argv = [str(ROOT / "bin" / "dagnats"), "serve", "--data-dir", str(data_dir),
                "--nats-port", self.url.rsplit(":", 1)[1], "--http-port", "0"]
        for _ in range(workers):
            argv += ["--worker", str(WORKER)]
        env = {**os.environ, "DAGNATS_TASK_LEASE": str(LEASE_S), "DAGNATS_NATS_URL": self.url}
        data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env=env, cwd=ROOT)
        self.restarts: Counter[str] = Counter()
        self._ready = threading.Event()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        with open(self.data_dir / "soak-serve.log", "wb") as log:
            for line in self.proc.stdout:
                log.write(line)
                log.flush()
                text = line.decode(errors="replace")
                if "Press Ctrl-C to stop" in text:
                    self._ready.set()
                if "; restarting in" in text:
                    self.restarts[text.split("dagnats serve: ")[-1].split(" ")[0]] += 1
        self._ready.set()  # serve exited: whoever waits finds out from poll()

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Block until serve printed its banner; SystemExit if it never does."""
        if not self._ready.wait(timeout_s) or self.proc.poll() is not None:
            raise SystemExit(f"soak: serve did not start; see {self.data_dir}/soak-serve.log")

    def processes(self, name: str | None = None, marker: str = "") -> list[psutil.Process]:
        """serve's live descendants with this process name or command-line marker."""
        found = []
        for proc in psutil.Process(self.proc.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                if (name and proc.name() == name) or (marker and marker in
                                                      " ".join(proc.cmdline())):
                    found.append(proc)
        return found

    def stop(self) -> None:
        """SIGTERM serve (it stops everything), SIGKILL whatever is left after 20 s."""
        tree = []
        with contextlib.suppress(psutil.Error):
            tree = psutil.Process(self.proc.pid).children(recursive=True)
        for proc in tree:  # a worker stalled by the chaos would never stop
            with contextlib.suppress(psutil.Error):
                proc.resume()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            for proc in [*tree, self.proc]:
                with contextlib.suppress(psutil.Error, OSError):
                    proc.kill()


class ExtraEngines:
    """Engine processes the soak runs beside serve's own, restarted by the soak when killed."""

    RESTART_DELAY_S = 0.5

    def __init__(self, serve: Serve, count: int) -> None:
        self.serve = serve
        self.procs = [self._spawn(i) for i in range(count)]
        self.restarts = 0

    def _spawn(self, i: int) -> subprocess.Popen[bytes]:
        with open(self.serve.data_dir / "logs" / f"soak-engine-{i + 2}.log", "ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "dagnats", "_component", "engine"], cwd=ROOT,
                env={**os.environ, "DAGNATS_NATS_URL": self.serve.url}, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def processes(self) -> list[psutil.Process]:
        """The extra engines alive now."""
        alive = []
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(psutil.Error):
                    alive.append(psutil.Process(proc.pid))
        return alive

    async def keep(self, stop: asyncio.Event) -> None:
        """Restart any extra engine that died, until `stop` is set."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.RESTART_DELAY_S)
                return
            for i, proc in enumerate(self.procs):
                if proc.poll() is not None:
                    self.procs[i] = self._spawn(i)
                    self.restarts += 1

    def stop(self) -> None:
        """SIGTERM every extra engine; SIGKILL what is left after 10 s."""
        for proc in self.procs:
            with contextlib.suppress(psutil.Error):
                psutil.Process(proc.pid).resume()  # in case a fault left it stopped
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


class Chaos:
    """Random faults: kill -9 of the engine, a worker or nats-server; a worker stalled.

    After a kill it waits until serve has restarted the victim before it picks the next
    fault, so outages never pile up. serve's restart backoff still grows for a unit killed
    again within a minute of its restart, as it would for a unit that keeps crashing.
    """

    KINDS = ("engine kill", "worker kill", "nats-server kill", "worker stall")
    WEIGHTS = (3, 3, 2, 2)
    #: How long serve may take to bring a killed unit back (its backoff tops out at 30 s).
    RECOVERY_S = 60.0

    def __init__(self, serve: Serve, engines: ExtraEngines, rng: random.Random,
                 every_s: float) -> None:
        self.serve = serve
        self.engines = engines
        self.rng = rng
        self.every_s = every_s
        self.done: Counter[str] = Counter()

    async def run(self, stop: asyncio.Event) -> None:
        """Strike at random intervals (mean `every_s`) until `stop` is set."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.rng.expovariate(1 / self.every_s))
                return
            kind = self.rng.choices(self.KINDS, self.WEIGHTS)[0]
            if await self.strike(kind):
                self.done[kind] += 1

    def victims(self, kind: str) -> list[psutil.Process]:
        """The processes a fault of `kind` may hit."""
        if kind == "engine kill":
            return [*self.serve.processes(marker="_component engine"),
                    *self.engines.processes()]
        if kind == "nats-server kill":
            return self.serve.processes(name="nats-server")
        return self.serve.processes(marker=str(WORKER))

    async def strike(self, kind: str) -> bool:
        """Do one fault; False when its victim is not running right now (being restarted)."""
        victims = self.victims(kind)
        if not victims:
            return False
        victim = self.rng.choice(victims)
        try:
            if kind == "worker stall":
                victim.suspend()  # past its lease: its tasks go to the other worker
                await asyncio.sleep(LEASE_S + 1)  # the stall is the fault, not a wait
                victim.resume()
                return True
            victim.kill()
        except psutil.Error:
            return False
        await self.recovered(kind, len(victims), victim.pid)
        return True

    async def recovered(self, kind: str, count: int, dead_pid: int) -> None:
        """Wait until serve runs `count` processes of `kind` again, the dead one not among them."""
        deadline = time.monotonic() + self.RECOVERY_S
        while time.monotonic() < deadline:
            pids = [proc.pid for proc in self.victims(kind)]
            if len(pids) >= count and dead_pid not in pids:
                return
            await asyncio.sleep(0.2)  # polling the process table, with a deadline
        print(f"soak: serve did not restart after a {kind} within {self.RECOVERY_S:g}s",
              file=sys.stderr)


# --- driving runs -------------------------------------------------------------------------

@dataclass
class Tracker:
    """Which runs were started and which have ended (seen on the history subjects)."""

    started: dict[int, str] = field(default_factory=dict)
    started_at: dict[str, float] = field(default_factory=dict)
    ended: set[str] = field(default_factory=set)
    unstarted: list[int] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    last_end: float = field(default_factory=time.monotonic)

    @property
    def in_flight(self) -> int:
        """Runs started and not seen ending."""
        return len(self.started_at) - len(self.ended)

    def end(self, run_id: str) -> None:
        """Note that `run_id` ended."""
        if run_id in self.started_at and run_id not in self.ended:
            self.ended.add(run_id)
            self.last_end = time.monotonic()
            self.changed.set()

    def stalled(self, stuck_after_s: float) -> bool:
        """True when runs are going but none has ended for `stuck_after_s`."""
        return self.in_flight > 0 and time.monotonic() - self.last_end > stuck_after_s

    async def on_history(self, msg: Any) -> None:
        """A history publish (plain subscription): note terminal events."""
        with contextlib.suppress(ValueError):
            event = Event.decode(msg.data)
            if event.type in RUN_TERMINAL_EVENTS:
                self.end(event.run_id)

    async def wait_change(self, timeout_s: float) -> None:
        """Return after the next end, or after `timeout_s`."""
        self.changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.changed.wait(), timeout_s)


async def patiently(what: str, call: Any, patience_s: float = START_PATIENCE_S) -> Any:
    """`await call()`, retried while NATS or the API recovers; None after `patience_s`."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            return await call()
        except RECOVERABLE as exc:
            if time.monotonic() > deadline:
                print(f"soak: giving up on {what}: {exc}", file=sys.stderr)
                return None
            await asyncio.sleep(0.5)  # a retry backoff while a restart completes


async def feed(client: AsyncClient, plans: list[Plan], tracker: Tracker, in_flight: int,
               stuck_after_s: float) -> None:
    """Start every run, keeping at most `in_flight` of them going.

    Gives up (the rest are never started) when the runs in flight stop ending altogether.
    """
    progress_every = max(1, len(plans) // 10)
    tracker.last_end = time.monotonic()
    for p in plans:
        if not await room(tracker, in_flight, stuck_after_s):
            tracker.unstarted += [q.n for q in plans[p.n:]]
            print(f"soak: no run ended for {stuck_after_s:g}s; starting no more", flush=True)
            return
        run_id = await patiently(f"starting run {p.n}", lambda p=p: client.start(
            WORKFLOW, p.job, idempotency_key=f"soak-{p.n}"))
        if run_id is None:
            tracker.unstarted.append(p.n)
            continue
        tracker.started[p.n] = run_id
        tracker.started_at[run_id] = time.monotonic()
        if (p.n + 1) % progress_every == 0:
            print(f"soak: {p.n + 1} started, {len(tracker.ended)} ended", flush=True)


async def room(tracker: Tracker, in_flight: int, stuck_after_s: float) -> bool:
    """Wait until fewer than `in_flight` runs are going; False if none ends for too long."""
    while tracker.in_flight >= in_flight:
        if tracker.stalled(stuck_after_s):
            return False
        await tracker.wait_change(1.0)
    return True


async def reconcile(client: AsyncClient, tracker: Tracker, stop: asyncio.Event) -> None:
    """Look up runs not seen ending for a while: their end may have passed during an outage."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), RECONCILE_EVERY_S)
            return
        now = time.monotonic()
        old = [rid for rid, at in tracker.started_at.items()
               if rid not in tracker.ended and now - at > RECONCILE_AFTER_S]
        for run_id in old[:200]:
            with contextlib.suppress(*RECOVERABLE):
                if (await client.get_run(run_id)).terminal:
                    tracker.end(run_id)


async def settle(tracker: Tracker, stuck_after_s: float) -> None:
    """Wait until every started run ended, or until none ended for `stuck_after_s`."""
    while tracker.in_flight > 0 and not tracker.stalled(stuck_after_s):
        await tracker.wait_change(1.0)


# --- the verdict --------------------------------------------------------------------------

async def read_history(js: Any) -> dict[str, list[Event]]:
    """Every event in WORKFLOW_HISTORY, by run, in order."""
    config = js_api.ConsumerConfig(ack_policy=js_api.AckPolicy.NONE, inactive_threshold=60.0,
                                   deliver_policy=js_api.DeliverPolicy.ALL, mem_storage=True)
    sub = await js.pull_subscribe(names.history_filter(), stream=names.HISTORY_STREAM,
                                  config=config)
    by_run: dict[str, list[Event]] = {}
    pending = (await sub.consumer_info()).num_pending
    while pending > 0:
        for msg in await jetstream.fetch(sub, 1000, timeout_s=5.0):
            pending = msg.metadata.num_pending
            try:
                event = Event.decode(msg.data, seq=msg.metadata.sequence.stream)
            except ValueError:  # a poison message: not part of any run's history
                continue
            by_run.setdefault(event.run_id, []).append(event)
    await sub.unsubscribe()
    return by_run


def history_problems(events: list[Event]) -> list[str]:
    """Invariants of one ended history: one end, nothing recorded twice, one completion."""
    problems = []
    ends = [e.type.value for e in events if e.type in RUN_TERMINAL_EVENTS]
    if len(ends) != 1:
        problems.append(f"terminal events {ends}")
    once = (EventType.STEP_QUEUED, EventType.STEP_COMPLETED, EventType.STEP_FAILED)
    recorded = Counter((e.type.value, e.step_id, e.attempt) for e in events if e.type in once)
    problems += [f"{kind} {step}#{attempt} x{count}"
                 for (kind, step, attempt), count in recorded.items() if count > 1]
    completed = Counter(e.step_id for e in events if e.type is EventType.STEP_COMPLETED)
    problems += [f"step {step} completed x{count}" for step, count in completed.items()
                 if count > 1]
    return problems


@dataclass
class Verdict:
    """What the history says about every planned run."""

    ends: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    snapshot_mismatches: list[str] = field(default_factory=list)
    index_mismatches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing went wrong."""
        return not (self.unexpected or self.broken or self.lost or self.stuck
                    or self.snapshot_mismatches or self.index_mismatches)


def judge(plans: list[Plan], tracker: Tracker, histories: dict[str, list[Event]]
          ) -> tuple[Verdict, dict[str, RunState]]:
    """Compare every started run's history with its plan."""
    verdict, states = Verdict(), {}
    for p in plans:
        run_id = tracker.started.get(p.n)
        if run_id is None:
            continue
        events = histories.get(run_id, [])
        run = fold(events)
        if run is None:
            verdict.lost.append(f"run {p.n} {run_id}: no workflow.started in history")
            continue
        states[run_id] = run
        if not run.status.terminal:
            steps = {sid: s.status.value for sid, s in run.steps.items()}
            verdict.stuck.append(f"run {p.n} {run_id}: {run.status.value} {steps}")
            continue
        verdict.ends[run.status.value] += 1
        attempts = {sid: s.attempts for sid, s in run.steps.items() if s.attempts}
        if run.status.value != p.status or attempts != p.attempts:
            verdict.unexpected.append(
                f"run {p.n} {run_id}: {run.status.value} {attempts}, expected {p.status} "
                f"{p.attempts} ({run.error})")
        problems = history_problems(events)
        if problems:
            verdict.broken.append(f"run {p.n} {run_id}: {'; '.join(problems)}")
    return verdict, states


async def engine_idle(js: Any, timeout_s: float = 60.0) -> None:
    """Wait until the engine has handled every history event (nothing pending or unacked).

    An engine killed after writing a run's last event but before its snapshot leaves the
    snapshot behind until the event is redelivered (ENGINE_ACK_WAIT_S later).
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(*RECOVERABLE):
            if (await partitions.backlog(js)).idle:
                return
        await asyncio.sleep(0.5)  # polling the consumer's counters, with a deadline
    print("soak: the engine still has unhandled events", file=sys.stderr)


async def compare_snapshots(js: Any, states: dict[str, RunState], verdict: Verdict) -> None:
    """Every ended run's KV snapshot agrees with its history on status and step statuses."""
    await engine_idle(js)
    snapshots = await Snapshots.open(js)
    for run_id, run in states.items():
        if not run.status.terminal:
            continue
        stored = await snapshots.get(run_id)
        want = _shape(run)
        got = _shape(stored.run) if stored else None
        if got != want:
            verdict.snapshot_mismatches.append(f"{run_id}: snapshot {got}, history {want}")
    index = run_index.RunIndexView(js)  # what `run list` reads
    await index.sync()
    listed = {s.run_id: s.status for s in index.page(limit=len(states) + len(index)).runs}
    for run_id, run in states.items():
        if run.status.terminal and listed.get(run_id) is not run.status:
            verdict.index_mismatches.append(
                f"{run_id}: run list {listed.get(run_id)}, history {run.status.value}")


def _shape(run: RunState) -> tuple[str, dict[str, str]]:
    return run.status.value, {sid: step.status.value for sid, step in run.steps.items()}


def report(args: argparse.Namespace, verdict: Verdict, tracker: Tracker, chaos: Chaos,
           serve: Serve, engines: ExtraEngines, elapsed_s: float) -> None:
    """Print the counts, and the first few examples of anything wrong."""
    faults = ", ".join(f"{kind} {count}" for kind, count in sorted(chaos.done.items()))
    restarted = {**serve.restarts, "extra engines (by the soak)": engines.restarts}
    restarts = ", ".join(f"{unit} {count}" for unit, count in sorted(restarted.items()) if count)
    print(f"\nsoak: {args.runs} runs (seed {args.seed}), {args.engines} engines, 2 workers, "
          f"in {elapsed_s:.1f}s: {args.runs / elapsed_s:.1f} runs/s")
    print(f"faults injected: {sum(chaos.done.values())} ({faults or 'none'})")
    print(f"serve restarted: {restarts or 'nothing'}")
    print("runs by terminal state:")
    for status, count in sorted(verdict.ends.items()):
        print(f"  {status:<20}{count:>7}")
    rows = [("ended as predicted", sum(verdict.ends.values()) - len(verdict.unexpected)),
            ("ended unexpectedly", len(verdict.unexpected)),
            ("broken histories", len(verdict.broken)),
            ("snapshot mismatches", len(verdict.snapshot_mismatches)),
            ("run list mismatches", len(verdict.index_mismatches)),
            ("never started", len(tracker.unstarted)),
            ("stuck", len(verdict.stuck)),
            ("lost", len(verdict.lost))]
    for name, count in rows:
        print(f"{name:<22}{count:>7}")
    for name, items in (("unexpected", verdict.unexpected), ("broken", verdict.broken),
                        ("snapshot", verdict.snapshot_mismatches),
                        ("run list", verdict.index_mismatches), ("stuck", verdict.stuck),
                        ("lost", verdict.lost)):
        for item in items[:5]:
            print(f"  {name}: {item}")


#: Why an engine may leave an event for redelivery while NATS restarts or engines race.
TRANSIENT_CAUSES = frozenset({
    "TimeoutError", "ConnectionClosedError", "ConnectionReconnectingError", "NoRespondersError",
    "NoStreamResponseError", "ServiceUnavailableError", "SnapshotConflict", "StaleConnectionError",
    "UnexpectedEOF", "OutboundBufferLimitError", "ConnectionResetError", "BrokenPipeError"})
ENGINE_TROUBLE = re.compile(r"not handled, will retry: (\w+)|crashed: (.*)$")


def engine_troubles(logs: Path) -> Counter[str]:
    """What the engines' logs say they could not handle, by cause (exception type)."""
    causes: Counter[str] = Counter()
    for log in sorted(logs.glob("*engine*.log")):
        for line in log.read_text(errors="replace").splitlines():
            found = ENGINE_TROUBLE.search(line)
            if found:
                causes[found.group(1) or f"crash: {found.group(2)[:60]}"] += 1
    return causes


def report_troubles(causes: Counter[str]) -> bool:
    """Print the engines' troubles; True when none had an unexpected cause (a bug)."""
    unexpected = {cause: n for cause, n in causes.items() if cause not in TRANSIENT_CAUSES}
    print("engine retries by cause: " + (", ".join(f"{c} {n}" for c, n in
                                                   sorted(causes.items())) or "none"))
    for cause, count in sorted(unexpected.items()):
        print(f"  unexpected: {cause} ({count}x)")
    return not unexpected


# --- main -----------------------------------------------------------------------------------

async def soak(args: argparse.Namespace, data_dir: Path) -> bool:
    """Run the soak against a fresh serve in `data_dir`; True when nothing was lost or wrong."""
    rng = random.Random(args.seed)
    plans = [plan(rng, n) for n in range(args.runs)]
    serve = Serve(data_dir, workers=2)
    engines: ExtraEngines | None = None
    try:
        await asyncio.to_thread(serve.wait_ready)
        engines = ExtraEngines(serve, args.engines - 1)
        nc = await connect(serve.url, name="dagnats-soak", long_lived=True)
        client = AsyncClient(nc, serve.url, request_timeout_s=5.0)
        await patiently("registering the workflow", lambda: client.register_workflow(DEFINITION))
        tracker = Tracker()
        await nc.subscribe(names.history_filter(), cb=tracker.on_history)
        chaos, stop = Chaos(serve, engines, rng, args.chaos_every), asyncio.Event()
        began = time.monotonic()
        background = [asyncio.create_task(chaos.run(stop)),
                      asyncio.create_task(engines.keep(stop)),
                      asyncio.create_task(reconcile(client, tracker, stop))]
        await feed(client, plans, tracker, args.in_flight, args.stuck_after)
        await settle(tracker, args.stuck_after)
        stop.set()
        await asyncio.gather(*background)
        elapsed_s = time.monotonic() - began
        js = nc.jetstream()
        histories = await patiently("reading history", lambda: read_history(js))
        verdict, states = judge(plans, tracker, histories or {})
        await compare_snapshots(js, states, verdict)
        report(args, verdict, tracker, chaos, serve, engines, elapsed_s)
        calm = report_troubles(engine_troubles(data_dir / "logs"))
        await jetstream.close(nc)
        return verdict.ok and not tracker.unstarted and calm
    finally:
        if engines is not None:
            engines.stop()
        serve.stop()


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000, help="runs to start [10000]")
    parser.add_argument("--seed", type=int, default=1, help="random seed [1]")
    parser.add_argument("--in-flight", type=int, default=100,
                        help="runs going at once [100]")
    parser.add_argument("--engines", type=int, default=2,
                        help="engine processes: serve's own plus N-1 run by the soak [2]")
    parser.add_argument("--chaos-every", type=float, default=5.0,
                        help="mean seconds between faults [5]")
    parser.add_argument("--stuck-after", type=float, default=90.0,
                        help="seconds without any run ending before the rest count as stuck")
    parser.add_argument("--data-dir", type=Path, help="keep serve's data here [a temp dir]")
    parser.add_argument("--keep", action="store_true", help="keep the temp data dir")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    """0 when every run ended as predicted and none was lost or stuck; 1 otherwise."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # not one line per reconnect attempt
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="dagnats-soak-"))
    ok = asyncio.run(soak(args, data_dir))
    if ok and not (args.keep or args.data_dir):
        shutil.rmtree(data_dir, ignore_errors=True)
    else:
        print(f"soak: data and logs kept in {data_dir}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
