"""Checking a worker file before running it: it must be Python source (or a zipapp).

`dagnats worker run` runs the file as `python FILE` would; a file that is not Python at all
(a binary, an image, a file with a syntax error) is refused in one line (exit 2) instead of
a traceback from deep inside runpy.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from dagnats.errors import InvalidInput


def check_worker_file(path: Path) -> None:
    """Raise InvalidInput (one line) unless `path` is a readable file of Python source that
    compiles, or a zipapp with a `__main__.py`."""
    if not path.exists():
        raise InvalidInput(f"worker file {path} does not exist")
    if not path.is_file():
        raise InvalidInput(f"worker file {path} is not a file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read worker file {path}: {exc.strerror or exc}") from None
    if zipfile.is_zipfile(path):
        _check_zipapp(path)
        return
    try:
        compile(data, str(path), "exec", dont_inherit=True)
    except SyntaxError as exc:
        where = f" (line {exc.lineno})" if exc.lineno else ""
        raise InvalidInput(f"worker file {path} is not Python source: {exc.msg}{where}"
                           ) from None
    except ValueError as exc:  # null bytes in the source
        raise InvalidInput(f"worker file {path} is not Python source: {exc}") from None


def _check_zipapp(path: Path) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile) as exc:
        raise InvalidInput(f"worker file {path} is not Python source: a broken zip file "
                           f"({exc})") from None
    if "__main__.py" not in names:
        raise InvalidInput(f"worker file {path} is a zip file without __main__.py, so not a "
                           "Python zipapp")
