"""The API served from a background thread with its own event loop, for tests and embedding.

    with ApiThread(nats_url):
        ...   # requests to dagnats.api.* are answered meanwhile
"""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType

from dagnats.api.service import run_api

START_TIMEOUT_S = 10.0


class ApiThread:
    """`run_api` in a daemon thread; `start()` returns once it is serving."""

    def __init__(self, nats_url: str) -> None:
        self.nats_url = nats_url
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="dagnats-api", daemon=True)

    def _main(self) -> None:
        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            await run_api(self.nats_url, self._stop, on_ready=self._ready.set)

        try:
            asyncio.run(serve())
        except BaseException as exc:  # handed to start()/stop() in the caller's thread
            self._error = exc
        finally:
            self._ready.set()

    def start(self, timeout_s: float = START_TIMEOUT_S) -> ApiThread:
        """Start serving; raise what run_api raised if it could not start."""
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise TimeoutError(f"the API did not start within {timeout_s}s")
        if self._error is not None:
            raise self._error
        return self

    def stop(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Stop serving and wait for the thread to end."""
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout_s)

    def __enter__(self) -> ApiThread:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
