"""The thumbnails worker: a map step that makes a thumbnail of each photo in an album.

    bin/dagnats serve --worker examples/thumbnails/worker.py
    bin/dagnats workflow register examples/thumbnails/workflow.json
    bin/dagnats run start thumbnails '{"album": "summer", "photos": 40}' --watch

`list-photos` returns the album's photos as an array; the `map` step `thumbnail` runs
`resize` once per photo, 8 at a time, each photo retried alone (photo 7 fails on its first
attempt, as a flaky network would); `publish` gets the thumbnails in the album's order.
`bin/dagnats run status RUN` shows `thumbnail: running 12/40` while it runs.
docs/step-types.md describes the map step.
"""

import time

from pydantic import BaseModel

from dagnats import worker

w = worker.Worker()  # DAGNATS_NATS_URL, else the running local serve, else :4222


class Album(BaseModel):
    """Which album, and how many photos it has."""

    album: str
    photos: int = 10
    work_s: float = 0.05
    """How long one resize takes (the handler's own work)."""


@w.task("list-photos")
def list_photos(ctx: worker.TaskContext, album: Album) -> list[dict]:
    """The photos to resize: one item each, which the map step runs an instance for."""
    return [{"album": album.album, "photo": n, "work_s": album.work_s}
            for n in range(album.photos)]


@w.task("resize")
def resize(ctx: worker.TaskContext, photo: dict) -> str:
    """One photo's thumbnail (photo 7 fails once: the map retries it alone)."""
    if photo["photo"] == 7 and ctx.attempt == 1:
        raise ConnectionError("the photo store timed out")
    time.sleep(photo["work_s"])  # the resize itself
    return f"{photo['album']}/thumbs/{photo['photo']}.jpg"


@w.task("publish")
def publish(ctx: worker.TaskContext, thumbnails: list[str]) -> dict:
    """The album page, with its thumbnails in order."""
    return {"count": len(thumbnails), "first": thumbnails[0] if thumbnails else None,
            "last": thumbnails[-1] if thumbnails else None}


if __name__ == "__main__":
    w.run()
