"""Ctrl-C during `run start` before the API has confirmed the start: the command cannot
know whether a run was started, so it says so and where to look, and exits 130 (not
click's bare `Aborted!`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from typing import Any

from dagnats import jetstream, names
from dagnats._client_sync import LoopThread
from dagnats.connection import connect


def test_ctrl_c_before_the_start_is_confirmed_says_a_run_may_exist(nats_server: Any) -> None:
    arrived = threading.Event()
    loop = LoopThread()
    nc = loop.run(connect(nats_server.url))

    async def silent_api() -> None:  # takes the start, never answers
        async def on_start(msg: Any) -> None:
            arrived.set()
        await nc.subscribe(names.api_subject("run.start"), cb=on_start)

    loop.run(silent_api())
    env = {**os.environ, "DAGNATS_NATS_URL": nats_server.url, "DAGNATS_REQUEST_TIMEOUT": "60"}
    proc = subprocess.Popen([sys.executable, "-m", "dagnats", "run", "start", "labels", "1",
                             "--watch"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert arrived.wait(30), "the start request never arrived"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        loop.run(jetstream.close(nc))
        loop.stop()
    assert proc.returncode == 130, (out, err)
    assert out == ""
    assert err.strip().splitlines() == [
        "Stopped before the start of labels was confirmed: a run may have started "
        "(see dagnats run list --workflow labels)"]
