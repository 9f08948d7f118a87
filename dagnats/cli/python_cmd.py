"""`dagnats python`: run your own script with dagnats' Python, where `import dagnats` works.

    bin/dagnats python client.py ARGS...      from a checkout (or .venv/bin/python client.py)
    ./dagnats python client.py ARGS...        with the single file
    ./dagnats python -c "import dagnats; print(dagnats.__version__)"
    ./dagnats python -m some_module ARGS...

The script runs in this process (the single file's libraries are already on sys.path), as
`python SCRIPT` would run it: `__name__ == "__main__"`, sys.argv is the script and its
arguments, the script's folder first on sys.path. The exit code is the script's; a dagnats
error it does not catch is one line with its exit code, as for any command (DAGNATS_DEBUG=1
shows the traceback), any other exception its traceback and exit 1.
"""

from __future__ import annotations

import os
import runpy
import sys
import traceback
from pathlib import Path

import click

from dagnats.errors import DagnatsError, InvalidInput

#: What a shell reports for a process stopped by Ctrl-C (128 + SIGINT).
INTERRUPTED_EXIT_CODE = 130


@click.command("python", context_settings={"ignore_unknown_options": True,
                                            "allow_interspersed_args": False})
@click.argument("args", nargs=-1, type=click.UNPROCESSED, metavar="SCRIPT [ARGS]...")
@click.pass_context
def python(ctx: click.Context, args: tuple[str, ...]) -> None:
    """Run SCRIPT [ARGS]... with dagnats' own Python (import dagnats works).

    Also `-c CODE [ARGS]...` and `-m MODULE [ARGS]...`, as python takes them. For client
    scripts and one-off tools, from the checkout and from the single file alike. The exit
    code is the script's.
    """
    if not args:
        raise InvalidInput("what to run? `dagnats python SCRIPT [ARGS]...`, or -c CODE, "
                           "or -m MODULE")
    flag, rest = args[0], list(args[1:])
    if flag in ("-c", "-m") and not rest:
        raise InvalidInput(f"{flag} needs a value: `dagnats python {flag} "
                           f"{'CODE' if flag == '-c' else 'MODULE'} [ARGS]...`")
    if flag.startswith("-") and flag not in ("-c", "-m"):
        raise InvalidInput(f"unknown option {flag}: give SCRIPT, -c CODE or -m MODULE first")
    try:
        if flag == "-c":
            _run_code(rest[0], rest[1:])
        elif flag == "-m":
            sys.argv = [rest[0], *rest[1:]]
            sys.path.insert(0, os.getcwd())
            runpy.run_module(rest[0], run_name="__main__", alter_sys=True)
        else:
            _run_script(Path(flag), rest)
    except KeyboardInterrupt:
        ctx.exit(INTERRUPTED_EXIT_CODE)
    except (SystemExit, DagnatsError):  # a dagnats error: its one line (as every command)
        raise
    except Exception as exc:  # the user's code failed: its traceback, as python prints it
        _print_user_traceback(exc)
        ctx.exit(1)


def _print_user_traceback(exc: BaseException) -> None:
    """The traceback from the user's code on: without this module's and runpy's frames."""
    tb = exc.__traceback__
    ours = {os.path.abspath(__file__), os.path.abspath(runpy.__file__ or "")}
    while tb is not None and (os.path.abspath(tb.tb_frame.f_code.co_filename) in ours
                              or tb.tb_frame.f_code.co_filename == "<frozen runpy>"):
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb)


def _run_script(path: Path, args: list[str]) -> None:
    if not path.expanduser().is_file():
        raise InvalidInput(f"cannot run {path}: no such file")
    script = str(path.expanduser())
    sys.argv = [script, *args]
    sys.path.insert(0, str(path.expanduser().resolve().parent))  # as python does for a script
    runpy.run_path(script, run_name="__main__")


def _run_code(code: str, args: list[str]) -> None:
    sys.argv = ["-c", *args]
    sys.path.insert(0, "")
    exec(compile(code, "<string>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
