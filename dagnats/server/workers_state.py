"""What `serve` knows of its workers, for `dagnats worker list` and `doctor`.

`<data_dir>/workers.json` is rewritten (atomically) whenever a worker of serve starts
running or is given up on: {"<name>": {"file", "state", "detail", "log"}}, where state is
starting, running or failed (detail: why). It is removed when serve stops; a stale file is
ignored unless serve runs (the data-dir lock says so).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

WORKERS_NAME = "workers.json"


class WorkersState:
    """The workers of one serve, written to `<data_dir>/workers.json` on every change."""

    def __init__(self, data_dir: Path, workers: dict[str, tuple[Path, Path]]) -> None:
        """`workers`: {name: (worker file, log file)}; all start as `starting`."""
        self.path = Path(data_dir) / WORKERS_NAME
        self.entries: dict[str, dict[str, Any]] = {
            name: {"file": str(file), "state": "starting", "detail": "", "log": str(log)}
            for name, (file, log) in workers.items()}

    def changed(self, name: str, state: str, detail: str) -> None:
        """Record a worker's new state (other children are not workers: ignored)."""
        if name not in self.entries:
            return
        self.entries[name].update(state=state, detail=detail)
        self.write()

    def write(self) -> None:
        """Rewrite the file atomically (0600 beside serve.json)."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.entries, indent=2) + "\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)

    def remove(self) -> None:
        """Forget the file (serve is stopping)."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def read_workers(data_dir: Path) -> dict[str, dict[str, Any]]:
    """The workers of the serve on `data_dir` as last recorded ({} when none or unreadable)."""
    try:
        body = json.loads((Path(data_dir) / WORKERS_NAME).read_text())
    except (OSError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}
