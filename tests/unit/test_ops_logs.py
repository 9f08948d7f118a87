"""Log files: rotation by size, choosing a component, tail, and follow across rotation."""

from __future__ import annotations

from pathlib import Path

import pytest

from dagnats.errors import InvalidInput
from dagnats.server.logs import follow, pick, rotate_if_large, tail


def test_rotation_keeps_a_bounded_number_of_old_files(tmp_path: Path) -> None:
    log = tmp_path / "engine.log"
    for n in range(5):
        log.write_text(f"run {n}\n" * 10)
        assert rotate_if_large(log, max_bytes=20, keep=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "engine.log.1", "engine.log.2", "engine.log.3"]
    assert (tmp_path / "engine.log.1").read_text().startswith("run 4")
    log.write_text("small\n")
    assert not rotate_if_large(log, max_bytes=20, keep=3)


def test_pick_names_the_components_there_are(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no logs in"):
        pick(tmp_path, None)
    (tmp_path / "logs").mkdir()
    for name in ("engine", "api"):
        (tmp_path / "logs" / f"{name}.log").write_text(f"{name} line\n")
    assert list(pick(tmp_path, None)) == ["api", "engine"]
    assert pick(tmp_path, "engine.log") == {"engine": tmp_path / "logs" / "engine.log"}
    with pytest.raises(InvalidInput, match="there are: api, engine"):
        pick(tmp_path, "worker")


def test_tail_and_follow(tmp_path: Path) -> None:
    log = tmp_path / "api.log"
    log.write_text("".join(f"line {n}\n" for n in range(50)))
    assert tail(log, 2) == ["line 48", "line 49"]
    seen: list[str] = []
    rounds = iter(range(4))

    def keep_going() -> bool:
        step = next(rounds, None)
        if step == 1:
            with log.open("a") as f:
                f.write("new 1\nhalf")  # a half-written line waits for its end
        if step == 2:
            log.rename(tmp_path / "api.log.1")  # rotated: the new file is read from its start
            log.write_text("after rotation\n")
        return step is not None

    follow({"api": log}, seen.append, keep_going)
    assert seen == ["new 1", "after rotation"]
