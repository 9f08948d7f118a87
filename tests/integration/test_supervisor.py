"""The supervisor with real processes: readiness, restarts with backoff, clean stops, the lock."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import nats
import psutil
import pytest

from dagnats.errors import AlreadyRunning
from dagnats.server.binary import find_nats_server
from dagnats.server.child import ChildSpec
from dagnats.server.lock import DataDirLock
from dagnats.server.nats_process import NatsServer
from dagnats.server.ready import READY_FD_ENV, notify_ready, ready_env, ready_pipe, wait_ready
from dagnats.server.supervisor import RestartPolicy, Supervisor

# Child programs, run as `python -c CODE <pids file>`: each appends its pid to the file.
READY = """
import os, sys, time
from dagnats.server.ready import notify_ready
with open(sys.argv[1], "a") as f:
    f.write(f"{os.getpid()}\\n")
notify_ready()
while True:
    time.sleep(60)
"""
EXITS_EARLY = "import sys; sys.exit(3)"
NEVER_READY = "import time; time.sleep(60)"


def ready_then_exit(up_s: float) -> str:
    """A child that reports ready, stays up `up_s`, then exits with code 1."""
    return READY.replace("while True:\n    time.sleep(60)", f"time.sleep({up_s}); sys.exit(1)")



STUBBORN = READY.replace("import os, sys, time", "import os, signal, sys, time\n"
                         "signal.signal(signal.SIGTERM, signal.SIG_IGN)")
WITH_GRANDCHILD = READY.replace(
    "notify_ready()",
    "import subprocess\n"
    "g = subprocess.Popen(['sleep', '300'])\n"
    "with open(sys.argv[1], 'a') as f:\n    f.write(f'{g.pid}\\n')\n"
    "notify_ready()",
)

# A supervisor in its own process: nats-server plus the children given as JSON.
SUPERVISOR = """
import asyncio, json, os, sys
from pathlib import Path
from dagnats.server.binary import find_nats_server
from dagnats.server.child import ChildSpec
from dagnats.server.nats_process import NatsServer
from dagnats.server.supervisor import Supervisor

work, children, stop_timeout_s = Path(sys.argv[1]), json.loads(sys.argv[2]), float(sys.argv[3])

async def main() -> int:
    server = NatsServer(find_nats_server(), work / "store", work / "nats.log", port=0)
    sup = Supervisor(nats=server, stop_timeout_s=stop_timeout_s)
    specs = [
        ChildSpec(name, [sys.executable, "-c", code, str(work / f"{name}.pids")], None,
                  work / f"{name}.log")
        for name, code in children
    ]
    def started(failed):
        pids = {"nats": server.pid, **{c.name: c.pid for c in sup.children}}
        (work / "started.tmp").write_text(json.dumps({"pids": pids, "failed": failed}))
        os.replace(work / "started.tmp", work / "started.json")
    return await sup.run(specs, started)

sys.exit(asyncio.run(main()))
"""

FAST = RestartPolicy(initial_delay_s=0.1, max_delay_s=0.4, reset_after_s=60.0)


def spec(tmp_path: Path, name: str, code: str = READY) -> ChildSpec:
    return ChildSpec(
        name, [sys.executable, "-c", code, str(tmp_path / f"{name}.pids")], None,
        tmp_path / f"{name}.log",
    )


def pids_in(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_for(predicate: Callable[[], bool], what: str, timeout_s: float = 5.0) -> None:
    """Poll a condition until it holds; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout_s}s waiting for {what}"
        time.sleep(0.02)


async def until(predicate: Callable[[], bool], what: str, timeout_s: float = 5.0) -> None:
    """`wait_for` for async tests."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout_s}s waiting for {what}"
        await asyncio.sleep(0.02)


def restart_delays(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    return [
        r.getMessage().split("restarting in ")[1].split("s ")[0]
        for r in caplog.records if r.getMessage().startswith(f"{name} ")
    ]


def test_children_report_ready_and_stop(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[str], list[int]]:
        sup = Supervisor(policy=FAST)
        failed = await sup.start([spec(tmp_path, "a"), spec(tmp_path, "b")])
        pids = [child.pid or 0 for child in sup.children]
        await sup.shutdown()
        return failed, pids

    failed, pids = asyncio.run(scenario())
    assert failed == []
    assert pids == pids_in(tmp_path / "a.pids") + pids_in(tmp_path / "b.pids")
    assert not any(alive(pid) for pid in pids)
    assert "dagnats: starting a" in (tmp_path / "a.log").read_text()


def test_a_child_that_is_not_ready_counts_as_a_crash(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> list[str]:
        sup = Supervisor(policy=FAST, ready_timeout_s=0.5)
        try:
            specs = [spec(tmp_path, "early", EXITS_EARLY), spec(tmp_path, "silent", NEVER_READY)]
            failed = await sup.start(specs)
            await until(lambda: len(sup.restarts) == 2, "both to be restarted")
            return failed
        finally:
            await sup.shutdown()

    caplog.set_level(logging.WARNING, "dagnats.serve")
    assert asyncio.run(scenario()) == ["early", "silent"]
    messages = [r.getMessage() for r in caplog.records]
    assert (
        f"early exited with code 3 before reporting ready; see {tmp_path / 'early.log'}; "
        "restarting in 0.1s (restart 1)"
    ) in messages
    assert any(m.startswith("silent did not report ready within 0.5s") for m in messages)


def test_a_killed_child_is_restarted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pids_file = tmp_path / "victim.pids"

    async def scenario() -> dict[str, int]:
        sup = Supervisor(policy=FAST)
        await sup.start([spec(tmp_path, "victim")])
        try:
            os.kill(pids_in(pids_file)[0], signal.SIGKILL)
            await until(lambda: len(pids_in(pids_file)) == 2, "a second victim pid")
            return sup.restarts
        finally:
            await sup.shutdown()

    caplog.set_level(logging.WARNING, "dagnats.serve")
    assert asyncio.run(scenario()) == {"victim": 1}
    assert "victim exited with code -9; restarting in 0.1s (restart 1)" in caplog.messages
    assert not any(alive(pid) for pid in pids_in(pids_file))


def test_backoff_doubles_up_to_the_cap(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        sup = Supervisor(policy=FAST)
        await sup.start([spec(tmp_path, "flaky", ready_then_exit(0))])
        try:
            await until(lambda: sup.restarts.get("flaky", 0) >= 4, "four restarts")
        finally:
            await sup.shutdown()

    caplog.set_level(logging.WARNING, "dagnats.serve")
    asyncio.run(scenario())
    assert restart_delays(caplog, "flaky")[:4] == ["0.1", "0.2", "0.4", "0.4"]


def test_backoff_resets_after_a_long_enough_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        policy = RestartPolicy(initial_delay_s=0.1, max_delay_s=0.4, reset_after_s=0.2)
        sup = Supervisor(policy=policy)
        await sup.start([spec(tmp_path, "steady", ready_then_exit(0.3))])
        try:
            await until(lambda: sup.restarts.get("steady", 0) >= 3, "three restarts")
        finally:
            await sup.shutdown()

    caplog.set_level(logging.WARNING, "dagnats.serve")
    asyncio.run(scenario())
    assert restart_delays(caplog, "steady")[:3] == ["0.1", "0.1", "0.1"]


def test_a_crashed_nats_server_is_restarted_on_the_same_store(tmp_path: Path) -> None:
    async def stored(url: str) -> int:
        nc = await nats.connect(url)
        try:
            return (await nc.jetstream().stream_info("SUP")).state.messages
        finally:
            await nc.close()

    async def scenario() -> int:
        server = NatsServer(find_nats_server(), tmp_path / "store", tmp_path / "nats.log", port=0)
        sup = Supervisor(nats=server, policy=FAST)
        await sup.start([])
        try:
            nc = await nats.connect(server.url)
            await nc.jetstream().add_stream(name="SUP", subjects=["sup.>"])
            await nc.jetstream().publish("sup.x", b"1")
            await nc.close()
            first = server.pid
            os.kill(first or 0, signal.SIGKILL)
            await until(lambda: server.running and server.pid != first, "a new nats-server")
            return await stored(server.url)
        finally:
            await sup.shutdown()

    assert asyncio.run(scenario()) == 1


def run_supervisor(tmp_path: Path, children: list[tuple[str, str]], stop_timeout_s: float):
    """Start the supervisor script; return it and the pids it reported once started."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR, str(tmp_path), json.dumps(children),
         str(stop_timeout_s)],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "supervisor.err").open("wb"),
    )
    started = tmp_path / "started.json"
    wait_for(lambda: started.exists() or proc.poll() is not None, "the supervisor to start")
    assert proc.poll() is None, (tmp_path / "supervisor.err").read_text()
    report = json.loads(started.read_text())
    assert report["failed"] == []
    return proc, report["pids"]


def test_sigterm_stops_everything_within_10s(tmp_path: Path) -> None:
    children = [("stubborn", STUBBORN), ("parent", WITH_GRANDCHILD), ("plain", READY)]
    proc, pids = run_supervisor(tmp_path, children, stop_timeout_s=1.0)
    grandchild = pids_in(tmp_path / "parent.pids")[1]
    everyone = [*pids.values(), grandchild]
    assert all(alive(pid) for pid in everyone)

    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    assert time.monotonic() - began < 10
    assert [pid for pid in everyone if alive(pid)] == []


def test_children_die_with_a_killed_supervisor(tmp_path: Path) -> None:
    proc, pids = run_supervisor(tmp_path, [("orphan", READY)], stop_timeout_s=1.0)
    proc.kill()
    proc.wait(timeout=5)
    wait_for(lambda: not any(alive(pid) for pid in pids.values()), "children to die with it")


def test_wait_ready_is_false_when_the_child_exits_silently() -> None:
    read_fd, write_fd = ready_pipe()
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.exit(0)"],
        pass_fds=(write_fd,), env=ready_env(write_fd),
    )
    os.close(write_fd)
    began = time.monotonic()
    assert asyncio.run(wait_ready(read_fd, proc, timeout_s=10)) is False
    assert time.monotonic() - began < 5  # noticed the exit, did not sit out the timeout


def test_wait_ready_is_true_when_the_child_reports() -> None:
    read_fd, write_fd = ready_pipe()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from dagnats.server.ready import notify_ready; notify_ready()"],
        pass_fds=(write_fd,), env=ready_env(write_fd),
    )
    os.close(write_fd)
    assert asyncio.run(wait_ready(read_fd, proc, timeout_s=10)) is True
    assert proc.wait(timeout=5) == 0


def test_notify_ready_without_a_supervisor_does_nothing() -> None:
    assert READY_FD_ENV not in os.environ
    notify_ready()


def test_lock_refuses_a_second_holder(tmp_path: Path) -> None:
    with DataDirLock(tmp_path):
        with pytest.raises(AlreadyRunning) as info:
            DataDirLock(tmp_path).acquire()
    assert info.value.message == (
        f"another `dagnats serve` (pid {os.getpid()}) is using data dir {tmp_path}; "
        "stop it first or pass --data-dir"
    )
    with DataDirLock(tmp_path) as again:
        assert again.held


def test_lock_of_a_killed_holder_is_free(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from dagnats.server.lock import DataDirLock;"
         "DataDirLock(Path(sys.argv[1])).acquire(); print('locked', flush=True); time.sleep(60)",
         str(tmp_path)],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
        with pytest.raises(AlreadyRunning, match=f"pid {holder.pid}"):
            DataDirLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    with DataDirLock(tmp_path) as lock:
        assert lock.held


def test_a_child_that_keeps_failing_to_start_is_given_up_on_unless_nats_was_away(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import dataclasses

    broken = "import sys; print('ImportError: no module named x'); sys.exit(1)"
    changes: list[tuple[str, str, str]] = []

    async def scenario() -> Supervisor:
        sup = Supervisor(policy=FAST)
        sup.on_change = lambda *change: changes.append(change)
        try:
            await sup.start([
                dataclasses.replace(spec(tmp_path, "broken", broken), give_up_after=2),
                dataclasses.replace(spec(tmp_path, "nonats", EXITS_EARLY), give_up_after=2),
                dataclasses.replace(spec(tmp_path, "fine"), give_up_after=2)])
            await until(lambda: "broken" in sup.failed and sup.restarts.get("nonats", 0) >= 3,
                        "broken to be given up on while nonats is restarted")
            return sup
        finally:
            await sup.shutdown()

    caplog.set_level(logging.WARNING, "dagnats.serve")
    sup = asyncio.run(scenario())
    assert sup.restarts["broken"] == 1 and list(sup.failed) == ["broken"]
    assert "ImportError: no module named x" in sup.failed["broken"]
    [line] = [r.getMessage() for r in caplog.records if "cannot start" in r.getMessage()]
    assert line.startswith("broken cannot start (2 tries, given up): exited with code 1")
    assert ("broken", "failed", sup.failed["broken"]) in changes
    assert ("fine", "running", "") in changes
