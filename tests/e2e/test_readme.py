"""The README and the docs, run top to bottom: every block marked runnable runs, as a reader
runs it, against a real `bin/dagnats serve` started as the doc says, so a doc that drifts
from the program fails here.

Mark a fenced block with `<!-- run -->` on the line before it (`<!-- run: background -->`
for a serve or a worker, `<!-- run: save FILE -->` for a file a later command uses,
`<!-- run: same as FILE -->` for code shown from FILE). In a block, `$ ` lines (or, without
them, every line) are commands, the lines under each its output (`# ` comments in a plain
block), `(exit N)` its exit status. The full convention is in tests/e2e/readme_blocks.py.
One test per block, in order; each doc has its own serve, HOME and port, stopped when its
last block has run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.readme_blocks import DOCS, Block, Command, DocSession, parse_blocks, read_blocks

BLOCKS = [block for doc in DOCS for block in read_blocks(doc)]


class Sessions:
    """The doc being run; starting another doc stops the previous one's processes."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.current: DocSession | None = None

    def of(self, doc: str) -> DocSession:
        if self.current is None or self.current.doc != doc:
            self.close()
            self.current = DocSession(doc, self.scratch / doc.replace("/", "_"))
        return self.current

    def close(self) -> None:
        if self.current is not None:
            self.current.close()
            self.current = None


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sessions]:
    """The docs' sessions, one at a time; whatever runs in the background is stopped."""
    found = Sessions(tmp_path_factory.mktemp("readme"))
    try:
        yield found
    finally:
        found.close()


def test_every_doc_has_runnable_blocks() -> None:
    for doc in DOCS:
        assert any(block.kind == "run" for block in read_blocks(doc)), doc


@pytest.mark.parametrize("block", BLOCKS, ids=[block.name for block in BLOCKS])
def test_block(block: Block, sessions: Sessions) -> None:
    session = sessions.of(block.doc)
    session.run_through(block)
    if block == session.blocks[-1]:
        sessions.close()


# --- the convention itself, without a server -----------------------------------------------

DOC = '''Text.

<!-- run: background $ bin/dagnats serve -->
<!-- run -->
```sh
bin/dagnats run start w '"x"' --watch
# Run 3f9c... started
# (exit 1)

# just a comment
bin/dagnats run status 3f9c1b2a   # a trailing comment
```

```sh
never runs
```

<!-- run -->
```
$ bin/dagnats dlq list
SEQ  RUN ID
1    10d7aad073a042caaecf6ab58da05ac0  at 2026-11-25T18:03:45+00:00 (until ...)

$ false
(exit 1)
```
'''


def test_marked_blocks_are_read_in_both_styles() -> None:
    blocks = parse_blocks("doc.md", DOC)
    assert [(b.kind, b.line) for b in blocks] == [("background", 3), ("run", 5), ("run", 19)]
    assert [c.text for c in blocks[0].commands()] == ["bin/dagnats serve"]
    started, status = blocks[1].commands()
    assert (started.shown, started.exit) == (["Run 3f9c... started"], 1)
    assert status.shown == [] and status.exit == 0  # a comment after a blank line is prose
    listed, failing = blocks[2].commands()
    assert listed.shown[0] == "SEQ  RUN ID" and (failing.text, failing.exit) == ("false", 1)


def test_shown_output_matches_real_ids_and_later_commands_use_them(tmp_path: Path) -> None:
    session = DocSession.__new__(DocSession)  # only its matching and rewriting
    session.ids, session.last_run, session.saved, session.redirects = [], "", {}, {}
    session.port = 4333
    real = "8d798880e76fcf9e80a67d92118f7704"
    started = Command("bin/dagnats run start w", ["Run 3f9c... started"])
    assert session._check(started, 0, f"Run {real} started\n") is None
    assert session._rewrite("bin/dagnats run status 3f9c1b2a") == \
        "bin/dagnats run status 8d798880"
    assert session._check(started, 1, f"Run {real} started\n") == "exited 1, the doc says 0"
    assert "printed no line" in session._check(started, 0, "Run 8d79 started\n")
    listed = Command("dlq list", ["1    10d7aad073a042caaecf6ab58da05ac0  at "
                                  "2026-11-25T18:03:45+00:00 (until ...)"])
    assert session._check(listed, 0, f"1 {real} at 2026-12-03T19:00:42.5+00:00 (until x y)"
                          ) is None
    assert session._rewrite("bin/dagnats serve --worker w.py") == \
        "bin/dagnats serve --nats-port 4333 --worker w.py"


def test_a_mark_must_come_before_a_fenced_block() -> None:
    with pytest.raises(ValueError, match="just before a fenced block"):
        parse_blocks("doc.md", "<!-- run -->\nplain text\n")
    with pytest.raises(ValueError, match="unknown run mark"):
        parse_blocks("doc.md", "<!-- run: sometimes -->\n```\n$ true\n```\n")


def test_shown_code_is_compared_without_docstrings_and_comments() -> None:
    from tests.e2e.readme_blocks import _code

    file = '"""Module."""\n\ndef f(x):\n    """Doc."""\n    return x  # note\n'
    assert _code("def f(x):\n    return x\n") == _code(file)
    assert _code("def f(x):\n    return -x\n") != _code(file)
