"""Who serves what (issue 11): workers announce themselves, and a run whose task no live
worker serves says so in `run start --watch`, `run watch` and `run status` (text and
--json); `worker list` shows the live workers; doctor warns. Following a run again:
`run watch` (whole story, --tail), `run events --follow`, and Ctrl-C that leaves the run
going (exit 130).

One nats-server and one stack (API, engine, a worker serving echo, flaky, gate, stubborn,
polls) for the module; the CLI runs in-process (CliRunner) or, where a signal or a
follower that never ends is needed, as a subprocess.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import pytest
from click.testing import CliRunner, Result

from dagnats import jetstream, names, worker
from dagnats.cli.main import cli
from dagnats.dag.state import RunStatus
from dagnats.limits import PRESENCE_TTL_S
from dagnats.server.doctor_presence import check_presence
from dagnats.store import presence
from tests.integration.failures_harness import FAST_RETRY, Behaviour, Stack, make_worker

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 20.0
#: The issue's 10 s, with room for a loaded machine (the notice comes after UNSERVED_AFTER_S).
NOTICE_DEADLINE_S = 15.0
UNSERVED = "no worker is serving task 'nobody-serves'"
LONELY = {"name": "lonely", "version": "1", "steps": [
    {"id": "pack", "task": "nobody-serves"}, {"id": "ship", "task": "echo",
                                              "depends_on": ["pack"]}]}
SERVED = {"name": "served", "version": "1", "steps": [{"id": "say", "task": "echo"}]}
GATED = {"name": "gated", "version": "1", "steps": [{"id": "wait", "task": "gate"}]}


FLAKY = {"name": "flakyrun", "version": "1", "steps": [
    {"id": "f", "task": "flaky", "retry": FAST_RETRY}]}


@pytest.fixture(scope="module")
def stack(nats_server: Any, behaviour: Behaviour) -> Iterator[Stack]:
    running = Stack(nats_server.url, make_worker(nats_server.url, behaviour))
    for definition in (LONELY, SERVED, GATED, FLAKY):
        running.client.register_workflow(definition)
    try:
        yield running
    finally:
        running.close()


def cli_in(stack: Stack, *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env={"DAGNATS_NATS_URL": stack.url},
                              catch_exceptions=False)


class Follower:
    """A CLI command in a subprocess whose output lines are collected as they come."""

    def __init__(self, stack: Stack, *args: str) -> None:
        env = {**os.environ, "DAGNATS_NATS_URL": stack.url}
        self.proc = subprocess.Popen([sys.executable, "-m", "dagnats", *args], cwd=ROOT,
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.out: list[str] = []
        self.err: list[str] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        for stream, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._collect, args=(stream, lines), daemon=True).start()

    @staticmethod
    def _collect(stream: IO[str], lines: list[str]) -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))

    def line_with(self, text: str, deadline_s: float = DEADLINE_S) -> str:
        give_up = time.monotonic() + deadline_s
        while True:
            found = [line for line in self.out if text in line]
            if found:
                return found[0]
            assert self.proc.poll() is None, (self.out, self.err)
            assert time.monotonic() < give_up, f"no {text!r} in {self.out} {self.err}"
            time.sleep(0.05)

    def interrupt(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout=DEADLINE_S)
        time.sleep(0)  # let the reader threads see the end of the streams
        give_up = time.monotonic() + 5
        while not self.err and time.monotonic() < give_up:
            time.sleep(0.02)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def test_a_run_no_worker_serves_says_so_everywhere_and_ctrl_c_leaves_it_going(
        stack: Stack) -> None:
    started = Follower(stack, "run", "start", "lonely", "1", "--watch")
    watched: Follower | None = None
    try:
        run_id = started.line_with(" started").split()[1]
        watched = Follower(stack, "run", "watch", run_id)
        for follower in (started, watched):  # said after 5 s; the issue promises 10 s
            line = follower.line_with(UNSERVED, deadline_s=NOTICE_DEADLINE_S)
            assert line.startswith("step.pack: queued "), line
            assert line.endswith("(start one with: dagnats worker run FILE)"), line

        status = cli_in(stack, "run", "status", run_id)
        assert status.exit_code == 0, status.output
        pack = next(line for line in status.stdout.splitlines() if line.startswith("pack: "))
        assert pack.startswith("pack: queued ") and UNSERVED in pack, pack
        as_json = json.loads(cli_in(stack, "run", "status", run_id, "--json").stdout)
        assert as_json["steps"]["pack"]["unserved"] == UNSERVED
        assert as_json["steps"]["pack"]["task"] == "nobody-serves"
        assert "unserved" not in as_json["steps"]["ship"]

        for follower in (started, watched):
            assert follower.interrupt() == 130
            assert follower.err[-1] == (f"Stopped watching; run {run_id} goes on "
                                        f"(dagnats run watch {run_id})"), follower.err
            assert sum(UNSERVED in line for line in follower.out) == 1  # said once
        assert stack.client.get_run(run_id).status is RunStatus.RUNNING  # it goes on
    finally:
        started.close()
        if watched is not None:
            watched.close()
    stack.client.cancel(run_id)


def test_worker_list_shows_live_workers_and_a_stopped_one_goes(stack: Stack) -> None:
    listed = json.loads(cli_in(stack, "worker", "list", "--json").stdout)
    mine = [w for w in listed["workers"] if w["name"] == "failures-worker"]
    assert len(mine) == 1 and {"echo", "flaky", "gate"} <= set(mine[0]["tasks"])
    assert mine[0]["pid"] == os.getpid() and mine[0]["in_flight"] >= 0

    extra = worker.Worker(stack.url, name="extra-worker")
    extra.task("extra-task")(lambda ctx, value: value)
    stop = asyncio.Event()
    running = stack.run(_start(extra, stop))
    stack.until(lambda: "extra-task" in _served(stack), "the extra worker to announce itself")
    text = cli_in(stack, "worker", "list").stdout.splitlines()
    assert text[0].split()[:5] == ["ID", "NAME", "HOST", "PID", "TASKS"]
    assert any("extra-worker" in line and "extra-task" in line for line in text), text

    stack.run(_stop(stop, running))
    stack.until(lambda: "extra-task" not in _served(stack), "the stopped worker to go")
    assert "echo" in _served(stack)


async def _start(w: worker.Worker, stop: asyncio.Event) -> asyncio.Task[None]:
    return asyncio.create_task(w.run_async(stop))


async def _stop(stop: asyncio.Event, running: asyncio.Task[None]) -> None:
    stop.set()
    await asyncio.wait_for(running, DEADLINE_S)


def _served(stack: Stack) -> set[str]:
    return presence.served_tasks(stack.client.workers())


def test_a_worker_heartbeat_expires_by_itself(stack: Stack) -> None:
    """A worker killed with -9 leaves its last heartbeat, which carries its own TTL."""
    worker_id = next(w.id for w in stack.client.workers() if w.name == "failures-worker")
    last = stack.run(stack.js.get_msg(names.PRESENCE_STREAM,
                                      subject=names.presence_subject(worker_id), direct=True))
    assert (last.headers or {}).get("Nats-TTL") == f"{int(PRESENCE_TTL_S)}s"


def test_an_entry_no_heartbeat_renews_expires(stack: Stack) -> None:
    """What a worker killed with -9 leaves: its last heartbeat, gone after its TTL."""
    entry = presence.entry_for("killed0worker", "killed", ["ghost-task"], 0, 1,
                               datetime.now(UTC))
    stack.run(presence.write(stack.js, entry, 1, ttl_s=1))
    assert "ghost-task" in _served(stack)
    stack.until(lambda: "ghost-task" not in _served(stack), "the entry to expire")


def test_doctor_warns_about_a_workflow_no_live_worker_serves(stack: Stack) -> None:
    async def checks() -> list[Any]:
        from dagnats.connection import connect

        nc = await connect(stack.url)
        try:
            return await check_presence(nc)
        finally:
            await nc.close()

    found = {c.name: c for c in stack.run(checks())}
    assert found["workers"].status == "ok" and "echo" in found["workers"].detail
    assert found["workflow lonely"].status == "warn"
    assert "no live worker serves task 'nobody-serves'" in found["workflow lonely"].detail
    assert "workflow served" not in found
    doctor = cli_in(stack, "doctor", "--nats-url", stack.url)
    assert "warn  workflow lonely" in doctor.stdout, doctor.stdout


def test_run_watch_of_a_finished_run_tells_its_story_and_exits_as_watch_does(
        stack: Stack) -> None:
    run_id = stack.client.start("served", "hi")
    stack.client.wait(run_id, timeout=DEADLINE_S)
    watched = cli_in(stack, "run", "watch", run_id)
    assert watched.exit_code == 0, watched.output
    assert watched.stdout.splitlines() == [f"Run {run_id} started", "step.say: completed",
                                           f"Run {run_id} completed"]
    tail = cli_in(stack, "run", "watch", run_id, "--tail")
    assert (tail.exit_code, tail.stdout.splitlines()) == (0, [f"Run {run_id} completed"])
    events = cli_in(stack, "run", "events", run_id, "--follow")
    assert events.exit_code == 0, events.output
    lines = events.stdout.splitlines()
    assert lines[0].split() == ["TIME", "EVENT", "STEP", "ATTEMPT", "DATA"]
    assert "workflow.completed" in lines[-1]
    plain = cli_in(stack, "run", "events", run_id).stdout.splitlines()
    assert plain[0].split() == ["TIME", "EVENT", "STEP", "ATTEMPT", "DATA"]


def test_run_watch_of_a_resumed_run_follows_it_past_its_first_end(
        stack: Stack, behaviour: Behaviour) -> None:
    behaviour.broken.add("flakyrun")
    run_id = stack.client.start("flakyrun", "x")
    assert stack.client.wait(run_id, timeout=DEADLINE_S).status is RunStatus.FAILED
    behaviour.broken.discard("flakyrun")
    stack.client.retry(run_id)
    stack.client.wait(run_id, timeout=DEADLINE_S)
    watched = cli_in(stack, "run", "watch", run_id)
    assert watched.exit_code == 0, watched.output
    lines = watched.stdout.splitlines()
    assert lines[0] == f"Run {run_id} started" and lines[-1] == f"Run {run_id} completed"
    assert f"Run {run_id} resumed" in lines and "step.f: completed" in lines
    assert any(line.startswith(f"Run {run_id} failed: ") for line in lines)


def test_run_events_follow_ends_when_the_run_ends(stack: Stack) -> None:
    run_id = stack.client.start("gated", None)
    stack.until(lambda: stack.client.get_run(run_id).steps["wait"].status.value == "running",
                "the gate to run")
    follower = Follower(stack, "run", "events", run_id, "--follow")
    try:
        assert follower.line_with("TIME").split()[:2] == ["TIME", "EVENT"]
        follower.line_with("step.started")  # the story so far, then it follows
        stack.client.cancel(run_id)
        assert follower.proc.wait(timeout=DEADLINE_S) == 1  # cancelled: as --watch exits
        follower.line_with("workflow.cancelled")
    finally:
        follower.close()


def test_failed_heartbeats_are_logged_once_and_the_worker_works_on(
        stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    """With WORKER_PRESENCE gone (a server no dagnats of this version provisioned), the
    worker goes on running tasks; once the stream is back, it is listed again."""
    caplog.set_level(logging.DEBUG, logger="dagnats.presence")
    stack.run(stack.js.delete_stream(names.PRESENCE_STREAM))
    try:
        stack.until(lambda: any("presence heartbeat failed" in r.getMessage()
                                for r in caplog.records), "a failed heartbeat to be logged")
        run_id = stack.client.start("served", "still")
        assert stack.client.wait(run_id, timeout=DEADLINE_S).status is RunStatus.COMPLETED
        assert stack.client.workers() == []  # nothing to read: no worker is claimed
    finally:
        stack.run(jetstream.provision(stack.js))
    stack.until(lambda: "echo" in _served(stack), "the worker to be listed again")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING
                and "presence heartbeat failed" in r.getMessage()]
    assert len(warnings) == 1  # once per outage, not every heartbeat
