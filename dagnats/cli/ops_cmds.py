"""`dagnats version`, `doctor`, `stop`, `logs` and `migrate`: looking after a dagnats
installation."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from dagnats.cli.common import echo_json, json_option, nats_url_option

DATA_DIR = click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
                        help="The data dir of the serve [default: the user data dir].")


def _data_dir(data_dir: Path | None) -> Path:
    from dagnats.server.serve import default_data_dir

    return (data_dir or default_data_dir()).expanduser().resolve()


@click.command()
@click.option("--nats-server", envvar="DAGNATS_NATS_SERVER", metavar="PATH",
              help="The nats-server binary serve would use [env DAGNATS_NATS_SERVER].")
@json_option
def version(nats_server: str | None, as_json: bool) -> None:
    """Print the versions of dagnats, nats-server, nats-py and Python, and the platform."""
    from dagnats.server.about import version_lines

    found = version_lines(nats_server)
    if as_json:  # {"dagnats": ..., "nats_server": ..., "nats_py": ..., "event_loop": ...}
        echo_json({name.replace("-", "_").replace(" ", "_"): value for name, value in found})
        return
    for name, value in found:
        click.echo(f"{name:<12} {value}")


@click.command()
@DATA_DIR
@click.option("--nats-port", type=click.IntRange(1, 65535), default=4222, show_default=True,
              help="The NATS port serve would listen on.")
@click.option("--nats-server", envvar="DAGNATS_NATS_SERVER", metavar="PATH",
              help="The nats-server binary serve would use [env DAGNATS_NATS_SERVER].")
@nats_url_option
@json_option
@click.pass_context
def doctor(ctx: click.Context, data_dir: Path | None, nats_port: int, nats_server: str | None,
           nats_url: str | None, as_json: bool) -> None:
    """Check everything dagnats needs, one line each; exit 1 if any check fails.

    The NATS checks use --nats-url, else the running serve of the data dir (without
    --data-dir: else the serve clients would find), else the default URL (skipped when
    nothing answers there).
    """
    from dagnats.connection import DEFAULT_URL
    from dagnats.discovery import FROM_SERVE, resolve
    from dagnats.program import with_program
    from dagnats.server import doctor as checks
    from dagnats.server.state import read_state, running_pid

    folder = _data_dir(data_dir)
    state = read_state(folder) or {}
    known = nats_url or state.get("nats_url")
    if not known and data_dir is None:  # the serve clients would find (dagnats.discovery)
        resolution = resolve()
        known = resolution.url if resolution.source == FROM_SERVE else None
    url = known or DEFAULT_URL
    found = [checks.Check("ok", "python", f"{sys.version.split()[0]} ({sys.executable})"),
             *checks.check_binary(nats_server),
             checks.check_port(nats_port, running_pid(folder), state.get("nats_url")),
             checks.check_data_dir(folder),
             checks.check_disk(folder, serving=bool(state)),
             *checks.check_workers(folder, serving=running_pid(folder) is not None),
             *asyncio.run(checks.check_nats(url, required=bool(known)))]
    failed = [c.name for c in found if c.status == "FAIL"]
    found = [checks.Check(c.status, c.name, with_program(c.detail)) for c in found]  # hints
    if as_json:
        echo_json({"ok": not failed, "checks": [c.to_json() for c in found]})
        ctx.exit(1 if failed else 0)
    width = max(len(c.name) for c in found)
    for check in found:
        click.echo(check.line(width))
    if failed:
        click.echo(f"doctor: {len(failed)} check(s) failed: {', '.join(failed)}", err=True)
    ctx.exit(1 if failed else 0)


@click.command()
@DATA_DIR
@click.option("--timeout", type=click.FloatRange(0.1), default=15.0, show_default=True,
              help="Seconds to wait before killing it.")
def stop(data_dir: Path | None, timeout: float) -> None:
    """Stop the `dagnats serve` running on the data dir (such as one started with --detach)."""
    from dagnats.server.state import stop_serve

    folder = _data_dir(data_dir)
    pid = stop_serve(folder, timeout)
    click.echo(f"Stopped dagnats serve (pid {pid}) on {folder}")


@click.command()
@nats_url_option
@json_option
def migrate(nats_url: str | None, as_json: bool) -> None:
    """Move the store on a NATS (one not run by `serve`, which does it itself) to the
    layout of this dagnats. Stop every engine and worker first; it is safe to run again."""
    from dagnats.store import layout

    async def move() -> layout.Migrated | None:
        import nats.errors

        from dagnats import jetstream
        from dagnats.connection import connect

        nc = await connect(nats_url, name="dagnats-migrate")
        try:
            return await layout.migrate(nc.jetstream(), progress=click.echo)
        except (RuntimeError, nats.errors.Error) as exc:
            raise layout.MoveFailed(layout.move_failed(exc)) from exc
        finally:
            await jetstream.close(nc)

    done = asyncio.run(move())
    if as_json:
        echo_json(done.__dict__ if done else None)
    elif done is None:
        click.echo("Nothing to move: the store is in the layout of this dagnats already")
    else:
        click.echo(layout.summary(done))


@click.command()
@DATA_DIR
@click.option("--component", metavar="NAME",
              help="Only this process's log: serve, nats, api, engine, worker-<stem>.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until Ctrl-C.")
@click.option("-n", "--lines", type=click.IntRange(0), default=20, show_default=True,
              help="How many of the last lines to show first.")
def logs(data_dir: Path | None, component: str | None, follow: bool, lines: int) -> None:
    """Show the log files of serve and the processes it supervises."""
    from dagnats.server import logs as log_files

    chosen = log_files.pick(_data_dir(data_dir), component)
    ends = log_files.sizes(chosen)
    empty = [name for name in chosen if ends[name] == 0]
    for name, path in chosen.items():
        if len(chosen) > 1 and name in empty:
            continue  # named once below rather than shown as an empty section
        if len(chosen) > 1:
            click.echo(f"==> {name} ({path}) <==")
        for line in log_files.tail(path, lines, ends[name]):
            click.echo(line)
    if len(chosen) > 1 and empty:
        click.echo(f"(empty so far: {', '.join(empty)})")
    if follow:
        try:
            log_files.follow(chosen, lambda line: click.echo(line), start=ends)
        except KeyboardInterrupt:
            pass
