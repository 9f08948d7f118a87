"""Publishing a task by hand, as an engine would: the step.queued event that carries it."""

from __future__ import annotations

from datetime import datetime, timezone

from nats.js import JetStreamContext

from dagnats import names
from dagnats.dag.events import Event, EventType
from dagnats.dag.tasks import TaskMessage
from dagnats.store import history


async def publish_task(js: JetStreamContext, task: TaskMessage, msg_id: str | None = None
                       ) -> int:
    """Store `task` on its run's task subject (the dedup id an engine would give it); its
    stream sequence."""
    return await history.append(js, task.as_event(datetime.now(timezone.utc)), msg_id or
                                names.step_event_msg_id(task.run_id, task.step_id,
                                                        task.attempt, "queued"))


async def reports(js: JetStreamContext, run_id: str) -> list[Event]:
    """What workers recorded of a run: its history without the tasks published to them."""
    return [e for e in await history.read(js, run_id) if e.type is not EventType.STEP_QUEUED]
