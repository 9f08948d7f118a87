"""`dagnats serve --detach`: run serve in the background and return once it is ready.

The background serve is this program again without --detach, in its own session, its output
in `<data_dir>/logs/serve.out`. It reports ready through the ready pipe (dagnats.server.ready)
once NATS, the API, the engine and the workers are up; `dagnats stop` ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from pathlib import Path

from dagnats.errors import AlreadyRunning, ServeError
from dagnats.program import program_name, with_program
from dagnats.server.logs import log_dir
from dagnats.server.procs import log_tail, open_log, wait_exit
from dagnats.server.ready import ready_env, ready_pipe, wait_ready
from dagnats.server.serve import url_line
from dagnats.server.state import read_state, running_pid
from dagnats.server.supervisor import self_command

#: How long the background serve may take to be ready (a first start may download nats-server).
DETACH_READY_TIMEOUT_S = 120.0
EXIT_GRACE_S = 2.0
AUTH_ON = "on (`dagnats url` prints a URL with the login)"


def serve_argv(args: list[str]) -> list[str]:
    """The command line of the background serve: the same arguments (`serve ...`) without
    --detach."""
    return self_command(*(a for a in args if a != "--detach"))


async def start_detached(args: list[str], data_dir: Path,
                         timeout_s: float = DETACH_READY_TIMEOUT_S) -> str:
    """Start serve in the background; return the lines to print once it is ready."""
    holder = running_pid(data_dir)
    if holder is not None:
        raise AlreadyRunning(f"another `dagnats serve` (pid {holder}) is using data dir "
                             f"{data_dir}; stop it with `{program_name()} stop --data-dir "
                             f"{data_dir}`")
    out = log_dir(data_dir) / "serve.out"
    read_fd, write_fd = ready_pipe()
    try:
        proc = _spawn(args, out, write_fd)
    finally:
        os.close(write_fd)  # else EOF never comes if the background serve dies
    if not await wait_ready(read_fd, proc, timeout_s):
        with contextlib.suppress(TimeoutError):  # the pipe closed: its exit code comes next
            await asyncio.wait_for(wait_exit(proc), EXIT_GRACE_S)
        code = proc.poll()
        why = f"exited with code {code}" if code is not None else "is not ready yet"
        said = [line for line in log_tail(out, 5).splitlines() if line.strip()]
        last = f" ({said[-1].strip()})" if said else ""
        raise ServeError(f"the background dagnats serve {why}{last}; see {out}")
    state = read_state(data_dir) or {}
    prog = program_name()
    url = str(state.get("nats_url", "?"))
    export = url_line(url, embedded=not args_name_url(args))
    return "\n".join([
        f"dagnats serve: running in the background (pid {proc.pid})",
        f"  NATS       {url}",
        f"  auth       {with_program(AUTH_ON, prog) if state.get('auth') else 'off'}",
        f"  data dir   {data_dir}",
        f"  logs       {prog} logs --data-dir {data_dir} [--follow] [--component NAME]",
        *([f"  clients    {export}"] if export else []),
        f"Stop it with: {prog} stop --data-dir {data_dir}",
    ])


def args_name_url(args: list[str]) -> bool:
    """True when the serve arguments give an external NATS (--nats-url)."""
    return any(a == "--nats-url" or a.startswith("--nats-url=") for a in args)


def _spawn(args: list[str], out: Path, write_fd: int) -> subprocess.Popen[bytes]:
    log_fd = open_log(out)
    try:
        return subprocess.Popen(
            serve_argv(args), stdin=subprocess.DEVNULL, stdout=log_fd, stderr=subprocess.STDOUT,
            env=ready_env(write_fd, {**os.environ, "DAGNATS_DETACHED": "1"}),
            pass_fds=(write_fd,), start_new_session=True,
        )
    finally:
        os.close(log_fd)


def run_detached(args: list[str], data_dir: Path) -> str:
    """`start_detached` from synchronous code."""
    return asyncio.run(start_detached(args, data_dir))
