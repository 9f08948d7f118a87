"""`dagnats python`: run your own script with dagnats' Python, where `import dagnats` works.

    bin/dagnats python client.py ARGS...      from a checkout (or .venv/bin/python client.py)
    ./dagnats python client.py ARGS...        with the single file
    ./dagnats python -c "import dagnats; print(dagnats.__version__)"
    ./dagnats python -m some_module ARGS...

The script runs in this process (the single file's libraries are already on sys.path), as
`python SCRIPT` would run it: `__name__ == "__main__"`, sys.argv is the script and its
arguments, the script's folder first on sys.path. The exit code is the script's.
"""

from __future__ import annotations

import os
import runpy
import sys
import traceback
from pathlib import Path

import click

from dagnats.errors import InvalidInput

#: What a shell reports for a process stopped by Ctrl-C (128 + SIGINT).
INTERRUPTED_EXIT_CODE = 130


@click.command("python", context_settings={"ignore_unknown_options": True,
                                            "allow_interspersed_args": False})
@click.option("-c", "code", metavar="CODE", help="Run this Python code (as `python -c`).")
@click.option("-m", "module", metavar="MODULE", help="Run this module (as `python -m`).")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def python(ctx: click.Context, code: str | None, module: str | None,
           args: tuple[str, ...]) -> None:
    """Run SCRIPT [ARGS]... with dagnats' own Python (import dagnats works).

    For client scripts and one-off tools, from the checkout and from the single file alike.
    The exit code is the script's.
    """
    if code is not None and module is not None:
        raise InvalidInput("give one of -c CODE, -m MODULE or SCRIPT")
    if code is None and module is None and not args:
        raise InvalidInput("what to run? `dagnats python SCRIPT [ARGS]...`, or -c CODE, "
                           "or -m MODULE")
    try:
        if code is not None:
            _run_code(code, list(args))
        elif module is not None:
            sys.argv = [module, *args]
            sys.path.insert(0, os.getcwd())
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        else:
            _run_script(Path(args[0]), list(args[1:]))
    except KeyboardInterrupt:
        ctx.exit(INTERRUPTED_EXIT_CODE)
    except (SystemExit, InvalidInput):
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
