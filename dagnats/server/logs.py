"""The log files of `dagnats serve`: one per process in `<data_dir>/logs/`, rotated by size.

    serve.log  nats.log  api.log  engine.log  worker-<stem>.log  (serve.out: a detached serve)

A child's output is appended to its file, so rotation happens when a process (re)starts:
past MAX_BYTES the file becomes `.1` (then `.2`, up to KEEP). `dagnats logs` reads them.
"""

from __future__ import annotations

import logging.handlers
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from dagnats.errors import InvalidInput

MAX_BYTES = 10 * 1024 * 1024
KEEP = 3
#: How often `follow` looks for new lines.
FOLLOW_INTERVAL_S = 0.2


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A RotatingFileHandler whose files are readable by their owner only (0600)."""

    def _open(self) -> Any:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(fd, 0o600)
        return os.fdopen(fd, "a", encoding=self.encoding, errors=self.errors)


def log_dir(data_dir: Path) -> Path:
    """Where the logs of a data dir live."""
    return Path(data_dir) / "logs"


def rotate_if_large(path: Path, max_bytes: int = MAX_BYTES, keep: int = KEEP) -> bool:
    """Rotate `path` (path -> path.1 -> ... -> path.<keep>) when it is over `max_bytes`."""
    try:
        if path.stat().st_size <= max_bytes:
            return False
    except FileNotFoundError:
        return False
    for n in range(keep - 1, 0, -1):
        older = path.with_name(f"{path.name}.{n}")
        if older.exists():
            older.replace(path.with_name(f"{path.name}.{n + 1}"))
    path.replace(path.with_name(f"{path.name}.1"))
    return True


def components(data_dir: Path) -> dict[str, Path]:
    """{component name: current log file}, such as {"engine": .../logs/engine.log}."""
    folder = log_dir(data_dir)
    if not folder.is_dir():
        return {}
    found = {p.stem: p for p in folder.glob("*.log")}
    if (folder / "serve.out").is_file():
        found["serve.out"] = folder / "serve.out"
    return dict(sorted(found.items()))


def pick(data_dir: Path, component: str | None) -> dict[str, Path]:
    """The logs `dagnats logs` shows: one component's, or all; InvalidInput naming the choices."""
    found = components(data_dir)
    if not found:
        raise InvalidInput(f"no logs in {log_dir(data_dir)}; has `dagnats serve` run with "
                           "this --data-dir?")
    if component is None:
        return found
    name = component.removesuffix(".log")
    if name not in found:
        raise InvalidInput(f"no log for component {component!r} in {log_dir(data_dir)}; "
                           f"there are: {', '.join(found)}")
    return {name: found[name]}


def sizes(paths: dict[str, Path]) -> dict[str, int]:
    """The current size of each file: where `tail` ends and `follow` starts, with no gap."""
    return {name: _size(path) for name, path in paths.items()}


def tail(path: Path, lines: int, end: int | None = None) -> list[str]:
    """The last `lines` lines of a file (of its first `end` bytes, when given)."""
    with path.open("rb") as f:
        stop = f.seek(0, os.SEEK_END) if end is None else end
        start = max(0, stop - max(lines, 1) * 400)
        f.seek(start)
        text = f.read(stop - start).decode(errors="replace")
    return text.splitlines()[-lines:] if lines > 0 else []


def follow(paths: dict[str, Path], emit: Callable[[str], None],
           keep_going: Callable[[], bool] = lambda: True,
           start: dict[str, int] | None = None) -> None:
    """Print lines appended to `paths` (prefixed by component when several) as they come,
    from `start` (default: their current ends).

    Follows a file across rotation: a file that shrank or was replaced is read from its start.
    """
    prefix = len(paths) > 1
    offsets = dict(start) if start is not None else sizes(paths)
    while keep_going():
        for name, path in paths.items():
            for line in _new_lines(path, offsets, name):
                emit(f"[{name}] {line}" if prefix else line)
        time.sleep(FOLLOW_INTERVAL_S)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _new_lines(path: Path, offsets: dict[str, int], name: str) -> Iterator[str]:
    size = _size(path)
    if size < offsets[name]:
        offsets[name] = 0  # rotated or truncated
    if size == offsets[name]:
        return
    with path.open("rb") as f:
        f.seek(offsets[name])
        data = f.read(size - offsets[name])
    complete = data.rfind(b"\n") + 1  # leave a half-written last line for the next round
    offsets[name] += complete
    yield from data[:complete].decode(errors="replace").splitlines()
