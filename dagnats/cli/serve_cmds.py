"""`dagnats serve`, `dagnats worker run`, and the hidden `_component` processes serve runs."""

from __future__ import annotations

import asyncio
import os
import runpy
import sys
import traceback
from pathlib import Path

import click

from dagnats import aio
from dagnats.cli.common import (
    component_logging,
    connection_security_options,
    echo_json,
    json_option,
    nats_url_option,
    resolve_and_note,
)
from dagnats.cli.http_cmds import http_options
from dagnats.cli.worker_file import check_worker_file
from dagnats.errors import DagnatsError, InvalidInput

#: Set in the environment of a serve started by `serve --detach`.
DETACHED_ENV = "DAGNATS_DETACHED"
#: How `serve --retention` tells its API process the age (in seconds) of runs to delete
#: (dagnats.server.serve.RETENTION_ENV, spelled here to keep the CLI's import light).
RETENTION_ENV = "DAGNATS_RETENTION_S"


#: dagnats.replicas.REPLICAS_ENV, spelled here to keep the CLI's import light.
REPLICAS_ENV = "DAGNATS_REPLICAS"
#: --replicas: the replicas of every stream and bucket (JetStream allows 1 to 5).
replicas_option = click.option(
    "--replicas", type=click.IntRange(1, 5), envvar=REPLICAS_ENV, default=None,
    help="Replicas of every stream and bucket [env DAGNATS_REPLICAS; default: 3 on a NATS "
         "cluster of 3 or more servers, else 1]. Existing streams are scaled to it.")


@click.command()
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where the store and logs live [default: the user data dir].")
@click.option("--nats-port", type=click.IntRange(0, 65535), default=4222, show_default=True,
              help="NATS client port (0 picks a free one).")
@click.option("--nats-server", envvar="DAGNATS_NATS_SERVER", metavar="PATH",
              help="The nats-server binary to use [env DAGNATS_NATS_SERVER].")
@click.option("--nats-url", metavar="URL",
              help="Use this NATS (nats://host:4222) and start no nats-server.")
@connection_security_options
@click.option("--worker", "workers", multiple=True, type=click.Path(path_type=Path),
              help="A Python worker file to run and supervise (repeatable).")
@click.option("--sync", type=click.Choice(["always", "periodic"]), default="periodic",
              show_default=True, help="fsync every JetStream write (survives power loss), "
              "or periodically (survives a crash of any process).")
@click.option("--retention", metavar="AGE",
              help="Delete runs that ended longer ago than AGE (30d, 12h), continuously.")
@click.option("--detach", is_flag=True,
              help="Run in the background; `dagnats stop` ends it, `dagnats logs` shows it.")
@click.option("--no-auth", is_flag=True,
              help="Let NATS admit anyone, with no login (any local user could then read, "
              "cancel and forge runs).")
@replicas_option
@click.option("--leafnode-remote", metavar="URL",
              help="Join this hub as a NATS leaf node (nats-leaf://hub:7422); this serve's "
              "JetStream and runs stay its own (docs/deploy.md).")
@http_options
@click.pass_context
def serve(ctx: click.Context, data_dir: Path | None, nats_port: int, nats_server: str | None,
          nats_url: str | None, workers: tuple[Path, ...], sync: str, retention: str | None,
          detach: bool, no_auth: bool, replicas: int | None,
          leafnode_remote: str | None, http_host: str, http_port: int,
          token_file: Path | None, read_token_file: Path | None) -> None:
    """Run NATS, the API, the engine, the HTTP API and console, and your workers until
    Ctrl-C (or `dagnats stop`)."""
    from dagnats.http.security import check_binding, load_tokens
    from dagnats.server.serve import ServeOptions, default_data_dir
    from dagnats.server.serve import serve as run_serve

    tokens = load_tokens(token_file, read_token_file)
    if http_port:
        check_binding(http_host, tokens)

    if nats_url and sync == "always":
        raise InvalidInput("--sync always applies to the nats-server serve starts; with "
                           "--nats-url, set `jetstream { sync_interval: always }` on that server")
    if not nats_url and replicas is not None and replicas > 1:
        raise InvalidInput(f"--replicas {replicas} needs a NATS cluster: the nats-server serve "
                           "starts is a single server; pass --nats-url with the cluster's URLs")
    if leafnode_remote is not None:
        from dagnats.server.leaf import check_remote

        if nats_url:
            raise InvalidInput("--leafnode-remote applies to the nats-server serve starts; with "
                               "--nats-url, configure leafnodes on that server")
        leafnode_remote = check_remote(leafnode_remote)
    if nats_url and no_auth:
        raise InvalidInput("--no-auth applies to the nats-server serve starts; with --nats-url, "
                           "that server's own configuration decides who may connect")
    retention_s = None
    if retention is not None:
        from dagnats.store.retention import parse_age

        try:
            retention_s = parse_age(retention)
        except ValueError as exc:
            raise InvalidInput(f"--retention: {exc}") from None
    if detach:
        from dagnats.server.detach import run_detached

        folder = (data_dir or default_data_dir()).expanduser().resolve()
        click.echo(run_detached(sys.argv[1:], folder))
        return
    options = ServeOptions(data_dir=data_dir, nats_port=nats_port, nats_server=nats_server,
                           workers=list(workers), sync_always=sync == "always",
                           nats_url=nats_url, detached=bool(os.environ.get(DETACHED_ENV)),
                           retention_s=retention_s, auth=not no_auth, replicas=replicas,
                           leafnode_remote=leafnode_remote, http_host=http_host,
                           http_port=http_port, tokens=tokens)
    ctx.exit(asyncio.run(run_serve(options)))


@click.group()
def worker() -> None:
    """Run workers."""


@worker.command("run")
@click.argument("file", type=click.Path(path_type=Path))
@click.pass_context
def worker_run(ctx: click.Context, file: Path) -> None:
    """Run the worker file FILE with dagnats' own Python (as `python FILE` would).

    An exception from FILE is printed with its traceback: it is the user's code. Under
    `dagnats serve`, a file that ends without running a Worker is an error (exit 2).
    """
    from dagnats.server.ready import READY_FD_ENV
    from dagnats.server.serve import worker_names
    from dagnats.worker._worker import WORKER_NAME_ENV

    path = file.expanduser()
    check_worker_file(path)
    supervised = READY_FD_ENV in os.environ  # by serve, which waits for a worker to run
    if not supervised:  # by hand: say so when its Worker() would not reach the local serve
        resolve_and_note(None)
    os.environ.setdefault(WORKER_NAME_ENV, worker_names([path])[0])
    sys.argv = [str(path)]
    sys.path.insert(0, str(path.resolve().parent))  # as python does for a script
    try:
        runpy.run_path(str(path), run_name="__main__")
    except DagnatsError:
        raise
    except Exception:
        traceback.print_exc()
        ctx.exit(1)
    from dagnats.worker import Worker

    if supervised and not Worker.ever_ran:
        raise InvalidInput(f"worker file {file} ended without running a worker: create one "
                           "(w = Worker()), register its tasks, and call w.run() at the end")


@worker.command("list")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="The data dir of a local serve, for its worker files that could not "
                   "start [default: the user data dir].")
@nats_url_option
@json_option
def worker_list(data_dir: Path | None, nats_url: str | None, as_json: bool) -> None:
    """List the live workers (each announces itself every few seconds): id, name, host,
    pid, tasks, tasks in flight, up since. Works against any NATS. When a `dagnats serve`
    runs on the data dir, its worker files that are starting or could not start (with why)
    follow."""
    from datetime import UTC, datetime

    from dagnats.cli.common import echo_lines, with_client
    from dagnats.cli.render import workers_table
    from dagnats.server.serve import default_data_dir
    from dagnats.server.state import running_pid
    from dagnats.server.workers_state import read_workers

    live = with_client(nats_url, lambda client: client.workers())
    folder = (data_dir or default_data_dir()).expanduser().resolve()
    files = read_workers(folder) if running_pid(folder) is not None else {}
    if as_json:
        echo_json({"workers": [w.model_dump(mode="json") for w in live],
                   "supervised": [{"name": name, **entry} for name, entry in files.items()]})
        return
    echo_lines(workers_table(live, datetime.now(UTC)))
    for name, entry in files.items():
        if entry.get("state") != "running":  # a running one is among the live workers
            detail = f": {entry.get('detail')}" if entry.get("detail") else ""
            click.echo(f"serve's {name} ({entry.get('file')}) is {entry.get('state')}{detail}")


@click.group("_component", hidden=True)
def component() -> None:
    """Processes `dagnats serve` supervises (internal)."""


@component.command("api")
@nats_url_option
@click.option("--retention-s", type=click.FloatRange(min=0), envvar=RETENTION_ENV,
              help="Delete runs that ended longer ago than this many seconds.")
def component_api(nats_url: str | None, retention_s: float | None) -> None:
    """The API service."""
    from dagnats.api import run_api

    component_logging()
    aio.run(run_api(nats_url, retention_s=retention_s))


@component.command("engine")
@nats_url_option
@replicas_option
def component_engine(nats_url: str | None, replicas: int | None) -> None:
    """The engine."""
    _run_engine(nats_url, replicas)


@click.command("engine")
@nats_url_option
@replicas_option
def engine(nats_url: str | None, replicas: int | None) -> None:
    """Run one more engine against a NATS until Ctrl-C: engines share the runs (each takes
    an even share of the 32 partitions within seconds, and a dead one's share is taken over)."""
    _run_engine(nats_url, replicas)


def _run_engine(nats_url: str | None, replicas: int | None) -> None:
    from dagnats.engine.main import run_engine

    component_logging()
    aio.run(run_engine(nats_url, replicas=replicas))
