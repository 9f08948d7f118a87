"""CPU time and memory of the processes under test, read with psutil.

CPU is user + system seconds from `cpu_times()`, sampled before and after a workload.
Peak RSS is the kernel's high-water mark (VmHWM in /proc/<pid>/status) where there is one,
else the largest RSS a background sampler saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping
from pathlib import Path

import psutil

MB = 1024 * 1024
SAMPLE_INTERVAL_S = 0.1


def cpu_seconds(procs: Mapping[str, psutil.Process]) -> dict[str, float]:
    """User + system CPU seconds used so far by each named process (children excluded)."""
    seconds = {}
    for name, proc in procs.items():
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        seconds[name] = times.user + times.system
    return seconds


def cpu_delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """CPU seconds spent by each process between two `cpu_seconds` readings."""
    return {name: round(after[name] - before.get(name, 0.0), 4) for name in after}


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent not idle (all cores, all processes)."""
    times = psutil.cpu_times()
    idle = times.idle + getattr(times, "iowait", 0.0)
    return sum(times) - idle


def rss_mb(proc: psutil.Process) -> float:
    """The current resident set size, in MiB (0 when the process is gone)."""
    try:
        return proc.memory_info().rss / MB
    except psutil.Error:
        return 0.0


def high_water_mb(pid: int) -> float | None:
    """The peak RSS the kernel recorded for `pid` (Linux VmHWM), in MiB; None elsewhere."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / MB
    return None


class PeakRss:
    """The peak RSS of each named process, from VmHWM or from sampling every 0.1 s."""

    def __init__(self) -> None:
        self.peaks: dict[str, float] = {}
        self._procs: dict[str, psutil.Process] = {}
        self._task: asyncio.Task[None] | None = None

    def watch(self, name: str, proc: psutil.Process) -> None:
        """Start (or keep) watching `proc` under `name`; a new process keeps the old peak."""
        self.note(name)
        self._procs[name] = proc

    def note(self, name: str) -> None:
        """Fold the current peak of `name`'s process in (call before it exits)."""
        proc = self._procs.get(name)
        if proc is None:
            return
        peak = high_water_mb(proc.pid) if proc.is_running() else None
        current = max(peak or 0.0, rss_mb(proc))
        self.peaks[name] = round(max(self.peaks.get(name, 0.0), current), 1)

    def start(self) -> None:
        """Begin sampling in the background (needed where VmHWM does not exist)."""
        self._task = asyncio.get_running_loop().create_task(self._sample())

    async def stop(self) -> dict[str, float]:
        """Stop sampling; the peak of every process, in MiB."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for name in list(self._procs):
            self.note(name)
        return dict(self.peaks)

    async def _sample(self) -> None:
        while True:
            for name in list(self._procs):
                self.note(name)
            await asyncio.sleep(SAMPLE_INTERVAL_S if not _has_vmhwm() else 1.0)


def _has_vmhwm() -> bool:
    return high_water_mb(os.getpid()) is not None
