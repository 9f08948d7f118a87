"""`dagnats url`: the URL of the running serve's NATS, with a login other NATS tools can use."""

from __future__ import annotations

from pathlib import Path

import click

from dagnats.cli.ops_cmds import DATA_DIR
from dagnats.errors import DagnatsError


@click.command()
@DATA_DIR
@click.option("--worker", "as_worker", is_flag=True,
              help="The worker's login (only what a worker may do) instead of the admin's.")
def url(data_dir: Path | None, as_worker: bool) -> None:
    """Print the NATS URL of the running `dagnats serve`, with its login in it.

    For other NATS tools (`nats --server "$(dagnats url)" ...`, nats-py): it is a secret,
    as good as a password. dagnats itself finds the login on its own.
    """
    from dagnats.cli.ops_cmds import _data_dir
    from dagnats.local_auth import load_logins, url_with_login
    from dagnats.server.state import NotRunning, read_state

    folder = _data_dir(data_dir)
    state = read_state(folder)
    if state is None:
        raise NotRunning(f"no dagnats serve is running on data dir {folder}; start one with "
                         "`dagnats serve`, or pass --data-dir")
    nats_url = str(state.get("nats_url", ""))
    if not state.get("auth"):
        if "***" in nats_url:
            raise DagnatsError("this serve uses the NATS given with --nats-url: use that URL "
                               "(dagnats does not keep its credentials)")
        click.echo(nats_url)  # --no-auth, or an external NATS without credentials
        return
    logins = load_logins(folder)
    if logins is None:
        raise DagnatsError(f"cannot read the logins of the serve on {folder} "
                           "(auth.json); run this as the user who runs `dagnats serve`")
    click.echo(url_with_login(nats_url, logins["worker" if as_worker else "admin"]))
