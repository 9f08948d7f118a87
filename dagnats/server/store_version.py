"""The layout version of a data dir's store: `<data_dir>/store-version.json`.

    {"store_version": 2, "written_by": "dagnats 0.1.0"}

A newer dagnats reads an older store: `prepare_store` migrates its files (today there is
nothing to change in them but the number) and rewrites the file; what is stored in NATS is
moved once nats-server runs (`dagnats.store.layout`: version 2 keeps each task as its
step.queued event in history). An older dagnats refuses a newer store with one
line, before nats-server touches it. A store without the file predates versioning: version 0.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from dagnats.errors import ServeError
from dagnats.server.about import dagnats_version

#: Raise this when the store layout changes, and teach `migrate` the step from the last one.
STORE_VERSION = 2
FILE_NAME = "store-version.json"


class StoreTooNew(ServeError):
    """The data dir was written by a newer dagnats whose layout this one does not know."""


def read_store_version(data_dir: Path) -> int | None:
    """The store version recorded in `data_dir`; None when there is no store yet, 0 when the
    store predates versioning. ServeError when the file cannot be read."""
    path = Path(data_dir) / FILE_NAME
    try:
        found = json.loads(path.read_text())["store_version"]
    except FileNotFoundError:
        return 0 if (Path(data_dir) / "store").is_dir() else None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ServeError(f"cannot read {path} ({exc}); restore it from a backup, or move the "
                         "data dir aside") from exc
    if not isinstance(found, int):
        raise ServeError(f"{path} holds store_version {found!r}, not a number")
    return found


def write_store_version(data_dir: Path, version: int = STORE_VERSION) -> None:
    """Record `version` (atomically: a crash leaves the old file or the new one)."""
    path = Path(data_dir) / FILE_NAME
    tmp = path.with_name(path.name + ".tmp")
    body = {"store_version": version, "written_by": f"dagnats {dagnats_version()}"}
    tmp.write_text(json.dumps(body) + "\n")
    os.replace(tmp, path)


def migrate(data_dir: Path, found: int) -> None:
    """Bring a store's files of layout `found` up to STORE_VERSION (0 -> 1 -> 2 change no
    file; serve moves the NATS side of 1 -> 2 itself, see dagnats.store.layout)."""
    write_store_version(data_dir)


def prepare_store(data_dir: Path) -> int | None:
    """Check the store before serving it; migrate an older one. Returns the version found.

    Raises StoreTooNew when a newer dagnats wrote it.
    """
    found = read_store_version(data_dir)
    if found is not None and found > STORE_VERSION:
        raise StoreTooNew(
            f"data dir {data_dir} holds a store of layout version {found}, written by a newer "
            f"dagnats; this dagnats ({dagnats_version()}) reads up to version {STORE_VERSION}. "
            "Run the newer dagnats, or pass another --data-dir")
    if found != STORE_VERSION:
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        migrate(data_dir, found or 0)
    return found
