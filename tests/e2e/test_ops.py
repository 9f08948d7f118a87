"""Ops commands as a user runs them: version, serve --detach, doctor, logs [--follow], stop."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import DAGNATS, ROOT, free_port

EXAMPLE = ROOT / "examples" / "hello-pipeline"


def dagnats(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGNATS_NATS")}
    return subprocess.run([DAGNATS, *args], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=timeout_s)


@pytest.fixture
def detached(tmp_path: Path) -> Iterator[Path]:
    """A `serve --detach` on a temp data dir, stopped at teardown."""
    data_dir = tmp_path / "data"
    started = dagnats("serve", "--detach", "--data-dir", str(data_dir), "--nats-port",
                      str(free_port()), "--worker", str(EXAMPLE / "worker.py"))
    assert started.returncode == 0, started.stdout + started.stderr
    assert "running in the background" in started.stdout
    # Its hints name the program as it was run, and the URL to export (not port 4222).
    assert started.stdout.splitlines()[-1] == f"Stop it with: {DAGNATS} stop --data-dir {data_dir}"
    assert "  clients    export DAGNATS_NATS_URL=nats://127.0.0.1:" in started.stdout
    yield data_dir
    dagnats("stop", "--data-dir", str(data_dir))


def test_version_names_every_part() -> None:
    done = dagnats("version")
    assert done.returncode == 0, done.stderr
    names = [line[:12].strip() for line in done.stdout.splitlines()]
    assert names == ["dagnats", "nats-server", "nats-py", "pydantic", "event loop", "python",
                     "platform"]
    assert "nats-server  2." in done.stdout
    assert "event loop   uvloop 0." in done.stdout


def test_detach_doctor_logs_stop(detached: Path, tmp_path: Path) -> None:
    state = json.loads((detached / "serve.json").read_text())
    doctor = dagnats("doctor", "--data-dir", str(detached))
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    statuses = {line.split()[1]: line.split()[0] for line in doctor.stdout.splitlines()
                if not line.startswith("..")}
    assert statuses["JetStream"] == statuses["clock"] == "ok"
    assert statuses["port"] == "ok" and statuses["data"] == "ok"
    assert f"enabled on {state['nats_url']}" in doctor.stdout
    assert "stream WORKFLOW_HISTORY" in doctor.stdout and "FAIL" not in doctor.stdout

    engine = dagnats("logs", "--data-dir", str(detached), "--component", "engine")
    assert "dagnats: starting engine" in engine.stdout
    every = dagnats("logs", "--data-dir", str(detached)).stdout
    serve_log = every.split("==> serve (")[1].split("==>")[0]
    assert "ready: NATS " in serve_log  # serve's own log says when it became ready
    assert f"==> worker ({detached}/logs/worker.log) <==" in every  # worker.py: no worker-worker
    out = (detached / "logs" / "serve.out").read_text().rstrip().splitlines()
    assert out[-1].endswith(f"stop --data-dir {detached}") and "Ctrl-C" not in out[-1]

    checks = json.loads(dagnats("doctor", "--data-dir", str(detached), "--json").stdout)
    assert checks["ok"] is True
    assert {c["status"] for c in checks["checks"]} <= {"ok", "warn", "skip", "info"}
    assert {"JetStream", "clock"} <= {c["name"] for c in checks["checks"]}
    clients_find_the_local_serve_and_say_when_they_use_another(detached, tmp_path)

    twice = dagnats("serve", "--detach", "--data-dir", str(detached))
    assert twice.returncode == 3
    assert f"another `{DAGNATS} serve` (pid {state['pid']})" in twice.stderr
    assert f"stop it with `{DAGNATS} stop --data-dir {detached}`" in twice.stderr

    stopped = dagnats("stop", "--data-dir", str(detached))
    assert stopped.returncode == 0 and stopped.stdout.startswith("Stopped dagnats serve")
    assert not (detached / "serve.json").exists()
    again = dagnats("stop", "--data-dir", str(detached))
    assert again.returncode == 1
    assert again.stderr.strip() == f"error: no dagnats serve is running on data dir {detached}"


def clients_find_the_local_serve_and_say_when_they_use_another(detached: Path,
                                                                tmp_path: Path) -> None:
    """Part of the detached serve's test (one serve for both)."""
    url = json.loads((detached / "serve.json").read_text())["nats_url"]
    registered = dagnats("workflow", "register", str(EXAMPLE / "pipeline.json"))  # no URL
    assert (registered.returncode, registered.stderr) == (0, ""), registered.stderr
    assert registered.stdout.startswith("Registered hello-pipeline")
    listed = dagnats("workflow", "list", "--json", "--nats-url", url)
    assert "hello-pipeline" in [w["name"] for w in json.loads(listed.stdout)]

    doctor = dagnats("doctor")  # no --data-dir: it checks the serve clients find
    assert doctor.returncode == 0 and f"enabled on {url}" in doctor.stdout, doctor.stdout

    dead = f"nats://127.0.0.1:{free_port()}"
    other = dagnats("workflow", "list", "--nats-url", dead)
    assert other.returncode == 3
    assert other.stderr.splitlines()[0] == (f"note: using {dead} (--nats-url); the local serve "
                                            f"(data dir {detached}) is at {url}")

    # Your own script with dagnats' Python: the client finds the serve too; its exit code.
    script = tmp_path / "client.py"
    script.write_text("import sys\nimport dagnats\nwith dagnats.Client.connect() as c:\n"
                      "    print(c.url, [w.name for w in c.list_workflows()], sys.argv[1:])\n"
                      "sys.exit(4)\n")
    ran = dagnats("python", str(script), "a", "--b")
    assert (ran.returncode, ran.stdout) == (4, f"{url} ['hello-pipeline'] ['a', '--b']\n")
    code = dagnats("python", "-c", "import sys, dagnats; print(sys.argv)", "x")
    assert (code.returncode, code.stdout) == (0, "['-c', 'x']\n")
    module = dagnats("python", "-m", "dagnats", "--version")
    assert module.returncode == 0 and module.stdout.startswith("dagnats, version ")
    failing = dagnats("python", "-c", "raise KeyError(7)")
    assert failing.returncode == 1
    assert failing.stderr.splitlines()[1:] == ['  File "<string>", line 1, in <module>',
                                               "KeyError: 7"]


def test_logs_follow_prints_new_lines(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    api = logs / "api.log"
    api.write_text("old line\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGNATS_NATS")}
    proc = subprocess.Popen([DAGNATS, "logs", "--data-dir", str(tmp_path), "--follow",
                             "--component", "api"], stdout=subprocess.PIPE, text=True, env=env)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x.rstrip()) for x in proc.stdout or []],
                     daemon=True).start()
    try:
        assert lines.get(timeout=30) == "old line"
        with api.open("a") as f:
            f.write("new line\n")
        assert lines.get(timeout=10) == "new line"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_doctor_fails_on_a_nats_without_our_streams(nats_server, tmp_path: Path) -> None:
    done = dagnats("doctor", "--data-dir", str(tmp_path / "d"), "--nats-port", str(free_port()),
                   "--nats-url", nats_server.url)
    assert done.returncode == 1
    assert "ok    JetStream" in done.stdout
    assert "FAIL  stream WORKFLOW_HISTORY" in done.stdout and "missing" in done.stdout
    assert done.stderr.startswith("doctor: ")


def test_doctor_fails_when_the_given_nats_is_unreachable(tmp_path: Path) -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    done = dagnats("doctor", "--data-dir", str(tmp_path / "d"), "--nats-url", url)
    assert done.returncode == 1
    assert "FAIL  JetStream" in done.stdout and "cannot reach NATS" in done.stdout


def test_a_reader_that_goes_away_ends_the_command_quietly() -> None:
    """As `dagnats run events ID | head` does: the pipe closes before dagnats writes to it."""
    proc = subprocess.Popen([DAGNATS, "version"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=ROOT)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before anything is written
    stderr = proc.stderr.read()
    assert proc.wait(timeout=30) == 141  # what a shell shows for a SIGPIPE
    assert stderr == b""
