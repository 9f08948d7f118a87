"""Signals end to end, as a user sends them: `dagnats run signal` against `serve`, with a
worker whose steps wait for them (one async handler, one sync)."""

from __future__ import annotations

import json

from tests.e2e.harness import DAGNATS, ROOT, wait_until

SIGNAL_WORKER = ROOT / "tests" / "e2e" / "workers" / "signal_worker.py"
SIGNAL_JSON = ROOT / "tests" / "e2e" / "signal.json"


def test_signals_sent_with_the_cli_complete_the_run_with_their_values(start_serve) -> None:
    """...and the CLI refuses, in one line with exit 2, what cannot be sent."""
    serve = start_serve([SIGNAL_WORKER])
    assert serve.cli("workflow", "register", str(SIGNAL_JSON)).returncode == 0
    started = serve.cli("run", "start", "order-approval", '"order-7"')
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip()

    def status() -> dict:
        return json.loads(serve.cli("run", "status", run_id, "--json").stdout)

    sent = serve.cli("run", "signal", run_id[:8], "approve", '{"ok": true, "by": "ada"}')
    assert (sent.returncode, sent.stderr) == (0, "")
    assert sent.stdout == f"Signal approve sent to run {run_id}\n"
    # The sync step waits for `shipped` only once `approve` completed: sent while it waits.
    wait_until(lambda: (status()["steps"]["ship"].get("waiting_for") or {}).get("signal")
               == "shipped", 30, "the ship step to wait for its signal")
    assert "ship: waiting for signal shipped (until " in serve.cli("run", "status", run_id).stdout
    sent = serve.cli("run", "signal", run_id, "shipped", '"DHL-123"', "--json")
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout) == {"run_id": run_id, "name": "shipped"}

    done = wait_until(lambda: (lambda s: s if s["status"] == "completed" else None)(status()),
                      30, "the run to complete")
    assert done["steps"]["approve"]["output"] == {
        "order": "order-7", "decision": {"ok": True, "by": "ada"}}
    assert done["output"] == {"order": "order-7", "tracking": "DHL-123"}

    ended = serve.cli("run", "signal", run_id, "approve", "true")
    assert ended.returncode == 2
    assert ended.stderr == (f"error: run {run_id} has ended (completed): it takes no more"
                            f" signals; see `{DAGNATS} run status {run_id}`\n")  # as run

    assert_bad_signals_are_one_line_and_exit_2(serve)


def assert_bad_signals_are_one_line_and_exit_2(serve) -> None:
    """Bad JSON (refused before anything is sent) and an unknown run."""
    bad_json = serve.cli("run", "signal", "0123456789abcdef", "approve", "{ok: yes}")
    assert bad_json.returncode == 2 and bad_json.stdout == ""
    [line] = bad_json.stderr.splitlines()
    assert line.startswith("error: VALUE is not valid JSON (line 1, column 2: ")

    unknown = serve.cli("run", "signal", "0123456789abcdef", "approve", "true")
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert unknown.stderr == ("error: no run with id or prefix '0123456789abcdef';"
                              f" see `{DAGNATS} run list`\n")
