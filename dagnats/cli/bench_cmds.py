"""`dagnats bench`: start a private dagnats, measure it against raw JetStream, print a report."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import click

from dagnats.cli.common import quiet_logging


@click.command()
@click.option("--quick", "preset", flag_value="quick", help="A smaller run (under 60 s).")
@click.option("--smoke", "preset", flag_value="smoke", hidden=True,
              help="Tiny sizes, for the test suite.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the JSON report to this file.")
@click.option("--profile", "profile_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Profile the engine, API and worker with py-spy (a dev dependency) during "
                   "an extra latency pass and burst; write the raw profiles here.")
@click.option("--workers", type=click.IntRange(1, 16), default=None,
              help="Worker processes [default: 1].")
@click.option("--concurrency", type=click.IntRange(1, 10_000), default=None,
              help="Tasks each worker runs at once [default: 64].")
def bench(preset: str | None, as_json: bool, out: Path | None, profile_dir: Path | None,
          workers: int | None, concurrency: int | None) -> None:
    """Benchmark dagnats on this machine (its own NATS, API, engine and worker).

    The full run takes about 2.5 minutes on 2 cores (under 5); --quick under one. Progress
    goes to stderr, the report to stdout (a table, or JSON with --json).
    """
    from dagnats.bench import config as presets
    from dagnats.bench import render, run_bench

    if profile_dir is not None:
        from dagnats.bench.profiling import py_spy

        if py_spy() is None:
            raise click.UsageError("--profile needs py-spy: pip install -r requirements/dev.txt")
    quiet_logging()
    logging.getLogger("nats").setLevel(logging.CRITICAL)
    cfg = presets.PRESETS[preset or "full"]()
    if workers is not None:
        cfg = cfg.with_changes(worker_processes=workers)
    if concurrency is not None:
        cfg = cfg.with_changes(worker_concurrency=concurrency)
    report = asyncio.run(run_bench(cfg, profile_dir=profile_dir,
                                   log=lambda line: click.echo(f"bench: {line}", err=True)))
    text = json.dumps(report, indent=2)
    if out is not None:
        out.write_text(text + "\n")
    click.echo(text if as_json else render(report))
