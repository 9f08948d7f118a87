"""The disk under the data dir: is it usable, how much room is left, and is JetStream stuck
because it ran out.

When a write fails with "no space left on device", nats-server marks the stream with a write
error and keeps refusing writes even after space is freed (measured with nats-server 2.15:
its /healthz says `unavailable` with that error until it restarts). So `serve` watches the
health of its nats-server (`watch_storage`): on that error it says once, in one line, where the
data dir is and how to free space, and once there is room again it restarts nats-server, on
the same store and port. What was stored stays; what was refused was never acknowledged, so
its writer retries it (every dagnats publish is idempotent).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path

from dagnats.errors import InvalidInput, ServeError

#: Below this much free space serve refuses to start, and doctor fails: JetStream would stop
#: storing events within moments.
MIN_FREE_BYTES = 16 * 1024 * 1024
#: How much room must be free before serve restarts a nats-server that ran out: enough for
#: JetStream to start and for a purge to delete old runs.
RESTART_FREE_BYTES = 1024 * 1024
#: The shortest wait between two such restarts (doubling while the disk keeps filling up).
RESTART_BACKOFF_S = 5.0
#: How often serve asks its nats-server whether it can still write.
WATCH_INTERVAL_S = 1.0
#: What nats-server says when a write failed for want of space.
NO_SPACE = "no space left on device"
#: The errnos of a full disk (or a full quota).
FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KB' (powers of 1024, one decimal)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def free_bytes(path: Path) -> int:
    """Free bytes on the file system holding `path` (or its nearest existing parent)."""
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def full_disk_message(data_dir: Path, free: int | None = None) -> str:
    """One line: the disk of the data dir is full, and how to free space."""
    room = f" ({human_bytes(free)} free)" if free is not None else ""
    return (f"the disk of data dir {data_dir} is full{room}: free space on it (delete other "
            "files there; once JetStream writes again, `dagnats run purge --older-than 30d` "
            "deletes old runs)")


def check_usable(data_dir: Path) -> None:
    """Raise one line when serve cannot keep its data in `data_dir`.

    InvalidInput (exit 2) when the directory cannot be created or written (such as
    /proc/1); ServeError when its disk is full (or has less than MIN_FREE_BYTES free).
    """
    probe = data_dir / ".serve-probe"
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
    except OSError as exc:
        if exc.errno in FULL_ERRNOS:
            raise ServeError(full_disk_message(data_dir, _free_or_none(data_dir))) from None
        raise InvalidInput(f"data dir {data_dir} cannot be used ({exc.strerror or exc}); "
                           "pass another --data-dir") from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    free = _free_or_none(data_dir)
    if free is not None and free < MIN_FREE_BYTES:
        raise ServeError(full_disk_message(data_dir, free) + f"; serve needs at least "
                         f"{human_bytes(MIN_FREE_BYTES)}")


def _free_or_none(path: Path) -> int | None:
    try:
        return free_bytes(path)
    except OSError:
        return None


async def health_error(monitor_port: int, timeout_s: float = 2.0) -> str | None:
    """What nats-server's /healthz says is wrong (None: healthy, or it does not answer)."""
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection("127.0.0.1", monitor_port)
            try:
                writer.write(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                await writer.drain()
                raw = await reader.read()
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except (OSError, TimeoutError):
        return None
    head, _, body = raw.partition(b"\r\n\r\n")
    if b" 200 " in head.split(b"\r\n", 1)[0] + b" ":
        return None
    try:
        answer = json.loads(body)
    except ValueError:
        return body.decode(errors="replace").strip() or "unhealthy"
    return str(answer.get("error") or answer.get("status") or "unhealthy")


def log_says_full(log_path: Path, max_bytes: int = 256 * 1024) -> bool:
    """True when nats-server's log, since its last start, reports a write refused for want
    of space."""
    try:
        with log_path.open("rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - max_bytes))
            text = f.read().decode(errors="replace")
    except OSError:
        return False
    since_start = text.rsplit("Server is ready", 1)[-1]
    return NO_SPACE in since_start


async def watch_storage(
    monitor_port: Callable[[], int], data_dir: Path, restart: Callable[[], Awaitable[object]],
    log: logging.Logger, *, interval_s: float = WATCH_INTERVAL_S,
    restart_free: int = RESTART_FREE_BYTES,
) -> None:
    """Until cancelled: when nats-server cannot write for want of space, log one line, wait
    for room (`restart_free` bytes), then `restart()` it and say so. Restarts are spaced by
    a backoff (RESTART_BACKOFF_S, doubling) while the disk keeps filling up again."""
    reported = False
    backoff, next_restart = RESTART_BACKOFF_S, 0.0
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(interval_s)
        error = await health_error(monitor_port())
        if error is None or NO_SPACE not in error:
            reported = False
            if loop.time() > next_restart + 60 * backoff:  # healthy a good while: reset
                backoff = RESTART_BACKOFF_S
            continue
        free = _free_or_none(data_dir)  # one statvfs: cheap enough for the loop
        if not reported:
            log.error("%s; serve restarts nats-server by itself once there is room",
                      full_disk_message(data_dir, free))
            reported = True
        if free is not None and free >= restart_free and loop.time() >= next_restart:
            log.warning("space is free again on data dir %s (%s); restarting nats-server",
                        data_dir, human_bytes(free))
            await restart()
            reported = False
            next_restart = loop.time() + backoff
            backoff = min(backoff * 2, 300.0)
