"""The names module builds and parses every subject the same way."""

from __future__ import annotations

import pytest

from dagnats import jetstream as names


@pytest.mark.parametrize("token", ["greet", "a-b_c", "X9", "0" * 32])
def test_subjects_round_trip(token: str) -> None:
    assert names.parse_history_subject(names.history_subject(token)) == token
    assert names.parse_task_subject(names.task_subject(token)) == token
    assert names.is_token(names.task_consumer(token))


@pytest.mark.parametrize("subject", ["history", "history.", "task.a.b", "other.x", "history.a b"])
def test_foreign_subjects_are_refused(subject: str) -> None:
    with pytest.raises(ValueError):
        names.parse_history_subject(subject)
    with pytest.raises(ValueError):
        names.parse_task_subject(subject)


def test_message_ids_differ_per_step_attempt_and_kind() -> None:
    ids = {
        names.task_msg_id("r", "s", 1), names.task_msg_id("r", "s", 2),
        names.step_event_msg_id("r", "s", 1, "queued"),
        names.step_event_msg_id("r", "s", 1, "completed"),
        names.run_event_msg_id("r", "completed"), names.started_msg_id("r"),
    }
    assert len(ids) == 6
