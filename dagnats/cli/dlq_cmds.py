"""`dagnats dlq ...`: list, replay and discard dead letters (steps that failed for good)."""

from __future__ import annotations

import click

from dagnats.cli.common import echo_json, echo_lines, json_option, nats_url_option, with_client
from dagnats.cli.render import dead_letters_table
from dagnats.errors import InvalidInput

RUN_OPTION_HELP = "A run id (or a unique prefix of 8+ characters)."


@click.group()
def dlq() -> None:
    """List, replay and discard dead letters (failed steps, unreadable messages).

    A step that fails for good (retries exhausted, or not retryable) is kept as a dead
    letter with its input and error for 30 days. A message nobody can read (on a run's
    history, a task queue, the timers or the events) is kept raw beside them, listed with
    its cause: it can be discarded, not replayed.
    """


def parse_seq(text: str) -> int:
    """A dead letter's sequence number from the command line (one line when it is not one)."""
    try:
        seq = int(text)
    except ValueError:
        seq = 0
    if seq < 1:
        raise InvalidInput(f"{text!r} is not a dead letter's SEQ (a positive number); "
                           "see `dagnats dlq list`")
    return seq


@dlq.command("list")
@click.option("--run", "run_id", metavar="ID", help=f"Only one run's. {RUN_OPTION_HELP}")
@nats_url_option
@json_option
def list_(run_id: str | None, nats_url: str | None, as_json: bool) -> None:
    """List dead letters, oldest first: failed steps and unreadable messages, with why."""
    entries = with_client(nats_url, lambda client: client.dead_letters(run_id))
    if as_json:
        echo_json([entry.model_dump(mode="json") for entry in entries])
    else:
        echo_lines(dead_letters_table(entries))


@dlq.command()
@click.argument("seq", required=False)
@click.option("--run", "run_id", metavar="ID",
              help=f"Replay every dead letter of this run. {RUN_OPTION_HELP}")
@nats_url_option
@json_option
def replay(seq: str | None, run_id: str | None, nats_url: str | None, as_json: bool) -> None:
    """Revive the run of dead letter SEQ (or of every dead letter of --run ID).

    The run goes back to running, re-runs the failed step with a fresh retry budget and can
    complete; the replayed dead letters are removed. A run that is not failed or cancelled
    is refused, and its dead letters are kept.
    """
    if (seq is None) == (run_id is None):
        raise InvalidInput("give a dead letter's SEQ or --run ID, not both; "
                           "see `dagnats dlq list`")
    number = parse_seq(seq) if seq is not None else None
    outcome = with_client(nats_url, lambda client: client.replay(number, run_id=run_id))
    if as_json:
        echo_json(outcome.model_dump(mode="json"))
        return
    shown = ", ".join(str(s) for s in outcome.replayed)
    noun = "dead letter" if len(outcome.replayed) == 1 else "dead letters"
    click.echo(f"Replayed {noun} {shown}: run {outcome.run_id} resumed")


@dlq.command()
@click.argument("seq")
@nats_url_option
@json_option
def discard(seq: str, nats_url: str | None, as_json: bool) -> None:
    """Remove dead letter SEQ without replaying it."""
    number = parse_seq(seq)
    with_client(nats_url, lambda client: client.discard(number))
    if as_json:
        echo_json({"discarded": number})
    else:
        click.echo(f"Discarded dead letter {number}")
