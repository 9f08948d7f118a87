#!/usr/bin/env python3
"""The web console with a large history: page times over HTTP, and live-update latency.

    bench/console.py [--runs 100000] [--requests 50] [--latency-runs 20]

1. A real `bin/dagnats serve --data-dir TMP --nats-port 0 --http-port FREE --worker
   examples/hello-pipeline/worker.py` starts once (it creates the store, its logins and the
   engine's consumers) and stops.
2. With serve stopped, a nats-server of our own runs on that store (serve's logins) and
   --runs synthetic runs are written into it as the growth section of `dagnats bench` does
   (dagnats/bench/growth.py), but each with its own times and workflow: its history events
   (the real envelopes), its snapshot in `workflow_runs`, its run index summary and, for a
   failed run, its step's dead letter: byte for byte what the engine would have stored,
   with the history sequences they really got (so run pages of seeded runs work: a few are
   checked against a fold of their history). Ten workflows w0..w9 (the tutorial's chain,
   renamed); created one second apart, the newest a minute ago; 0.1% running (their greet
   started, no task), 0.5% cancelled, 4% failed, the rest completed. The engine's
   consumers are then moved past the seeded events, as the growth section does.
3. serve starts again. The workflows (w0..w9, hello-pipeline, lat-approval) are registered
   and a real tutorial run is started and completed through the HTTP API. Then each page
   and API call below is timed --requests times (after 3 untimed), sequentially, over one
   keep-alive http.client connection from this machine: the wall time of each request on
   loopback, p50 / p95 / max. Then the first /runs after the `dagnats http` process is
   killed (serve restarts it); then 300 tutorial runs are started at 100 a second, as a
   running system starts them, and the first /runs is timed after the API process is
   killed (it holds the run index and loads it all when it starts; meanwhile the index's
   end answers for the newest runs).
4. Live updates: headless Chromium (Playwright) opens the page of a run waiting on an
   approval step; a MutationObserver on #live records Date.now() when the step's DAG node
   turns `completed`; the step is approved over the API. Latency = that time minus the
   time just before the approve call, and minus the step.completed event's timestamp.
   --latency-runs runs, a new run each.

Everything it starts (serve and its children, the nats-server of step 2, the browser) is
stopped at the end, also on failure; the scratch directory is deleted. No timing is asserted
anywhere. Results: bench/RESULTS.md.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __name__ == "__main__" and os.environ.get("DAGNATS_CONSOLE_ENV") != "1":
    sys.path.insert(0, str(ROOT / "bin"))
    from bootstrap import exec_in_env

    os.environ["DAGNATS_CONSOLE_ENV"] = "1"  # the checkout's venv runs this file again
    exec_in_env("runtime", [str(Path(__file__).resolve()), *sys.argv[1:]])

import argparse  # noqa: E402
import asyncio  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import queue  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import quote  # noqa: E402

import psutil  # noqa: E402
from pydantic import TypeAdapter  # noqa: E402

from dagnats import names  # noqa: E402
from dagnats.connection import connect  # noqa: E402
from dagnats.dag.events import Event, EventType  # noqa: E402
from dagnats.dag.state import RunState, RunStatus, fold  # noqa: E402
from dagnats.dag.validate import parse_definition  # noqa: E402
from dagnats.engine import partitions  # noqa: E402
from dagnats.local_auth import STATE_DIR_ENV, load_logins, url_with_login  # noqa: E402
from dagnats.server.auth import authorization_config  # noqa: E402
from dagnats.server.binary import find_nats_server  # noqa: E402
from dagnats.server.nats_process import NatsServer  # noqa: E402
from dagnats.server.procs import free_port  # noqa: E402
from dagnats.store import history  # noqa: E402
from dagnats.store.dead_letters import DeadLetterEntry  # noqa: E402
from dagnats.store.run_index import summary_of  # noqa: E402

HELLO = ROOT / "examples" / "hello-pipeline"
DAGNATS = ROOT / "bin" / "dagnats"
WORKFLOWS = 10
CHUNK = 500
WARMUP = 3
APPROVAL = {"name": "lat-approval", "version": "1", "steps": [{"id": "review", "type": "approval"}]}
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CHROMIUM = "/usr/bin/chromium"
TEMPLATE_ID = "7e3p1a7e" * 4  # never a real run id: "p" is not hex
SENTINEL_T0 = datetime(2001, 2, 3, 4, 5, 6, 100001, tzinfo=UTC)
SENTINEL_SEQ0 = 900_000_001  # 9 digits, nowhere else in an event or snapshot
STEP_GAP = timedelta(milliseconds=40)
_TIME = TypeAdapter(datetime)


# --- the synthetic runs ---------------------------------------------------------------------

def definition(n: int) -> dict[str, Any]:
    """Workflow w{n}: the tutorial's chain (its worker's tasks), under another name."""
    return {**json.loads((HELLO / "pipeline.json").read_text()), "name": f"w{n}", "version": "1"}


def kind_of(n: int) -> RunStatus:
    """The status of the n-th seeded run: 0.1% running, 0.5% cancelled, 4% failed."""
    if n % 1000 == 7:
        return RunStatus.RUNNING
    if n % 200 == 13:
        return RunStatus.CANCELLED
    if n % 25 == 3:
        return RunStatus.FAILED
    return RunStatus.COMPLETED


def seed_run_id(n: int) -> str:
    return f"5eed{n:028x}"


def stamp(moment: datetime) -> str:
    """A time as every event and snapshot writes it."""
    return str(_TIME.dump_python(moment, mode="json"))


class Template:
    """One workflow's run of one status, for TEMPLATE_ID at sentinel times and sequences:
    its encoded events, snapshot and index summary, which seeding copies with the run id,
    times and sequences replaced (the bytes the engine would have written for that run)."""

    def __init__(self, workflow: int, status: RunStatus) -> None:
        spec = parse_definition(definition(workflow)).to_json_dict()
        events = self._events(spec, status)
        numbered = [e.model_copy(update={"seq": SENTINEL_SEQ0 + k}) for k, e in enumerate(events)]
        state = fold(numbered)
        if state is None or state.status is not status:
            raise RuntimeError(f"the {status.value} template does not fold into a "
                               f"{status.value} run")
        self.count = len(events)
        self.events = [e.encode() for e in events]
        self.snapshot = state.model_dump_json(exclude_defaults=True).encode()
        self.summary = summary_of(state).model_dump_json().encode()
        self.times = [stamp(SENTINEL_T0 + k * STEP_GAP).encode() for k in range(self.count)]
        self.seqs = [str(SENTINEL_SEQ0 + k).encode() for k in range(self.count)]
        for blob in (*self.events, self.snapshot, self.summary):
            if blob.count(TEMPLATE_ID.encode()) < 1:
                raise RuntimeError("a template holds no run id to replace")

    @staticmethod
    def _events(spec: dict[str, Any], status: RunStatus) -> list[Event]:
        at = iter(SENTINEL_T0 + k * STEP_GAP for k in range(100))

        def event(kind: EventType, step: str | None = None, **data: Any) -> Event:
            return Event(type=kind, run_id=TEMPLATE_ID, step_id=step, attempt=1 if step else 0,
                         timestamp=next(at), data=data)

        found = [event(EventType.WORKFLOW_STARTED, workflow=spec["name"],
                       version=spec["version"], input="seed", definition=spec)]
        value: Any = "seed"
        chain = (("greet", lambda v: f"Hello, {v}!"), ("uppercase", str.upper),
                 ("reverse", lambda v: v[::-1]))
        for n, (step, fn) in enumerate(chain):
            found += [event(EventType.STEP_QUEUED, step, task=step, input=value, delay_s=0.0,
                            not_before=None),
                      event(EventType.STEP_STARTED, step, delivery=1, worker="seed")]
            if status is RunStatus.RUNNING:
                return found
            if status is RunStatus.CANCELLED:
                return [*found, event(EventType.WORKFLOW_CANCELLED, reason="cancelled by seed")]
            if status is RunStatus.FAILED and n == 1:
                error = "ValueError: bad row 17"
                return [*found,
                        event(EventType.STEP_FAILED, step, error=error, error_type="ValueError",
                              retryable=False, max_attempts=1),
                        event(EventType.WORKFLOW_FAILED, step_id=step,
                              error=f"step {step} failed: {error}")]
            output = fn(value)
            found.append(event(EventType.STEP_COMPLETED, step, output=output))
            value = output
        return [*found, event(EventType.WORKFLOW_COMPLETED, output=value)]

    def run(self, run_id: str, created: datetime, first_seq: int
            ) -> tuple[list[bytes], bytes, bytes]:
        """This template's events, snapshot and summary for one run."""
        raw_id = run_id.encode()
        times = [stamp(created + k * STEP_GAP).encode() for k in range(self.count)]
        seqs = [str(first_seq + k).encode() for k in range(self.count)]

        def fill(blob: bytes, upto: int) -> bytes:
            blob = blob.replace(TEMPLATE_ID.encode(), raw_id)
            for k in range(upto):
                blob = blob.replace(self.times[k], times[k]).replace(self.seqs[k], seqs[k])
            return blob

        events = [data.replace(TEMPLATE_ID.encode(), raw_id).replace(self.times[k], times[k])
                  for k, data in enumerate(self.events)]
        return events, fill(self.snapshot, self.count), fill(self.summary, self.count)


def dead_letter(run_id: str, workflow: int, created: datetime) -> bytes:
    """The dead letter the engine writes when a failed run's step failed for good."""
    entry = DeadLetterEntry(run_id=run_id, workflow=f"w{workflow}", version="1",
                            step_id="uppercase", task="uppercase", attempts=1,
                            input="Hello, seed!", error="ValueError: bad row 17",
                            error_type="ValueError", timestamp=created + 7 * STEP_GAP)
    body = entry.model_dump(mode="json", exclude={"seq"})
    body["v"] = 1
    return json.dumps(body, separators=(",", ":")).encode()


async def publish_letters(nc: Any, js: Any, letters: list[tuple[str, bytes]]) -> None:
    """Dead letters as core messages, the last an acked publish (all before it are stored)."""
    for at, (run_id, letter) in enumerate(letters):
        subject = names.dead_subject("uppercase", run_id, "uppercase")
        headers = {"Nats-Msg-Id": names.dead_letter_msg_id(run_id, "uppercase", 1)}
        if at < len(letters) - 1:
            await nc.publish(subject, letter, headers=headers)
        else:
            await js.publish(subject, letter, headers=headers)


async def seed(data_dir: Path, runs: int) -> dict[str, Any]:
    """Write `runs` runs into serve's store (serve stopped) with a nats-server of our own;
    check a sample against a fold of its history; move the engine's consumers past them."""
    logins = load_logins(data_dir)
    if logins is None:
        raise RuntimeError(f"serve left no logins in {data_dir}")
    server = NatsServer(find_nats_server(), data_dir / "store", data_dir / "logs" / "seed.log",
                        port=0, authorization=authorization_config(logins))
    await server.start()
    try:
        nc = await connect(url_with_login(server.url, logins["admin"]))
        try:
            return await _seed(nc, runs)
        finally:
            await nc.drain()
    finally:
        await server.stop()


async def _seed(nc: Any, runs: int) -> dict[str, Any]:
    js = nc.jetstream()
    templates = {(w, s): Template(w, s) for w in range(WORKFLOWS) for s in RunStatus
                 if s in (RunStatus.RUNNING, RunStatus.CANCELLED, RunStatus.FAILED,
                          RunStatus.COMPLETED)}
    streams = (names.HISTORY_STREAM, names.kv_stream(names.RUNS_BUCKET), names.INDEX_STREAM)
    before = {s: (await js.stream_info(s)).state for s in streams}
    next_seq = before[names.HISTORY_STREAM].last_seq + 1
    newest = datetime.now(UTC) - timedelta(minutes=1)
    oldest = newest - timedelta(seconds=runs - 1)
    snapshots: dict[str, bytes] = {}
    sample = set(random.Random(14).sample(range(runs), min(5, runs)))
    events_total = 0
    letters: list[tuple[str, bytes]] = []
    t0 = time.perf_counter()
    for first in range(0, runs, CHUNK):
        last = min(first + CHUNK, runs)
        for n in range(first, last):
            run_id = seed_run_id(n)
            template = templates[(n % WORKFLOWS, kind_of(n))]
            events, snapshot, summary = template.run(run_id, oldest + timedelta(seconds=n),
                                                     next_seq)
            next_seq += len(events)
            events_total += len(events)
            if n in sample:
                snapshots[run_id] = snapshot
            subject = names.history_subject(run_id)
            for k, data in enumerate(events):
                if n == last - 1 and k == len(events) - 1:
                    break
                await nc.publish(subject, data)
            kv_subject = names.kv_subject(names.RUNS_BUCKET, names.run_key(run_id))
            index_subject = names.run_index_subject(run_id)
            headers = {"Nats-Msg-Id": names.run_index_msg_id(run_id, next_seq - 1)}
            if kind_of(n) is RunStatus.FAILED:  # its step failed for good: a dead letter
                letters.append((run_id, dead_letter(run_id, n % WORKFLOWS,
                                                    oldest + timedelta(seconds=n))))
            if n < last - 1:
                await nc.publish(kv_subject, snapshot)
                await nc.publish(index_subject, summary, headers=headers)
            else:  # acked publishes close the chunk: all before them on each stream is stored
                await asyncio.gather(js.publish(subject, events[-1]),
                                     js.publish(kv_subject, snapshot),
                                     js.publish(index_subject, summary, headers=headers))
    dead_before = (await js.stream_info(names.DEAD_STREAM)).state.messages
    await publish_letters(nc, js, letters)
    seconds = time.perf_counter() - t0
    after = {s: (await js.stream_info(s)).state for s in streams}
    added = {s: after[s].messages - before[s].messages for s in streams}
    expected = {names.HISTORY_STREAM: events_total, streams[1]: runs, names.INDEX_STREAM: runs}
    if added != expected or after[names.HISTORY_STREAM].last_seq != next_seq - 1:
        raise RuntimeError(f"seeding stored {added}, expected {expected} (history last seq "
                           f"{after[names.HISTORY_STREAM].last_seq}, expected {next_seq - 1})")
    for run_id, snapshot in snapshots.items():  # the snapshot is what folding the history gives
        folded = fold(await history.read(js, run_id))
        stored = RunState.model_validate_json(snapshot)
        if folded is None or folded != stored:
            raise RuntimeError(f"seeded run {run_id}: its snapshot is not the fold of its "
                               "history")
    dead = (await js.stream_info(names.DEAD_STREAM)).state.messages
    if dead - dead_before != len(letters):
        raise RuntimeError(f"seeding stored {dead - dead_before} dead letters, expected "
                           f"{len(letters)}")
    await partitions.start_consumers_at(js, after[names.HISTORY_STREAM].last_seq + 1)
    return {"runs": runs, "events": events_total, "dead_letters": len(letters),
            "seconds": round(seconds, 1)}


# --- serve, HTTP ----------------------------------------------------------------------------

class Serve:
    """`bin/dagnats serve` on the scratch data dir, its output read by a thread."""

    def __init__(self, data_dir: Path, http_port: int, env: dict[str, str]) -> None:
        argv = [str(DAGNATS), "serve", "--data-dir", str(data_dir), "--nats-port", "0",
                "--http-port", str(http_port), "--worker", str(HELLO / "worker.py")]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=env, cwd=ROOT)
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self.output.append(line)
            if "Press Ctrl-C" in line:
                return
        raise RuntimeError("serve did not become ready; it printed:\n" + "\n".join(self.output))

    def child(self, marker: list[str]) -> psutil.Process:
        """The supervised process whose argv holds `marker` in order."""
        for proc in psutil.Process(self.proc.pid).children(recursive=True):
            try:
                argv = proc.cmdline()
            except psutil.NoSuchProcess:
                continue
            if any(argv[i:i + len(marker)] == marker for i in range(len(argv))):
                return proc
        raise RuntimeError(f"serve has no child running {' '.join(marker)}")

    def stop(self) -> None:
        """SIGTERM serve and wait; kill it and what is left of its children otherwise."""
        if self.proc.poll() is not None:
            return
        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for proc in children:
            if proc.is_running():
                proc.kill()


class Http:
    """One keep-alive connection to the console."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        data = json.dumps(body).encode() if body is not None else None
        try:
            self.conn.request(method, path, body=data, headers=headers)
            reply = self.conn.getresponse()
        except (OSError, http.client.HTTPException):
            self.conn.close()  # the server closed the kept-alive connection: once more
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            self.conn.request(method, path, body=data, headers=headers)
            reply = self.conn.getresponse()
        return reply.status, reply.read()

    def json(self, method: str, path: str, body: Any = None, want: int = 200) -> Any:
        status, data = self.call(method, path, body)
        if status != want:
            raise RuntimeError(f"{method} {path}: {status} {data[:300]!r}")
        return json.loads(data) if data else None

    def timed(self, path: str) -> tuple[float, int, int]:
        """One GET: milliseconds, status, bytes."""
        t0 = time.perf_counter()
        status, data = self.call("GET", path)
        return (time.perf_counter() - t0) * 1000, status, len(data)

    def close(self) -> None:
        self.conn.close()


def wait_until(check: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            found = check()
        except (OSError, http.client.HTTPException, RuntimeError):
            found = None
        if found:
            return found
        time.sleep(0.02)
    raise RuntimeError(f"timed out waiting for {what}")


def q(values: list[float], fraction: float) -> float:
    """The `fraction`-quantile of `values`."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(fraction * 100) - 1]


def figures(values: list[float]) -> dict[str, float]:
    return {"p50": round(q(values, 0.5), 1), "p95": round(q(values, 0.95), 1),
            "max": round(max(values), 1)}


# --- the measurements -----------------------------------------------------------------------

def setup(client: Http, runs: int) -> dict[str, str]:
    """Register the workflows, complete a tutorial run; the ids and cursor the pages need."""
    for definition_ in [json.loads((HELLO / "pipeline.json").read_text()), APPROVAL,
                        *(definition(n) for n in range(WORKFLOWS))]:
        client.json("POST", "/api/v1/workflows", definition_, want=201)
    wait_until(lambda: client.json("GET", "/api/v1/workers"), 60, "the tutorial's worker")
    run_id = client.json("POST", "/api/v1/runs", {"workflow": "hello-pipeline",
                                                  "input": "console"}, want=201)["run_id"]
    wait_until(lambda: client.json("GET", f"/api/v1/runs/{run_id}")["status"] == "completed",
               60, "the tutorial run to complete")
    total = client.json("GET", "/api/v1/run-counts")["total"]
    if total != runs + 1:
        raise RuntimeError(f"the index counts {total} runs, expected {runs + 1}")
    seeded = seed_run_id(runs // 2 + 2)  # a completed one (kind_of)
    shown = client.json("GET", f"/api/v1/runs/{seeded}")
    if shown["status"] != kind_of(runs // 2 + 2).value or shown["output"] != "!DEES ,OLLEH":
        raise RuntimeError(f"seeded run {seeded} reads back as {shown['status']}")
    deep = max(0, runs // 100 - 1)  # a run near the end: the 99%-th newest
    return {"tutorial": run_id, "seeded": seeded, "deep": seed_run_id(deep)}


def deep_cursor(client: Http, run_id: str) -> str:
    """The cursor that lists the runs after `run_id` (from the API's own rows)."""
    shown = client.json("GET", f"/api/v1/runs/{run_id}")
    micros = int(datetime.fromisoformat(shown["created_at"]).timestamp() * 1_000_000)
    return f"{micros}.{run_id}"


def time_pages(client: Http, ids: dict[str, str], requests: int) -> list[dict[str, Any]]:
    cursor = deep_cursor(client, ids["deep"])
    cases = [
        ("/ (overview)", "/"),
        ("/runs", "/runs"),
        ("/runs?status=failed", "/runs?status=failed"),
        ("/runs?workflow=w3&since=24h", "/runs?workflow=w3&since=24h"),
        ("/runs?cursor=… (99% deep)", f"/runs?cursor={quote(cursor)}"),
        ("/runs?part=live (the 1.5 s poll)", "/runs?part=live"),
        ("/workflows", "/workflows"),
        ("/workflows/w3", "/workflows/w3"),
        ("/runs/<tutorial run>", f"/runs/{ids['tutorial']}"),
        ("/runs/<tutorial run>?part=live", f"/runs/{ids['tutorial']}?part=live"),
        ("/runs/<seeded run>", f"/runs/{ids['seeded']}"),
        ("/dead-letters", "/dead-letters"),
        ("/workers", "/workers"),
        ("/api/v1/runs?limit=50", "/api/v1/runs?limit=50"),
        ("/api/v1/run-counts", "/api/v1/run-counts"),
        ("/api/v1/runs/<id>", f"/api/v1/runs/{ids['tutorial']}"),
    ]
    found = []
    for label, path in cases:
        for _ in range(WARMUP):
            client.timed(path)
        took, sizes = [], set()
        for _ in range(requests):
            ms, status, size = client.timed(path)
            if status != 200:
                raise RuntimeError(f"GET {path}: {status}")
            took.append(ms)
            sizes.add(size)
        row = {"case": label, "path": path, "requests": requests,
               "bytes": max(sizes), **figures(took)}
        print(f"  {label:<40} p50 {row['p50']:>7} ms  p95 {row['p95']:>7} ms  "
              f"max {row['max']:>7} ms  {row['bytes']:>7} B", flush=True)
        found.append(row)
    return found


def restart_timing(serve: Serve, port: int, marker: list[str], ready: Any) -> dict[str, float]:
    """Kill the child running `marker` (serve restarts it); once `ready` says it is back,
    time the first ten GET /runs."""
    old = serve.child(marker)
    killed_at = time.perf_counter()
    old.kill()
    old.wait(10)
    probe = Http(port)
    try:
        wait_until(lambda: ready(probe), 60, f"{' '.join(marker)} to come back")
        back_s = time.perf_counter() - killed_at
        series = []
        for _ in range(10):
            took, status, _ = probe.timed("/runs")
            if status != 200:
                raise RuntimeError(f"/runs answered {status} after the restart")
            series.append(round(took, 1))
    finally:
        probe.close()
    return {"back_after_s": round(back_s, 2), "first_ms": series[0],
            "second_ms": series[1], "first_ten_ms": series}


def start_live_runs(client: Http, count: int = 300, rate: float = 100.0) -> None:
    """Start `count` tutorial runs at `rate` a second (as a running system would) and wait
    until the last one has completed."""
    run_id = ""
    for _ in range(count):
        run_id = client.json("POST", "/api/v1/runs", {"workflow": "hello-pipeline",
                                                      "input": "live"}, want=201)["run_id"]
        time.sleep(1 / rate)
    wait_until(lambda: client.json("GET", f"/api/v1/runs/{run_id}")["status"] == "completed",
               120, "the live runs to complete")


def http_up(probe: Http) -> bool:
    return probe.call("GET", "/healthz")[0] == 200


def api_up(probe: Http) -> bool:
    _, data = probe.call("GET", "/readyz")
    return bool(json.loads(data)["components"]["api"]["up"]) if data else False


OBSERVE = """(done) => {
  window.__doneAt = undefined;
  const live = document.getElementById("live");
  const check = () => {
    const node = live.querySelector('g.dag-node[data-step="review"]');
    if (window.__doneAt === undefined && node && node.dataset.status === "completed") {
      window.__doneAt = Date.now();
      observer.disconnect();
    }
  };
  const observer = new MutationObserver(check);
  observer.observe(live, {subtree: true, childList: true, attributes: true,
                          attributeFilter: ["data-status"]});
  check();
  return window.__doneAt === undefined;
}"""

SSE_OPEN = """(() => {
  const Native = window.EventSource;
  window.__sseOpen = false;
  window.EventSource = class extends Native {
    constructor(url, init) {
      super(url, init);
      this.addEventListener("open", () => { window.__sseOpen = true; });
    }
  };
})();"""


def live_latency(client: Http, port: int, runs: int) -> dict[str, Any]:
    """The approval run's page, approved over the API: when its DAG node turns completed."""
    from playwright.sync_api import sync_playwright

    from_call, from_event, call_ms, event_lag = [], [], [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=LAUNCH_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1366, "height": 850})
            context.add_init_script(SSE_OPEN)
            page = context.new_page()
            page.set_default_timeout(15_000)
            for _ in range(runs):
                run_id = client.json("POST", "/api/v1/runs", {"workflow": "lat-approval"},
                                     want=201)["run_id"]
                wait_until(lambda rid=run_id: client.json("GET", f"/api/v1/runs/{rid}")
                           ["steps"]["review"]["status"] == "waiting", 30, "the approval wait")
                page.goto(f"http://127.0.0.1:{port}/runs/{run_id}")
                page.wait_for_function("window.__sseOpen === true")
                if not page.evaluate(OBSERVE):
                    raise RuntimeError("the step showed completed before it was approved")
                called = time.time()
                client.json("POST", f"/api/v1/runs/{run_id}/steps/review/approve",
                            {"by": "bench"})
                returned = time.time()
                page.wait_for_function("window.__doneAt !== undefined")
                shown = page.evaluate("window.__doneAt") / 1000
                events = client.json("GET", f"/api/v1/runs/{run_id}/events")["events"]
                done = next(e for e in events if e["type"] == "step.completed"
                            and e["step_id"] == "review")
                event_at = datetime.fromisoformat(done["timestamp"]).timestamp()
                from_call.append((shown - called) * 1000)
                from_event.append((shown - event_at) * 1000)
                call_ms.append((returned - called) * 1000)
                event_lag.append((event_at - called) * 1000)
        finally:
            browser.close()
    return {"runs": runs, "dom_minus_call": figures(from_call),
            "dom_minus_event": figures(from_event), "approve_call": figures(call_ms),
            "event_minus_call": figures(event_lag)}


def busy_pct(before: Any, after: Any) -> float:
    """How busy all CPUs were between two psutil.cpu_times() (every process, ours too)."""
    idle = (after.idle + getattr(after, "iowait", 0)) - (before.idle + getattr(before, "iowait", 0))
    total = sum(after) - sum(before)
    return round(100 * (1 - idle / total), 1) if total else 0.0


def rss_mb(serve: Serve, marker: list[str]) -> float:
    return round(serve.child(marker).memory_info().rss / 1e6, 1)


def main(runs: int, requests: int, latency_runs: int) -> dict[str, Any]:
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="dagnats-console-"))
    data_dir = tmp / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGNATS_NATS_")}
    env[STATE_DIR_ENV] = str(tmp / "state")  # serve registers itself here, not in ~
    os.environ[STATE_DIR_ENV] = env[STATE_DIR_ENV]
    port = free_port()
    serve: Serve | None = None
    client: Http | None = None
    report: dict[str, Any] = {"runs": runs, "requests": requests, "cpus": os.cpu_count()}
    try:
        serve = Serve(data_dir, port, env)
        serve.wait_ready()
        serve.stop()
        print(f"seeding {runs:,} runs into serve's store...", flush=True)
        report["seed"] = asyncio.run(seed(data_dir, runs))
        print(f"  {report['seed']}", flush=True)
        serve = Serve(data_dir, port, env)
        serve.wait_ready()
        client = Http(port)
        ids = setup(client, runs)
        print(f"pages, {requests} requests each (after {WARMUP} untimed):", flush=True)
        busy_before = psutil.cpu_times()
        report["pages"] = time_pages(client, ids, requests)
        report["machine_busy_pct_during_pages"] = busy_pct(busy_before, psutil.cpu_times())
        report["loadavg_1m_after_pages"] = round(os.getloadavg()[0], 2)
        report["rss_mb"] = {"http": rss_mb(serve, ["dagnats", "http"]),
                            "api": rss_mb(serve, ["_component", "api"])}
        report["http_restart"] = restart_timing(serve, port, ["dagnats", "http"], http_up)
        print(f"  first /runs after the http process restarted: {report['http_restart']}",
              flush=True)
        start_live_runs(client)
        report["api_restart"] = restart_timing(serve, port, ["_component", "api"], api_up)
        print(f"  first /runs after the API process restarted: {report['api_restart']}",
              flush=True)
        client.close()
        client = Http(port)
        print(f"live updates, {latency_runs} approvals...", flush=True)
        report["live"] = live_latency(client, port, latency_runs)
        print(f"  {report['live']}", flush=True)
    finally:
        if client is not None:
            client.close()
        if serve is not None:
            serve.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    report["total_s"] = round(time.perf_counter() - started, 1)
    return report


def table(report: dict[str, Any]) -> str:
    lines = ["| request | p50 ms | p95 ms | max ms | bytes |", "|---|---:|---:|---:|---:|"]
    lines += [f"| `{r['case']}` | {r['p50']} | {r['p95']} | {r['max']} | {r['bytes']:,} |"
              for r in report["pages"]]
    for key, what in (("http_restart", "http process"), ("api_restart", "API process")):
        cold = report[key]
        lines.append(f"| first `/runs` after the {what} restarted (back after "
                     f"{cold['back_after_s']} s) | {cold['first_ms']} | (next: "
                     f"{cold['second_ms']}) | | |")
    live = report["live"]
    lines += ["", "| live update (approve → DAG node completed) | p50 ms | p95 ms | max ms |",
              "|---|---:|---:|---:|"]
    for key, what in (("dom_minus_call", "DOM - time before the approve call"),
                      ("dom_minus_event", "DOM - step.completed event timestamp"),
                      ("event_minus_call", "event timestamp - time before the call"),
                      ("approve_call", "the approve call itself")):
        lines.append(f"| {what} | {live[key]['p50']} | {live[key]['p95']} | "
                     f"{live[key]['max']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000,
                        help="runs seeded into the history (default 100000)")
    parser.add_argument("--requests", type=int, default=50,
                        help="timed requests per page (default 50)")
    parser.add_argument("--latency-runs", type=int, default=20,
                        help="approvals timed in the browser (default 20)")
    args = parser.parse_args()
    result = main(args.runs, args.requests, args.latency_runs)
    print(table(result))
    print(json.dumps(result))
