"""Sampling profiles of the components while a workload runs, with py-spy (optional).

py-spy (a dev dependency, requirements/dev.txt) attaches to a running process without
changing it. `Profiler` records each named process to a raw folded-stack file; `summarize`
turns one into the functions that take the most samples, inclusive and self. Idle time
(waiting in the event loop's select) is not sampled, so percentages are of busy time.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import psutil

SAMPLE_RATE_HZ = 200
TOP = 25


def py_spy() -> str | None:
    """The py-spy executable (beside this Python, else on PATH), or None."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.is_file() else shutil.which("py-spy")


class Profiler:
    """py-spy recording several processes until stopped."""

    def __init__(self, out_dir: Path, label: str, procs: dict[str, psutil.Process]) -> None:
        self.out_dir = out_dir
        self.label = label
        self.procs = procs
        self.files: dict[str, Path] = {}
        self._children: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        """Attach py-spy to every process."""
        exe = py_spy()
        if exe is None:
            raise RuntimeError("py-spy is not installed: pip install -r requirements/dev.txt")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name, proc in self.procs.items():
            path = self.out_dir / f"{self.label}-{name}.folded"
            self.files[name] = path
            self._children.append(subprocess.Popen(
                [exe, "record", "--pid", str(proc.pid), "--rate", str(SAMPLE_RATE_HZ),
                 "--format", "raw", "--output", str(path), "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    async def stop(self) -> dict[str, Any]:
        """Detach (SIGINT makes py-spy write its file) and summarize each profile."""
        for child in self._children:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGINT)
        for child in self._children:
            try:
                await asyncio.wait_for(asyncio.to_thread(child.wait), 20)
            except TimeoutError:
                child.kill()
        return {name: summarize(path) for name, path in self.files.items() if path.exists()}


def summarize(path: Path, top: int = TOP) -> dict[str, Any]:
    """One raw py-spy profile as percentages of busy samples.

    `inclusive_pct`: the functions most often on the stack (process plumbing left out);
    `self_pct`: the functions most often running; `self_by_area`: self time by package,
    with the socket send syscalls apart (nats-py writes once per flush).
    """
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(frame) for frame in stack.split(";")]
        total += count
        own[frames[-1]] += count
        areas[_area(frames[-1])] += count
        for frame in set(frames):
            if not frame.startswith(PLUMBING):
                inclusive[frame] += count
    if not total:
        return {"samples": 0}

    def pct(counter: Counter[str], n: int) -> dict[str, float]:
        return {key: round(value * 100 / total, 1) for key, value in counter.most_common(n)}

    return {"samples": total, "file": str(path), "inclusive_pct": pct(inclusive, top),
            "self_pct": pct(own, top), "self_by_area": pct(areas, 20)}


#: Frames every sample of a component has (its entry point and the event loop's run loop).
PLUMBING = ("main (", "Command.", "Group.", "Context.", "DagnatsGroup.", "<module> (",
            "_run_code (", "_run_module_as_main (", "run (asyncio", "Runner.run (",
            "BaseEventLoop.run_", "component_", "worker_run (", "run_path (", "_run_module_code",
            "Worker.run (")
AREAS = (("_SelectorSocketTransport.write", "socket send (syscall)"),
         ("EpollSelector.select", "epoll wait/wake-up"),
         ("(dag/", "dagnats.dag (fold, advance)"), ("(engine/", "dagnats.engine"),
         ("(worker/", "dagnats.worker"), ("(store/", "dagnats.store"), ("(api/", "dagnats.api"),
         ("(pydantic/", "pydantic"), ("(pydantic_core/", "pydantic"), ("(json/", "json"),
         ("(js/", "nats-py"), ("(aio/", "nats-py"), ("(protocol/", "nats-py"),
         ("(nats/", "nats-py"), ("(asyncio/", "asyncio"), ("(futures/", "threads"),
         ("(threading.py", "threads"))


def _area(frame: str) -> str:
    for marker, area in AREAS:
        if marker in frame:
            return area
    return "other"


def _short(frame: str) -> str:
    """`fn (path/to/module.py:12)` -> `fn (to/module.py)`: lines differ within one function."""
    name, _, where = frame.partition(" (")
    file = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(file).parts
    short = "/".join(parts[-2:]) if len(parts) >= 2 else file
    return f"{name} ({short})"
