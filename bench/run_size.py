#!/usr/bin/env python3
"""How much storage one run takes: hello-pipeline runs through `dagnats serve`, measured.

    bench/run_size.py [--runs 200] [--input-bytes 5]

Starts `bin/dagnats serve` with the hello-pipeline worker on a scratch data dir, runs
--runs runs to completion (input: a name of --input-bytes characters), and prints, per run,
the bytes JetStream holds in each stream and bucket (stream info, before and after: its
`bytes` include each message's subject and headers), and the growth of the store directory
on disk. docs/operations.md quotes the result. Not part of the test suite.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bin"))
from bootstrap import exec_in_env

if os.environ.get("DAGNATS_BENCH_INNER") != "1":
    os.environ["DAGNATS_BENCH_INNER"] = "1"
    exec_in_env("runtime", [os.path.abspath(__file__), *sys.argv[1:]])

import argparse
import asyncio
import shutil
import subprocess
import tempfile

ROOT = Path(__file__).resolve().parents[1]
HELLO = ROOT / "examples" / "hello-pipeline"


def store_bytes(store: Path) -> int:
    return sum(f.stat().st_size for f in store.rglob("*") if f.is_file())


async def stream_bytes(url: str) -> dict[str, int]:
    from dagnats.connection import connect  # serve's login, from the registry

    nc = await connect(url)
    try:
        js = nc.jetstream()
        return {info.config.name: info.state.bytes for info in await js.streams_info()}
    finally:
        await nc.close()


async def measure(url: str, runs: int, name: str, store: Path) -> None:
    from dagnats.client import AsyncClient

    async with await AsyncClient.connect(url) as client:
        await client.register_workflow(str(HELLO / "pipeline.json"))
        warm = await client.start("hello-pipeline", name)  # first run: consumers, caches
        await client.wait(warm, timeout=60)
        await asyncio.sleep(1)  # let the warm-up run settle
        before, disk_before = await stream_bytes(url), store_bytes(store)
        ids = [await client.start("hello-pipeline", name) for _ in range(runs)]
        for run_id in ids:
            await client.wait(run_id, timeout=120)
        await asyncio.sleep(2)  # the engine's last snapshot writes and the workers' acks
        after, disk_after = await stream_bytes(url), store_bytes(store)
    print(f"{runs} hello-pipeline runs, input of {len(name)} characters; bytes per run:")
    total = 0
    for stream in sorted(after):
        grown = (after[stream] - before.get(stream, 0)) / runs
        total += after[stream] - before.get(stream, 0)
        if grown:
            print(f"  {stream:<24} {grown:10.0f}")
    print(f"  {'all streams and buckets':<24} {total / runs:10.0f}")
    print(f"  {'store dir on disk':<24} {(disk_after - disk_before) / runs:10.0f}"
          "  (file blocks are preallocated: noisy for few runs)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--input-bytes", type=int, default=5)
    args = parser.parse_args()
    from dagnats.server.procs import free_port

    data_dir = Path(tempfile.mkdtemp(prefix="dagnats-run-size-"))
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    serve = subprocess.Popen(
        [str(ROOT / "bin" / "dagnats"), "serve", "--data-dir", str(data_dir), "--nats-port",
         str(port), "--http-port", "0", "--worker", str(HELLO / "worker.py")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert serve.stdout is not None
        for line in serve.stdout:
            if "Press Ctrl-C" in line:
                break
        asyncio.run(measure(url, args.runs, "x" * args.input_bytes, data_dir / "store"))
    finally:
        serve.terminate()
        serve.wait(timeout=30)
        shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
