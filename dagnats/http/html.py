"""The console's HTML frame: escaping, the page layout with its navigation, and small
pieces several pages share (a status badge, a time, a JSON value). No template engine: each
page is a function that returns a string, and every piece of user text goes through `e`."""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from typing import Any

NAV = [("overview", "/", "Overview"), ("workflows", "/workflows", "Workflows"),
       ("runs", "/runs", "Runs"), ("dead-letters", "/dead-letters", "Dead letters"),
       ("workers", "/workers", "Workers"), ("docs", "/docs", "API")]
#: Values longer than this (as JSON) are shown collapsed.
COLLAPSE_CHARS = 200


def e(value: object) -> str:
    """Text escaped for HTML (quotes included)."""
    return html.escape(str(value), quote=True)


def layout(title: str, body: str, *, active: str = "", csrf: str = "",
           script: bool = False) -> str:
    """A whole page: head, navigation and `body`. `csrf` goes in a meta tag, where the
    console's script reads it for the requests that change something."""
    nav = "".join(f'<a href="{href}"{" class=on" if key == active else ""}>{label}</a>'
                  for key, href, label in NAV)
    tail = '<script src="/static/console.js" defer></script>' if script else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<meta name="csrf" content="{e(csrf)}">
<title>{e(title)} · dagnats</title>
<link rel="stylesheet" href="/static/console.css">{tail}</head>
<body><header><a class="brand" href="/">dagnats</a><nav>{nav}</nav></header>
<main>{body}</main></body></html>"""


def badge(status: str) -> str:
    """A run or step status as a coloured badge."""
    return f'<span class="badge st-{e(status)}">{e(status)}</span>'


def when(moment: datetime | None, now: datetime | None = None) -> str:
    """A time as "12s ago" (or "in 5m"), with the exact time in a tooltip."""
    if moment is None:
        return ""
    now = now or datetime.now(UTC)
    seconds = (now - moment).total_seconds()
    text = ago(abs(seconds)) + (" ago" if seconds >= 0 else " from now")
    return f'<time datetime="{moment.isoformat()}" title="{moment.isoformat()}">{text}</time>'


def ago(seconds: float) -> str:
    """A duration in the largest unit that fits: 850ms, 12s, 5m, 3h, 2d."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def json_value(value: Any) -> str:
    """A JSON value as preformatted text, collapsed behind its first characters when long."""
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    if len(text) <= COLLAPSE_CHARS:
        return f'<pre class="json">{e(text)}</pre>'
    flat = json.dumps(value, ensure_ascii=False, default=str)
    return (f'<details class="json"><summary>{e(flat[:80])}… ({len(text):,} chars)</summary>'
            f"<pre>{e(text)}</pre></details>")
