"""`dagnats serve`: one command that runs NATS, the API, the engine and workers on one machine.

    lock <data_dir>  ->  check the store version  ->  find nats-server  ->  start it on
    <data_dir>/store  ->  provision  ->  supervise api, engine, worker-<stem>...  ->  write
    serve.json, register in the user's state dir, report ready  ->  on SIGINT/SIGTERM stop
    everything

The embedded nats-server requires a login (unless --no-auth): the admin and worker logins
of dagnats.local_auth, generated on first start; see dagnats.server.auth.

With `nats_url` (an external NATS) no nats-server is started: the children and the
provisioning use that URL, and the data dir holds only the lock, serve.json and the logs.
The CLI maps its flags to ServeOptions and calls `serve`. Logs go to `<data_dir>/logs/`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import nats.errors

from dagnats import discovery, jetstream
from dagnats.connection import URL_ENV, connect, redact
from dagnats.errors import InvalidInput, ServeError
from dagnats.http.app import url_of
from dagnats.http.security import READ_TOKEN_ENV, TOKEN_ENV, Tokens
from dagnats.local_auth import (
    AUTH_NAME,
    DEFAULT_PORT,
    Login,
    endpoint,
    ensure_logins,
    private_dir,
    register,
    unregister,
)
from dagnats.program import program_name
from dagnats.replicas import REPLICAS_ENV, Replicas
from dagnats.replicas import provision as provision_replicated
from dagnats.server.auth import authorization_config, login_env
from dagnats.server.binary import find_nats_server, nats_server_version
from dagnats.server.child import ChildSpec
from dagnats.server.disk import check_usable, watch_storage
from dagnats.server.download import RELEASE, ProgressBar
from dagnats.server.lock import DataDirLock
from dagnats.server.logs import KEEP, MAX_BYTES, PrivateRotatingFileHandler
from dagnats.server.nats_process import NatsServer
from dagnats.server.procs import check_port_free
from dagnats.server.ready import claim_ready_fd, notify_ready
from dagnats.server.state import remove_state, write_state
from dagnats.server.store_version import prepare_store
from dagnats.server.supervisor import Supervisor, self_command
from dagnats.server.workers_state import WORKERS_NAME, WorkersState
from dagnats.store import layout
from dagnats.worker._worker import WORKER_NAME_ENV

LOGGER_NAME = "dagnats.serve"
#: A worker file that fails to start this many times in a row is reported and left stopped.
WORKER_START_TRIES = 3
#: A record of the serve logger with this attribute set goes to serve.log only (the banner
#: said it on stdout already).
FILE_ONLY = "file_only"
#: How serve tells its API process the age of runs to delete (`serve --retention`), seconds.
RETENTION_ENV = "DAGNATS_RETENTION_S"


def default_data_dir() -> Path:
    """DAGNATS_DATA_DIR, else the per-user data dir (such as ~/.local/share/dagnats)."""
    return discovery.default_data_dir()


@dataclass
class ServeOptions:
    """What `dagnats serve` was asked to do (its CLI flags)."""

    data_dir: Path | None = None  # None: default_data_dir()
    nats_port: int = 4222  # 0 picks a free port
    nats_server: str | None = None  # an explicit nats-server binary (--nats-server)
    workers: list[Path] = field(default_factory=list)
    sync_always: bool = False  # fsync every JetStream write (--sync always)
    host: str = "127.0.0.1"
    nats_url: str | None = None  # an external NATS: run no nats-server (--nats-url)
    detached: bool = False  # started by `serve --detach` (recorded in serve.json)
    retention_s: float | None = None  # delete runs ended longer ago (--retention)
    auth: bool = True  # the embedded nats-server requires a login (--no-auth: False)
    replicas: int | None = None  # streams' replicas (--replicas); None: detected
    leafnode_remote: str | None = None  # join this hub as a leaf node (--leafnode-remote)
    http_host: str = "127.0.0.1"  # the HTTP API and console's address (--http-host)
    http_port: int = 0  # their port (--http-port); 0: no HTTP API
    tokens: Tokens = field(default_factory=Tokens)  # the HTTP API's (--token-file...)

    @property
    def http_url(self) -> str | None:
        """The console's URL; None when the HTTP API is off."""
        return url_of(self.http_host, self.http_port) if self.http_port else None


def worker_names(workers: list[Path]) -> list[str]:
    """`worker-<stem>` for each file (the stem alone when it begins with "worker": worker.py is
    `worker`, not `worker-worker`), numbered when names repeat (worker-tasks, worker-tasks-2)."""
    names: list[str] = []
    for path in workers:
        base = path.stem if path.stem.lower().startswith("worker") else f"worker-{path.stem}"
        name, n = base, 1
        while name in names:
            n += 1
            name = f"{base}-{n}"
        names.append(name)
    return names


def child_specs(workers: list[Path], nats_url: str, log_dir: Path,
                retention_s: float | None = None,
                logins: Mapping[str, Login] | None = None,
                replicas: int | None = None,
                http: ServeOptions | None = None) -> list[ChildSpec]:
    """The children of serve: the API, the engine, the HTTP API (when `http` has a port),
    then one worker process per worker file.

    With `retention_s` the API deletes runs that ended longer ago than that. With `logins`,
    the API, the engine and the HTTP API get the admin login, the workers the worker's.
    `replicas` (serve --replicas) reaches the engine, which provisions too. The HTTP API's
    tokens reach it in its environment, never on its command line.
    """
    env = {URL_ENV: nats_url, **login_env(logins["admin"] if logins else None)}
    if replicas is not None:
        env[REPLICAS_ENV] = str(replicas)
    worker_env = {URL_ENV: nats_url, **login_env(logins["worker"] if logins else None)}
    api_env = dict(env)
    if retention_s is not None:
        api_env[RETENTION_ENV] = repr(retention_s)
    specs = [
        ChildSpec("api", self_command("_component", "api"), api_env, log_dir / "api.log"),
        ChildSpec("engine", self_command("_component", "engine"), env, log_dir / "engine.log"),
    ]
    if http is not None and http.http_port:
        tokens = {TOKEN_ENV: http.tokens.full or "", READ_TOKEN_ENV: http.tokens.read or ""}
        specs.append(ChildSpec("http", self_command(
            "http", "--http-host", http.http_host, "--http-port", str(http.http_port)),
            {**env, **tokens}, log_dir / "http.log"))
    for name, path in zip(worker_names(workers), workers, strict=True):
        argv = self_command("worker", "run", str(path))
        specs.append(ChildSpec(name, argv, {**worker_env, WORKER_NAME_ENV: name},
                               log_dir / f"{name}.log", give_up_after=WORKER_START_TRIES))
    return specs


def _check_workers(workers: list[Path]) -> list[Path]:
    resolved = [Path(w).expanduser().resolve() for w in workers]
    for given, path in zip(workers, resolved, strict=True):
        if not path.is_file():
            raise InvalidInput(f"worker file {given} does not exist; check the --worker path")
    return resolved


class _QuietRotatingFileHandler(PrivateRotatingFileHandler):
    """serve.log, which a full disk must not turn into tracebacks on stderr: the line still
    reaches stderr through the other handler."""

    def handleError(self, record: logging.LogRecord) -> None:
        pass


@contextlib.contextmanager
def _serve_logging(log_path: Path) -> Iterator[logging.Logger]:
    """The serve logger, writing one line per event to stderr and to serve.log."""
    private_dir(log_path.parent)
    log = logging.getLogger(LOGGER_NAME)
    to_file = _QuietRotatingFileHandler(log_path, maxBytes=MAX_BYTES, backupCount=KEEP)
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    to_stderr = logging.StreamHandler(sys.stderr)
    to_stderr.setFormatter(logging.Formatter("dagnats serve: %(message)s"))
    to_stderr.addFilter(lambda record: not getattr(record, FILE_ONLY, False))
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


async def provision_nats(url: str, login: Login | None = None,
                         replicas: int | None = None) -> Replicas:
    """Create or update every stream and bucket dagnats needs on the server at `url`, with
    `replicas` (None: 3 on a cluster of 3 or more servers, else 1); returns the choice."""
    nc = await connect(url, name="dagnats-serve", login=login)
    try:
        return await provision_replicated(nc, replicas)
    except (RuntimeError, nats.errors.Error) as exc:
        hint = "; pass --replicas 1 (or a count the cluster has)" if replicas else ""
        raise ServeError(f"cannot provision JetStream on {redact(url)}: {exc}{hint}") from exc
    finally:
        await jetstream.close(nc)


async def migrate_layout(url: str, login: Login | None, log: logging.Logger) -> None:
    """Move a store of an older layout to this dagnats' one (`dagnats.store.layout`), before
    any engine or worker starts; nothing when it is current (one direct get)."""
    nc = await connect(url, name="dagnats-serve", login=login)
    try:
        done = await layout.migrate(nc.jetstream(), progress=log.info)
    except (RuntimeError, nats.errors.Error) as exc:
        raise ServeError(layout.move_failed(exc)) from exc
    finally:
        await jetstream.close(nc)
    if done is not None:
        log.info(layout.summary(done))


def auth_line(options: ServeOptions, data_dir: Path) -> str | None:
    """The banner's line about authentication; None for an external NATS (its own business)."""
    if options.nats_url is not None:
        return None
    if not options.auth:
        return ("OFF (--no-auth): any local user or process can read, cancel and forge "
                "runs")
    return (f"on (logins in {data_dir / AUTH_NAME}; `{program_name()} url` prints a URL "
            "with them for other NATS tools)")


def url_line(url: str, embedded: bool) -> str | None:
    """The banner's `export DAGNATS_NATS_URL=...` line, when the port is not the default one
    (local commands find the serve by themselves; other shells and tools may not)."""
    found = endpoint(url)
    if not embedded or found is None or found[1] == DEFAULT_PORT:
        return None
    return f"export {URL_ENV}={redact(url)}"


def ready_banner(
    nats_line: str, data_dir: Path, specs: list[ChildSpec], failed: list[str], embedded: bool,
    auth: str | None = None, *, export: str | None = None, detached: bool = False,
    console: str | None = None,
) -> str:
    """The block serve prints once started: where NATS, the console, the data and the logs
    are. `console` is the console's line (console_line).

    `export` is the url_line; a detached serve (its output goes to serve.out) ends with how
    to stop it rather than "Press Ctrl-C to stop."."""
    names = ",".join(["serve", *(["nats"] if embedded else []), *(spec.name for spec in specs)])
    head = "dagnats serve: ready"
    if failed:
        head = (
            f"dagnats serve: running, but {', '.join(failed)} did not become ready "
            "(restarting; see their logs)"
        )
    return "\n".join([
        head,
        f"  NATS       {nats_line}",
        *([f"  console    {console}"] if console else []),
        *([f"  auth       {auth}"] if auth else []),
        f"  data dir   {data_dir}",
        f"  logs       {data_dir / 'logs'}/{{{names}}}.log",
        *([f"  clients    {export}"] if export else []),
        (f"Stop it with: {program_name()} stop --data-dir {data_dir}" if detached
         else "Press Ctrl-C to stop."),
    ])


def console_line(options: ServeOptions) -> str | None:
    """The banner's console line: its URL, the API's, and whether a token is needed."""
    url = options.http_url
    if url is None:
        return None
    token = ("; a token is needed" if options.tokens.required else "")
    return f"{url}  (HTTP API: {url}api/v1, reference: {url}docs{token})"


async def embedded_server(options: ServeOptions, data_dir: Path,
                          logins: Mapping[str, Login] | None = None) -> tuple[NatsServer, str]:
    """The nats-server to run on `<data_dir>/store` (not started) and its banner line.

    Checks the store's layout version first; downloads nats-server as a last resort. With
    `logins`, the server admits those logins only.
    """
    prepare_store(data_dir)
    progress = ProgressBar(f"dagnats serve: downloading nats-server v{RELEASE}")
    # A pool of our own, joined before serve supervises anything: a thread left in the
    # loop's default pool would make the kernel send the children's parent-death SIGTERM
    # twice when serve is killed -9 (once per exiting thread of serve; see procs.py).
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="find-nats") as pool:
        loop = asyncio.get_running_loop()
        binary = await loop.run_in_executor(pool, functools.partial(
            find_nats_server, options.nats_server, download_missing=True, progress=progress))
        version = await loop.run_in_executor(pool, nats_server_version, binary)
    server = NatsServer(
        binary, data_dir / "store", data_dir / "logs" / "nats.log", host=options.host,
        port=options.nats_port, sync_always=options.sync_always,
        authorization=authorization_config(logins) if logins else "",
        leafnode_remote=options.leafnode_remote,
    )
    leaf = f"; a leaf node of {redact(options.leafnode_remote)}" if options.leafnode_remote else ""
    return server, f"(nats-server v{version}, {binary}{leaf})"


async def serve(options: ServeOptions) -> int:
    """Run NATS and every dagnats component until SIGINT/SIGTERM; 0 after a clean stop."""
    workers = _check_workers(options.workers)
    data_dir = (options.data_dir or default_data_dir()).expanduser().resolve()
    check_usable(data_dir)
    if options.http_port:
        check_port_free(options.http_host, options.http_port, "--http-port")
    ready_fd = claim_ready_fd()  # set by `serve --detach`, told once everything is up
    with DataDirLock(data_dir), _serve_logging(data_dir / "logs" / "serve.log") as log:
        server, about = None, "(external; no nats-server started)"
        logins = None
        if options.nats_url is None:
            logins = ensure_logins(data_dir) if options.auth else None
            server, about = await embedded_server(options, data_dir, logins)
        supervisor = Supervisor(nats=server, logger=log)
        supervisor.install_signal_handlers()
        watch: asyncio.Task[None] | None = None  # restarts nats-server once a full disk has room
        try:
            if server is not None:
                await server.start()
            url = server.url if server is not None else str(options.nats_url)
            admin = logins["admin"] if logins else None
            chosen = await provision_nats(url, admin, options.replicas)
            log.info("streams and buckets: %d replica(s), %s", chosen.count, chosen.reason,
                     extra={FILE_ONLY: True})
            await migrate_layout(url, admin, log)
            specs = child_specs(workers, url, data_dir / "logs", options.retention_s, logins,
                                options.replicas, options)
            workers_state = WorkersState(data_dir, {
                spec.name: (path, spec.log_path) for spec, path in
                zip(specs[-len(workers):] if workers else [], workers, strict=True)})
            workers_state.write()
            supervisor.on_change = workers_state.changed

            def on_started(failed: list[str]) -> None:
                nats_line = f"{redact(url)} {about}"
                write_state(data_dir, redact(url), options.detached, auth=logins is not None)
                register(data_dir, url, auth=logins is not None)
                print(ready_banner(nats_line, data_dir, specs, failed, server is not None,
                                   auth_line(options, data_dir),
                                   export=url_line(url, server is not None),
                                   detached=options.detached,
                                   console=console_line(options)), flush=True)
                log.info("ready: NATS %s; data dir %s; %s", nats_line, data_dir,
                         ", ".join(spec.name for spec in specs), extra={FILE_ONLY: True})
                notify_ready(ready_fd)

            if server is not None:
                watch = asyncio.create_task(watch_storage(
                    lambda: server.monitor_port, data_dir, server.stop, log))
            if not supervisor.stopping:
                return await supervisor.run(specs, on_started)
            return supervisor.exit_code
        finally:
            if watch is not None:
                watch.cancel()
                await asyncio.gather(watch, return_exceptions=True)
            await supervisor.shutdown()
            supervisor.remove_signal_handlers()
            remove_state(data_dir)
            (data_dir / WORKERS_NAME).unlink(missing_ok=True)
            unregister(data_dir)
            log.info("stopped (exit code %s)", supervisor.exit_code, extra={FILE_ONLY: True})
