"""The system under test: a nats-server, the API, the engine and the workers, each a process.

Every component is a subprocess, as `dagnats serve` runs them, so psutil can measure each
one's CPU and memory apart:

    nats-server    NatsServer on free ports, store in a temporary dir
    api            python -m dagnats _component api          (DAGNATS_NATS_URL)
    engine         python -m dagnats _component engine
    worker[-N]     python -m dagnats worker run <bench_worker.py>

Each child reports ready through the supervisor's ready pipe (dagnats.server.ready).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from dagnats import jetstream
from dagnats.bench import bench_worker
from dagnats.bench.config import BenchConfig
from dagnats.connection import connect
from dagnats.errors import DagnatsError
from dagnats.server.binary import find_nats_server
from dagnats.server.nats_process import NatsServer
from dagnats.server.ready import ready_env, ready_pipe, wait_ready
from dagnats.server.supervisor import self_command

READY_TIMEOUT_S = 30.0
WORKER_FILE = str(Path(bench_worker.__file__).resolve())
STOP_TIMEOUT_S = 10.0


class BenchError(DagnatsError):
    """A component of the benchmark failed to start or died; the message says where to look."""


@dataclass
class Child:
    """One component process, started and stopped like `dagnats serve` would."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def ps(self) -> psutil.Process:
        """The running process, for psutil readings."""
        if self.proc is None:
            raise RuntimeError(f"{self.name} is not running")
        return psutil.Process(self.proc.pid)

    async def start(self) -> None:
        """Spawn the process and wait until it says it is ready."""
        read_fd, write_fd = ready_pipe()
        try:
            self.proc = self._spawn(write_fd)
        finally:
            os.close(write_fd)  # else the pipe's EOF never comes if the child dies
        if not await wait_ready(read_fd, self.proc, timeout_s=READY_TIMEOUT_S):
            await self.stop()
            raise BenchError(f"the bench's {self.name} did not become ready; see "
                             f"{self.log_path}:\n{_tail(self.log_path)}")

    def _spawn(self, ready_fd: int) -> subprocess.Popen[bytes]:
        with self.log_path.open("ab") as log:
            return subprocess.Popen(
                self.argv, env=ready_env(ready_fd, self.env), pass_fds=(ready_fd,),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    def check_alive(self) -> None:
        """Raise BenchError when the process has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise BenchError(f"the bench's {self.name} exited with code {self.proc.returncode};"
                             f" see {self.log_path}:\n{_tail(self.log_path)}")

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after a grace period."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            await asyncio.wait_for(asyncio.to_thread(proc.wait), STOP_TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            await asyncio.to_thread(proc.wait)


class Cluster:
    """nats-server plus the API, engine and worker processes, in a temporary directory."""

    def __init__(self, root: Path, config: BenchConfig) -> None:
        self.root = root
        self.config = config
        self.nats = NatsServer(find_nats_server(), root / "store", root / "nats.log", port=0)
        self.children: dict[str, Child] = {}

    @property
    def url(self) -> str:
        """The NATS URL of the bench's server."""
        return self.nats.url

    @property
    def monitor_port(self) -> int:
        """The HTTP monitoring port of the bench's server."""
        return self.nats.monitor_port

    async def start(self) -> None:
        """Start nats-server, provision, then the API, the engine and the workers."""
        await self.nats.start()
        nc = await connect(self.url, name="dagnats-bench-setup")
        try:
            await jetstream.provision(nc.jetstream())
        finally:
            await jetstream.close(nc)
        env = {**os.environ, "DAGNATS_NATS_URL": self.url,
               bench_worker.CONCURRENCY_ENV: str(self.config.worker_concurrency),
               bench_worker.SYNC_THREADS_ENV: str(self.config.worker_sync_threads)}
        env.pop("DAGNATS_DEBUG", None)
        specs = {"api": ["_component", "api"]}
        for n in range(self.config.engine_processes):
            specs["engine" if n == 0 else f"engine-{n + 1}"] = ["_component", "engine"]
        for n in range(self.config.worker_processes):
            name = "worker" if n == 0 else f"worker-{n + 1}"
            specs[name] = ["worker", "run", WORKER_FILE]
        for name, args in specs.items():
            self.children[name] = Child(name, self_command(*args), env,
                                        self.root / f"{name}.log")
        await asyncio.gather(*(child.start() for child in self.children.values()))

    def processes(self) -> dict[str, psutil.Process]:
        """Every process under test by name: nats-server, api, engine, worker[-N]."""
        procs = {"nats-server": psutil.Process(self.nats.pid or 0)}
        for name, child in self.children.items():
            if child.proc is not None:
                procs[name] = child.ps
        return procs

    def check_alive(self) -> None:
        """Raise BenchError when any component has died."""
        if not self.nats.running:
            raise BenchError(f"the bench's nats-server died; see {self.nats.log_path}")
        for child in self.children.values():
            child.check_alive()

    def _engines(self) -> list[Child]:
        return [child for name, child in self.children.items()
                if name == "engine" or name.startswith("engine-")]

    async def stop_engine(self) -> None:
        """Stop the engine processes (to reposition their consumers while they are down)."""
        for engine in self._engines():
            await engine.stop()

    async def start_engine(self) -> None:
        """Start the engine processes again."""
        await asyncio.gather(*(engine.start() for engine in self._engines()))

    async def stop(self) -> None:
        """Stop every component, then nats-server."""
        for child in self.children.values():
            with contextlib.suppress(Exception):
                await child.stop()
        await self.nats.stop()


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
