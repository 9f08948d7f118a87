"""The entry point of the dagnats zipapp (copied to `_dagnats_launch.py` in its site-packages).

shiv runs it once site-packages is on sys.path. A file built for several CPythons keeps each
one's compiled distributions (pydantic-core, uvloop, cffi) in `_abi/cp3XX/`: this interpreter's
folder goes first on sys.path, then the CLI runs. The boot module has already checked that the
file carries a folder for this interpreter.
"""

import os
import sys


def main() -> None:
    """Put this interpreter's compiled distributions first, then run dagnats' CLI."""
    own = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_abi",
                       "cp%d%d" % sys.version_info[:2])  # noqa: UP031 - as the folders are named
    if os.path.isdir(own):
        sys.path.insert(0, own)
    from dagnats.cli.main import main as cli

    cli()
