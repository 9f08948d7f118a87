"""`serve --leafnode-remote URL`: the embedded nats-server joins a hub as a NATS leaf node.

A leaf node dials out to the hub (no inbound port) and bridges core NATS subjects over that
one connection. JetStream stays apart: the leaf's JetStream gets a domain of its own (this
host's name), so the serve's streams and runs stay on the laptop and never clash with the
hub's (dagnats addresses only its local JetStream). docs/deploy.md says what that gives.
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

from dagnats.errors import InvalidInput

#: The URL schemes nats-server accepts for a leaf node remote.
LEAF_SCHEMES = ("nats-leaf", "nats", "tls", "ws", "wss")


def check_remote(url: str) -> str:
    """The remote URL, stripped; InvalidInput (one line) when it is not a leaf node URL."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in LEAF_SCHEMES or not parts.hostname:
        raise InvalidInput(f"--leafnode-remote {url!r} is not a leaf node URL; give the hub's "
                           "leaf node port, such as nats-leaf://hub.example.com:7422")
    return url


def jetstream_domain(hostname: str) -> str:
    """The leaf's JetStream domain: the host's name, as one valid token."""
    token = re.sub(r"[^A-Za-z0-9_-]", "-", hostname.split(".")[0]).strip("-")
    return f"dagnats-{token or 'leaf'}"


def leafnodes_config(remote_url: str) -> str:
    """The nats-server `leafnodes` block that dials `remote_url` (credentials may be in it)."""
    return f"leafnodes {{\n  remotes: [ {{ url: {json.dumps(remote_url)} }} ]\n}}\n"
