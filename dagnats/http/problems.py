"""The error tree (dagnats.errors) as HTTP: one status per error type, and the RFC 9457
problem details body every error answers with.

    {"type": "/docs#RunNotFound", "title": "Run not found", "status": 404,
     "detail": "no run with id or prefix 'abc12345'; ...", "error": "RunNotFound",
     "instance": "/api/v1/runs/abc12345"}

`error` and `detail` are the type and message the CLI prints for the same failure.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel
from starlette.responses import JSONResponse

from dagnats.errors import (
    Contended,
    DagnatsError,
    DeadLetterNotFound,
    InvalidDefinition,
    InvalidInput,
    NotWaiting,
    PayloadTooLarge,
    RunEnded,
    RunNotEnded,
    RunNotFound,
    RunNotResumable,
    ServerUnavailable,
    WorkflowNotFound,
)

MEDIA_TYPE = "application/problem+json"

#: The status of each error type; a subclass takes its nearest listed base's.
STATUS: dict[type[DagnatsError], int] = {
    PayloadTooLarge: 413,
    InvalidDefinition: 422,
    InvalidInput: 422,
    WorkflowNotFound: 404,
    RunNotFound: 404,
    DeadLetterNotFound: 404,
    RunNotResumable: 409,
    NotWaiting: 409,
    RunEnded: 409,
    RunNotEnded: 409,
    Contended: 409,
    ServerUnavailable: 503,
    DagnatsError: 500,
}


class HttpError(DagnatsError):
    """An error of HTTP itself (no such route, a method a route does not take, no token...),
    with its status."""

    def __init__(self, status: int, error: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.headers = headers or {}


class Problem(BaseModel):
    """An RFC 9457 problem details body, with the dagnats error type in `error`."""

    type: str
    title: str
    status: int
    detail: str
    error: str
    instance: str | None = None


def status_of(error: DagnatsError) -> int:
    """The HTTP status of an error."""
    if isinstance(error, HttpError):
        return error.status
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_name(error: DagnatsError) -> str:
    """The error's type as the CLI and the NATS API name it (RunNotFound...)."""
    return error.error if isinstance(error, HttpError) else type(error).__name__


def title(name: str) -> str:
    """"RunNotFound" -> "Run not found"."""
    words = re.findall(r"[A-Z][a-z]*|[a-z]+|\d+", name) or [name]
    return " ".join([words[0], *(word.lower() for word in words[1:])])


def problem(error: DagnatsError, instance: str | None = None) -> dict[str, Any]:
    """The problem details of an error."""
    name = error_name(error)
    return Problem(type=f"/docs#{name}", title=title(name), status=status_of(error),
                   detail=error.message, error=name, instance=instance).model_dump()


def problem_response(error: DagnatsError, instance: str | None = None) -> JSONResponse:
    """An error as an `application/problem+json` response."""
    headers = error.headers if isinstance(error, HttpError) else {}
    return JSONResponse(problem(error, instance), status_code=status_of(error),
                        media_type=MEDIA_TYPE, headers=headers)
