"""The README and the docs, run top to bottom: every block marked runnable runs, as a reader
runs it, against a real `bin/dagnats serve` started as the doc says, so a doc that drifts
from the program fails here.

Mark a fenced block with `<!-- run -->` on the line before it (`<!-- run: background -->` for
a serve or a worker, `<!-- run: save FILE -->` for a file a later command uses); in a block,
`$ ` lines (or, without them, every line) are commands, the lines under each its output
(`# ` comments in a plain block), `(exit N)` its exit status. The full convention is in
tests/e2e/readme_blocks.py. One test per block, in order; each doc has its own serve,
HOME and port, stopped when its last block has run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.readme_blocks import DOCS, Block, DocSession, read_blocks

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
