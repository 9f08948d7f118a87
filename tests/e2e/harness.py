"""Running dagnats as a user does: `bin/dagnats serve` in the background and CLI commands."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
DAGNATS = str(ROOT / "bin" / "dagnats")


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def status_json(serve, run_id: str) -> dict:
    """`run status RUN --json` through serve's CLI, parsed (asserting it succeeded)."""
    shown = serve.cli("run", "status", run_id, "--json")
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


def wait_until(condition, timeout_s: float, what: str, interval_s: float = 0.05):
    """Poll `condition` until it returns something truthy; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def nats_healthy(monitor_port: int) -> bool:
    """True once the nats-server with this monitoring port answers /healthz with 200."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{monitor_port}/healthz", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


@contextmanager
def external_nats(args: list[str], store: Path) -> Iterator[int]:
    """A nats-server of our own (JetStream, loopback) with extra `args`; yields its port."""
    from dagnats.server.binary import find_nats_server

    port, monitor = free_port(), free_port()
    proc = subprocess.Popen(
        [str(find_nats_server()), "-js", "-a", "127.0.0.1", "-p", str(port), "-m", str(monitor),
         "-sd", str(store), *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: nats_healthy(monitor), 10, "the external nats-server to be healthy")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class Serve:
    """One `bin/dagnats serve` process and the CLI pointed at it."""

    def __init__(self, data_dir: Path, workers: list[Path], env: dict[str, str] | None = None,
                 args: list[str] | None = None) -> None:
        self.data_dir = data_dir
        self.violations_expected = False  # set by a test that breaks NATS permissions
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.env = {**os.environ, "DAGNATS_NATS_URL": self.url, **(env or {})}
        argv = [DAGNATS, "serve", "--data-dir", str(data_dir), "--nats-port", str(self.port),
                *(args or [])]
        for worker in workers:
            argv += ["--worker", str(worker)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=self.env, cwd=ROOT)
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for_output(self, text: str, timeout_s: float = 30.0) -> str:
        """Block until serve prints a line containing `text`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            self.output.append(line)
            if text in line:
                return line
        raise AssertionError(f"serve never printed {text!r}; it printed:\n" +
                             "\n".join(self.output))

    def cli(self, *args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run `bin/dagnats ARGS` against this serve."""
        return subprocess.run([DAGNATS, *args], capture_output=True, text=True, env=self.env,
                              cwd=ROOT, timeout=timeout_s)

    def child(self, marker: str) -> psutil.Process:
        """The supervised process whose command line contains `marker`."""
        def find() -> psutil.Process | None:
            for proc in psutil.Process(self.proc.pid).children(recursive=True):
                try:
                    if marker in " ".join(proc.cmdline()):
                        return proc
                except psutil.NoSuchProcess:
                    continue
            return None
        return wait_until(find, 20, f"a child process matching {marker!r}")

    def tree(self) -> list[psutil.Process]:
        """serve and everything below it."""
        parent = psutil.Process(self.proc.pid)
        return [parent, *parent.children(recursive=True)]

    def stop(self, timeout_s: float = 10.0) -> int:
        """SIGTERM serve and wait for it to exit."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout_s)


