"""Plain HTTP calls for the tests of the HTTP API (urllib, as any script would make them)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Reply:
    """A response: its status, headers and body (parsed when it is JSON)."""

    status: int
    headers: dict[str, str]
    raw: bytes
    cookies: list[str] = field(default_factory=list)

    @property
    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.raw)

    @property
    def kind(self) -> str:
        """The media type, without parameters."""
        return self.headers.get("content-type", "").split(";")[0]


def call(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
         *, raw: bytes | None = None, timeout_s: float = 30.0) -> Reply:
    """One request; JSON `body` (or bytes `raw`, sent as they are)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None
                                        else None)
    sent = {"Content-Type": "application/json"} if body is not None else {}
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={**sent, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return _reply(response.status, response.headers, response.read())
    except urllib.error.HTTPError as exc:
        return _reply(exc.code, exc.headers, exc.read())


def _reply(status: int, headers: Any, data: bytes) -> Reply:
    return Reply(status, {k.lower(): v for k, v in headers.items()}, data,
                 headers.get_all("set-cookie") or [])


def sse(url: str, headers: dict[str, str] | None = None, timeout_s: float = 30.0
        ) -> list[dict[str, Any]]:
    """Every message of a Server-Sent Events stream until the server ends it: each as
    {"id", "event", "data"} (data parsed as JSON)."""
    request = urllib.request.Request(url, headers=headers or {})
    messages: list[dict[str, Any]] = []
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        current: dict[str, Any] = {}
        for line in response:
            text = line.decode().rstrip("\n")
            if not text:
                if "data" in current:
                    messages.append(current)
                current = {}
            elif not text.startswith(":"):
                name, _, value = text.partition(": ")
                current[name] = json.loads(value) if name == "data" else value
    return messages
