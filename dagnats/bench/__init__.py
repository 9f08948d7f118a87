"""`dagnats bench`: dagnats measured against the physical limit of NATS on the same machine.

    report = asyncio.run(run_bench(full()))      # or quick(), smoke()
    print(render(report))

It starts its own nats-server (temporary store, free ports), API, engine and workers as
subprocesses, measures raw JetStream operations as a baseline, then sequential latency, a
concurrent burst, fan-out, the operations each step costs, CPU and memory per process, and
the same figures again after many runs in history. See bench/README.md.
"""

from dagnats.bench.config import BenchConfig, full, quick, smoke
from dagnats.bench.report import render
from dagnats.bench.runner import run_bench

__all__ = ["BenchConfig", "full", "quick", "render", "run_bench", "smoke"]
