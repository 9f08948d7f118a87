"""The web console: server-rendered pages (being built; the API is complete)."""

from __future__ import annotations

from typing import Any

from starlette.responses import HTMLResponse

from dagnats.http.html import e, layout
from dagnats.http.problems import HttpError


def routes(state: Any) -> list[Any]:
    """The console's routes."""
    return []


def error_page(error: HttpError) -> HTMLResponse:
    """An error as a page."""
    return HTMLResponse(layout("Not found", f"<h1>{e(error.message)}</h1>"),
                        status_code=error.status)
