"""`dagnats serve`: one command that runs NATS, the API, the engine and workers on one machine.

    lock <data_dir>  ->  find nats-server  ->  start it on <data_dir>/store  ->  provision
    ->  supervise api, engine, worker-<stem>...  ->  on SIGINT/SIGTERM stop everything

The CLI maps its flags to ServeOptions and calls `serve`. Logs go to `<data_dir>/logs/`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import nats.errors
import platformdirs

from dagnats import jetstream
from dagnats.connection import connect
from dagnats.errors import InvalidInput, ServeError
from dagnats.server.binary import find_nats_server, nats_server_version
from dagnats.server.child import ChildSpec
from dagnats.server.lock import DataDirLock
from dagnats.server.nats_process import NatsServer
from dagnats.server.supervisor import Supervisor, self_command

LOGGER_NAME = "dagnats.serve"


def default_data_dir() -> Path:
    """The per-user data dir, such as ~/.local/share/dagnats on Linux."""
    return Path(platformdirs.user_data_dir("dagnats"))


@dataclass
class ServeOptions:
    """What `dagnats serve` was asked to do (its CLI flags)."""

    data_dir: Path | None = None  # None: default_data_dir()
    nats_port: int = 4222  # 0 picks a free port
    nats_server: str | None = None  # an explicit nats-server binary (--nats-server)
    workers: list[Path] = field(default_factory=list)
    sync_always: bool = False  # fsync every JetStream write (--sync always)
    host: str = "127.0.0.1"


def worker_names(workers: list[Path]) -> list[str]:
    """`worker-<stem>` for each file, numbered when stems repeat (worker-tasks, worker-tasks-2)."""
    names: list[str] = []
    for path in workers:
        base = f"worker-{path.stem}"
        name, n = base, 1
        while name in names:
            n += 1
            name = f"{base}-{n}"
        names.append(name)
    return names


def child_specs(workers: list[Path], nats_url: str, log_dir: Path) -> list[ChildSpec]:
    """The children of serve: the API, the engine, then one worker process per worker file."""
    env = {"DAGNATS_NATS_URL": nats_url}
    specs = [
        ChildSpec("api", self_command("_component", "api"), env, log_dir / "api.log"),
        ChildSpec("engine", self_command("_component", "engine"), env, log_dir / "engine.log"),
    ]
    for name, path in zip(worker_names(workers), workers, strict=True):
        argv = self_command("worker", "run", str(path))
        specs.append(ChildSpec(name, argv, env, log_dir / f"{name}.log"))
    return specs


def _check_workers(workers: list[Path]) -> list[Path]:
    resolved = [Path(w).expanduser().resolve() for w in workers]
    for given, path in zip(workers, resolved, strict=True):
        if not path.is_file():
            raise InvalidInput(f"worker file {given} does not exist; check the --worker path")
    return resolved


@contextlib.contextmanager
def _serve_logging(log_path: Path) -> Iterator[logging.Logger]:
    """The serve logger, writing one line per event to stderr and to serve.log."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = logging.getLogger(LOGGER_NAME)
    to_file = logging.FileHandler(log_path)
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    to_stderr = logging.StreamHandler(sys.stderr)
    to_stderr.setFormatter(logging.Formatter("dagnats serve: %(message)s"))
    handlers: list[logging.Handler] = [to_file, to_stderr]
    for handler in handlers:
        log.addHandler(handler)
    old_level, old_propagate = log.level, log.propagate
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        yield log
    finally:
        for handler in handlers:
            log.removeHandler(handler)
            handler.close()
        log.setLevel(old_level)
        log.propagate = old_propagate


async def provision_nats(url: str) -> None:
    """Create or update every stream and bucket dagnats needs on the server at `url`."""
    nc = await connect(url, name="dagnats-serve")
    try:
        await jetstream.provision(nc.jetstream())
    except (RuntimeError, nats.errors.Error) as exc:
        raise ServeError(f"cannot provision JetStream on {url}: {exc}") from exc
    finally:
        await jetstream.close(nc)


def ready_banner(
    server: NatsServer, version: str, data_dir: Path, specs: list[ChildSpec], failed: list[str]
) -> str:
    """The block serve prints once started: where NATS, the data and the logs are."""
    names = ",".join(["serve", "nats", *(spec.name for spec in specs)])
    head = "dagnats serve: ready"
    if failed:
        head = (
            f"dagnats serve: running, but {', '.join(failed)} did not become ready "
            "(restarting; see their logs)"
        )
    return "\n".join([
        head,
        f"  NATS       {server.url} (nats-server v{version}, {server.binary})",
        f"  data dir   {data_dir}",
        f"  logs       {data_dir / 'logs'}/{{{names}}}.log",
        "Press Ctrl-C to stop.",
    ])


async def serve(options: ServeOptions) -> int:
    """Run NATS and every dagnats component until SIGINT/SIGTERM; 0 after a clean stop."""
    workers = _check_workers(options.workers)
    data_dir = (options.data_dir or default_data_dir()).expanduser().resolve()
    log_dir = data_dir / "logs"
    with DataDirLock(data_dir), _serve_logging(log_dir / "serve.log") as log:
        binary = find_nats_server(options.nats_server)
        version = await asyncio.to_thread(nats_server_version, binary)
        server = NatsServer(
            binary, data_dir / "store", log_dir / "nats.log", host=options.host,
            port=options.nats_port, sync_always=options.sync_always,
        )
        supervisor = Supervisor(nats=server, logger=log)
        supervisor.install_signal_handlers()
        try:
            await server.start()
            await provision_nats(server.url)
            specs = child_specs(workers, server.url, log_dir)

            def on_started(failed: list[str]) -> None:
                print(ready_banner(server, version, data_dir, specs, failed), flush=True)

            if not supervisor.stopping:
                return await supervisor.run(specs, on_started)
            return supervisor.exit_code
        finally:
            await supervisor.shutdown()
            supervisor.remove_signal_handlers()
