"""`dagnats doctor`'s presence lines: how many engines hold the partitions of the runs (a
warning when some are held by none: their runs do not move), how many workers are live,
and a warning (not a failure) for each registered workflow whose tasks no live worker
serves, so a forgotten worker or a mistyped task name shows up before a run waits for it."""

from __future__ import annotations

from collections import Counter

from nats.aio.client import Client as NATS

from dagnats import names
from dagnats.dag.kinds import TaskStep
from dagnats.dag.model import WorkflowDefinition
from dagnats.engine import partitions
from dagnats.program import program_name
from dagnats.server.doctor import Check
from dagnats.store import presence
from dagnats.store.definitions import Definitions
from dagnats.unserved import START_HINT


async def check_engines(nc: NATS) -> Check:
    """Which engines hold the partitions now; a warning when some partition has none."""
    try:
        held = await partitions.holders(nc.jetstream())
    except Exception as exc:  # nats-py: no bucket yet, a timeout...
        return Check("skip", "engines", "cannot read the partition leases: "
                     f"{type(exc).__name__}: {exc}")
    shares = sorted(Counter(held.values()).values(), reverse=True)
    free = sorted(set(range(names.HISTORY_PARTITIONS)) - set(held))
    detail = (f"{len(shares)} live, holding {len(held)} of {names.HISTORY_PARTITIONS} "
              f"partitions" + (f" ({' + '.join(map(str, shares))})" if shares else ""))
    if not free:
        return Check("ok", "engines", detail)
    return Check("warn", "engines", f"{detail}; no engine holds {len(free)}: their runs do "
                 f"not move until one does (start `{program_name()} serve` or "
                 f"`{program_name()} engine`; a new engine takes them within seconds)")


async def check_presence(nc: NATS) -> list[Check]:
    """One line for the live workers, then one warning per workflow (its latest version)
    with task steps no live worker serves."""
    js = nc.jetstream()
    try:
        workers = await presence.live_workers(js)
        records = await (await Definitions.open(js)).all()
    except Exception as exc:  # nats-py: no stream or bucket yet, a timeout...
        return [Check("skip", "workers", f"cannot list the live workers: {exc or type(exc)}")]
    served = presence.served_tasks(workers)
    head = Check("ok", "workers", f"{len(workers)} live, serving "
                 + (", ".join(sorted(served)) if served else "no task"))
    warnings = []
    for record in records:
        definition = WorkflowDefinition.from_json(record.versions[record.latest].definition)
        missing = sorted({step.task for step in definition.steps
                          if isinstance(step, TaskStep) and step.task not in served})
        if missing:
            tasks = ", ".join(f"'{task}'" for task in missing)
            warnings.append(Check("warn", f"workflow {record.name}",
                                  f"no live worker serves task{'s' if len(missing) > 1 else ''}"
                                  f" {tasks} ({START_HINT})"))
    return [head, *warnings]
