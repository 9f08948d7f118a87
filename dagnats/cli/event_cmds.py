"""`dagnats event publish TYPE 'JSON'`: an event for the steps that wait for one."""

from __future__ import annotations

import click

from dagnats.cli.common import echo_json, json_option, nats_url_option, with_client
from dagnats.cli.inputs import parse_input
from dagnats.client import AsyncClient


@click.group()
def event() -> None:
    """Publish events that wait_for_event steps wait for."""


@event.command()
@click.argument("event_type", metavar="TYPE")
@click.argument("data", required=False)
@click.option("--id", "event_id", metavar="ID",
              help="A unique id: publishing the same id again within 10 minutes is a no-op.")
@nats_url_option
@json_option
def publish(event_type: str, data: str | None, event_id: str | None, nats_url: str | None,
            as_json: bool) -> None:
    """Publish an event of TYPE (such as payment.received) with DATA (any JSON value; @FILE
    reads it from a file, - from standard input).

    Every step waiting for TYPE whose match fits DATA completes with DATA, including steps
    that start waiting up to 10 minutes later. Any NATS client can do the same by
    publishing DATA on the subject event.TYPE.
    """
    payload = parse_input(data, "DATA")

    async def go(client: AsyncClient) -> int:
        return await client.publish_event(event_type, payload, event_id=event_id)

    seq = with_client(nats_url, go)
    if as_json:
        echo_json({"type": event_type, "seq": seq})
    else:
        click.echo(f"Published event {event_type} (seq {seq})")
