"""How the user invoked dagnats, so hints name the program they have.

    bin/dagnats stop ...      from a checkout (bin/dagnats sets DAGNATS_PROG to how it was run)
    ./dagnats stop ...        the single file (shiv zipapp), as it was typed
    dagnats stop ...          an installed console script on PATH, or anything else

Error messages, including those the API sends, spell the program as "`dagnats ...`";
`with_program` rewrites those hints for the user's program (the CLI's error report, doctor,
the lines of a watch and `run status`).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping

#: Set by bin/dagnats: the checkout's launcher as the user ran it.
PROG_ENV = "DAGNATS_PROG"
NAME = "dagnats"


def _shortest(argv0: str) -> str:
    """`argv0` as the user would type it again: the bare name when PATH finds this same file."""
    base = os.path.basename(argv0)
    if os.sep not in argv0:
        return argv0
    found = shutil.which(base)
    if found and os.path.realpath(found) == os.path.realpath(argv0):
        return base
    return argv0


def program_name(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> str:
    """The program name hints should use: `bin/dagnats`, `./dagnats`, or `dagnats`."""
    environ = os.environ if environ is None else environ
    given = environ.get(PROG_ENV, "").strip()
    if given:
        return _shortest(given)
    argv = sys.argv if argv is None else argv
    argv0 = argv[0] if argv else ""
    base = os.path.basename(argv0)
    if base == NAME or base.endswith(".pyz"):  # the single file, or a console script
        return _shortest(argv0)
    return NAME


#: How a hint to type a command begins: "`dagnats run list`", "(start one with: dagnats
#: worker run FILE)", "(dagnats run watch ID)". Prose ("no dagnats serve is running") is kept.
HINT_STARTS = ("`", "with: ", "(")


def with_program(text: str, program: str | None = None) -> str:
    """`text` with each hint to type a `dagnats ...` command spelled with the user's program."""
    program = program or program_name()
    if program == NAME:
        return text
    for start in HINT_STARTS:
        text = text.replace(f"{start}{NAME} ", f"{start}{program} ")
    return text
