"""What users run, measured: the public client's start + wait, and `run start --watch`.

    client_waits   N chain runs at once, each `AsyncClient.start` then `AsyncClient.wait`
                   (the public client only: no Tracker, no shortcut); runs/s and steps/s
                   from the first start to the last wait returned, and each run's time
                   from its start call to its wait returning
    cli_watches    N `dagnats run start bench-chain NAME --watch` processes at once against
                   the bench's system; the wall time until all exited, each process's time
                   from spawn to exit, the exit codes (each must be 0), the CPU the
                   processes used, and every run's output checked (through the Tracker).
                   A failed process is described (exit code, end of stderr) with whether
                   a run with its input completed anyway (a start whose answer was lost).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from dagnats.bench.stats import summary_ms
from dagnats.bench.workflows import CHAIN, CHAIN_STEPS, Tracker, chain_output
from dagnats.client import AsyncClient
from dagnats.server.supervisor import self_command

#: How many failed processes the report describes (exit code and the end of stderr).
FAILURES_SHOWN = 5
#: How much of a failed process's stderr the report keeps.
STDERR_TAIL = 400
#: How long to wait for the Tracker to see the runs of processes that have exited.
SEEN_TIMEOUT_S = 10.0
#: `run start --watch` prints this first (dagnats.cli.render.started_line).
_STARTED = re.compile(r"^Run (\S+) started", re.MULTILINE)


async def client_waits(client: AsyncClient, runs: int, timeout_s: float, label: str
                       ) -> dict[str, Any]:
    """`runs` chain runs at once, each started then waited for through the public client."""

    async def one(name: str) -> tuple[bool, float]:
        t0 = time.perf_counter()
        run = await client.wait(await client.start(CHAIN, name), timeout=timeout_s)
        ok = run.status == "completed" and run.output == chain_output(name)
        return ok, time.perf_counter() - t0

    names = [f"{label}{n}" for n in range(runs)]
    t0 = time.perf_counter()
    results = await asyncio.gather(*(one(name) for name in names), return_exceptions=True)
    seconds = time.perf_counter() - t0
    samples = [r[1] for r in results if isinstance(r, tuple)]
    errors = Counter(type(r).__name__ for r in results if isinstance(r, BaseException))
    first_error = next((repr(r) for r in results if isinstance(r, BaseException)), None)
    completed = len(samples)
    steps = completed * CHAIN_STEPS
    return {
        "runs": runs, "completed": completed,
        "verified": sum(1 for r in results if isinstance(r, tuple) and r[0]),
        "errors": dict(errors), "first_error": first_error,
        "steps": steps, "seconds": round(seconds, 3),
        "runs_per_s": round(completed / seconds, 1) if completed else 0.0,
        "steps_per_s": round(steps / seconds, 1) if completed else 0.0,
        "per_run": summary_ms(samples),
    }


@dataclass(frozen=True)
class Watch:
    """How one `run start --watch` process ended."""

    name: str
    exit_code: int | None  # None: killed at the workload's deadline, or never started
    outcome: str  # its exit code, "killed" or "not started" (as the report counts them)
    seconds: float
    run_id: str | None
    stderr: str


async def cli_watches(url: str, tracker: Tracker, processes: int, timeout_s: float,
                      label: str) -> dict[str, Any]:
    """`processes` `run start --watch` CLI processes at once; how long until all exited."""
    env = {**os.environ, "DAGNATS_NATS_URL": url}
    env.pop("DAGNATS_DEBUG", None)
    names = [f"{label}{n}" for n in range(processes)]
    deadline = time.perf_counter() + timeout_s
    cpu0 = _children_cpu_s()
    t0 = time.perf_counter()
    watches = await asyncio.gather(*(_watch(name, env, deadline) for name in names))
    seconds = time.perf_counter() - t0
    cpu_s = _children_cpu_s() - cpu0
    run_ids = [w.run_id for w in watches if w.run_id is not None]
    try:
        await tracker.wait(run_ids, SEEN_TIMEOUT_S)
    except TimeoutError:
        pass  # those runs count as not verified
    endings = [tracker.ended.get(w.run_id) if w.run_id else None for w in watches]
    verified = sum(1 for w, e in zip(watches, endings, strict=True)
                   if e is not None and e.status == "completed"
                   and e.output == chain_output(w.name))
    completed = sum(1 for e in endings if e is not None and e.status == "completed")
    codes = Counter(w.outcome for w in watches)
    failed = [w for w in watches if w.exit_code != 0]
    outputs = {e.output for e in tracker.ended.values() if e.status == "completed"}
    return {
        "processes": processes, "exit_codes": dict(sorted(codes.items())),
        "all_exited_zero": not failed, "failed": len(failed),
        "failures": [{"name": w.name, "exit_code": w.exit_code, "run_id": w.run_id,
                      "run_completed_anyway": chain_output(w.name) in outputs,
                      "stderr": w.stderr[-STDERR_TAIL:]} for w in failed[:FAILURES_SHOWN]],
        "verified": verified, "steps": completed * CHAIN_STEPS,
        "seconds": round(seconds, 3), "per_process": summary_ms([w.seconds for w in watches]),
        "children_cpu_s": round(cpu_s, 2),
        "cpu_s_per_process": round(cpu_s / processes, 3) if processes else 0.0,
    }


async def _watch(name: str, env: dict[str, str], deadline: float) -> Watch:
    """One `run start --watch` process, killed if it has not exited by `deadline`."""
    argv = self_command("run", "start", CHAIN, json.dumps(name), "--watch")
    t0 = time.perf_counter()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
    except OSError as exc:  # such as too many processes: a failure to report, not a crash
        return Watch(name, None, "not started", time.perf_counter() - t0, None,
                     f"could not start {argv[0]}: {exc}")
    killed = False
    try:
        try:
            out, err = await asyncio.wait_for(proc.communicate(),
                                              max(0.0, deadline - time.perf_counter()))
        except TimeoutError:
            killed = True
            proc.kill()
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:  # cancelled: never leave a process behind
            proc.kill()
            await proc.wait()
    seconds = time.perf_counter() - t0
    found = _STARTED.search(out.decode(errors="replace"))
    code = None if killed else proc.returncode
    return Watch(name, code, "killed" if code is None else str(code), seconds,
                 found.group(1) if found else None, err.decode(errors="replace"))


def _children_cpu_s() -> float:
    """User + system CPU seconds of this process's exited and reaped children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
