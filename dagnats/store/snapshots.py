"""Run snapshots in KV `workflow_runs`: a cache of each run's folded state.

The history is the truth; a snapshot only saves replaying it. Writes are compare-and-set
on the KV revision so two engines can never overwrite each other's progress.
"""

from __future__ import annotations

from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import APIError, KeyNotFoundError, KeyValueError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from dagnats import jetstream, names
from dagnats.dag.state import RunState


class SnapshotConflict(Exception):
    """Someone else wrote the snapshot since it was read: reload and try again."""


@dataclass(frozen=True)
class Snapshot:
    """A run state and the KV revision it was read at (0: not stored yet)."""

    run: RunState
    revision: int


class Snapshots:
    """Typed access to the `workflow_runs` bucket."""

    def __init__(self, js: JetStreamContext, kv: KeyValue) -> None:
        self.js = js
        self.kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext) -> Snapshots:
        """Bind to the provisioned bucket."""
        return cls(js, await jetstream.runs_bucket(js))

    async def get(self, run_id: str) -> Snapshot | None:
        """The stored snapshot of a run, or None."""
        try:
            entry = await self.kv.get(names.run_key(run_id))
        except KeyNotFoundError:
            return None
        if entry.value is None:
            return None
        return Snapshot(RunState.model_validate_json(entry.value), entry.revision or 0)

    async def put(self, run: RunState, revision: int) -> int:
        """Store `run` if the stored revision is still `revision` (0: must not exist yet).

        Returns the new revision; raises SnapshotConflict when someone else wrote first.
        """
        value = run.model_dump_json(exclude_defaults=True).encode()  # defaults: 4x smaller
        try:
            if revision == 0:  # nats-py's create also takes the place of a deleted key
                return await self.kv.create(names.run_key(run.run_id), value)
            # An update is one compare-and-set publish (the engine's hot path: our publisher).
            stored = await jetstream.publisher(self.js).publish(
                names.kv_subject(names.RUNS_BUCKET, names.run_key(run.run_id)), value,
                {js_api.Header.EXPECTED_LAST_SUBJECT_SEQUENCE: str(revision)})
            return stored.seq
        except (KeyWrongLastSequenceError, KeyValueError) as exc:  # from create; caught first,
            raise SnapshotConflict(f"run {run.run_id}: snapshot changed ({exc})") from exc
        except APIError as exc:  # as these are APIErrors without an err_code; from the update
            if exc.err_code not in jetstream.WRONG_LAST_SEQUENCE:
                raise
            raise SnapshotConflict(f"run {run.run_id}: snapshot changed ({exc})") from exc

    async def delete(self, run_id: str) -> None:
        """Remove a run's snapshot (it is rebuilt from history when next needed)."""
        await self.kv.delete(names.run_key(run_id))

    async def run_ids(self) -> list[str]:
        """Every run id that has (or had: deleted ones leave a marker) a snapshot.

        A scan, for listing and prefixes, never the event path. A snapshot rewritten during
        the scan (as a run's final one can be, right after the run ends) is not missed.
        """
        return await jetstream.bucket_keys(self.js, names.RUNS_BUCKET)

    async def all(self) -> list[RunState]:
        """Every stored run (a scan: for listing, never the event path)."""
        runs = []
        for run_id in await self.run_ids():
            snapshot = await self.get(run_id)
            if snapshot is not None:
                runs.append(snapshot.run)
        return runs
