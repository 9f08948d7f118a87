"""A crash-test worker: `slow` (sync, so in a thread) holds its task until a file appears.

The test creates the release file after it has killed whatever it wanted to kill, so the
step is provably in flight during the kill, with no timing guesses.
"""

import os
import pathlib
import time

from dagnats import worker

w = worker.Worker()
RELEASE = pathlib.Path(os.environ["SLOW_RELEASE_FILE"])
MARKS = pathlib.Path(os.environ["SLOW_MARKS_DIR"])


@w.task("slow")
def slow(ctx: worker.TaskContext, value: str) -> str:
    """Note that this attempt began (with this worker's pid), wait for the release file, then
    note that it ended (a `done.` mark)."""
    (MARKS / f"{ctx.run_id}.{ctx.step_id}.{ctx.attempt}.{os.getpid()}").touch()
    while not RELEASE.exists():  # the file is the test's signal; the loop only waits for it
        time.sleep(0.05)
    (MARKS / f"done.{ctx.run_id}.{ctx.step_id}.{ctx.attempt}.{os.getpid()}").touch()
    return value


@w.task("echo")
def echo(ctx: worker.TaskContext, value: str) -> str:
    """Return the input unchanged."""
    return value


if __name__ == "__main__":
    w.run()
