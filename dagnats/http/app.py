"""The HTTP server: the Starlette app (API routes, health, OpenAPI, docs, console, static
files) and `run_http`, which serves it with uvicorn on a socket of its own.

Every answer to /api/v1 is JSON or problem details; nothing a client sends gets a 500 (an
unexpected failure does, logged with its traceback, and is a bug to fix).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mimetypes
import os
import socket
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Any

import nats.errors
import pydantic_core
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from dagnats import jetstream, names, strict_json
from dagnats.api.context import parse_request
from dagnats.client import AsyncClient
from dagnats.connection import connect, redact, resolve_url
from dagnats.errors import DagnatsError, InvalidInput, PortInUse, ServerUnavailable
from dagnats.http import api
from dagnats.http.problems import HttpError, problem_response
from dagnats.http.security import Tokens, authorize

log = logging.getLogger("dagnats.http")

DEFAULT_PORT = 8422
#: The largest request body read (a run input may be up to 32 MB).
MAX_BODY_BYTES = 40 * 1024 * 1024
#: How long open streams get to finish when the server stops.
GRACEFUL_STOP_S = 2.0
#: How long /readyz waits for each component's answer.
READY_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class HttpState:
    """What every request works with: the client and the tokens."""

    client: AsyncClient
    tokens: Tokens
    version: str


def api_endpoint(route: api.Route, state: HttpState) -> Callable[[Request], Awaitable[Response]]:
    """The Starlette endpoint of one API route: authorize, parse, call, answer."""
    async def endpoint(request: Request) -> Response:
        try:
            authorize(request, state.tokens)
            call = api.Call(state.client, request, dict(request.path_params))
            if route.query is not None:
                call.query = parse_request(route.query, route.name, dict(request.query_params))
            if route.body is not None:
                call.body = await _body(request, route)
            result = await route.handler(call)
        except DagnatsError as exc:
            return problem_response(exc, request.url.path)
        except Exception as exc:
            return problem_response(unexpected(route.name, exc), request.url.path)
        if isinstance(result, Response):
            return result
        return JSONResponse(pydantic_core.to_jsonable_python(result), status_code=route.status)
    return endpoint


def unexpected(where: str, exc: Exception) -> DagnatsError:
    """An exception nobody expected, logged, as a one-line error (a 500)."""
    if isinstance(exc, nats.errors.Error | TimeoutError):
        return ServerUnavailable(f"NATS failed on {where}: {type(exc).__name__}: {exc}")
    log.exception("%s failed", where)
    return DagnatsError(f"the HTTP API failed on {where}: {type(exc).__name__}; see the http log")


async def _body(request: Request, route: api.Route) -> Any:
    """The request's JSON body, checked against the route's model (None when absent and
    optional)."""
    data = await request.body()
    if len(data) > MAX_BODY_BYTES:
        raise HttpError(413, "PayloadTooLarge", f"the body is {len(data)} bytes; the limit is "
                        f"{MAX_BODY_BYTES}")
    if not data.strip():
        if route.body_required:
            raise InvalidInput(f"{route.name} needs a JSON body")
        return None
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise HttpError(415, "UnsupportedMediaType", "the body must be JSON, sent with "
                        "Content-Type: application/json")
    try:
        body = strict_json.loads(data)
    except strict_json.JsonRefused as exc:
        raise InvalidInput(f"the body of {route.name} is not valid JSON ({exc})") from None
    if not route.parse_body:
        if not isinstance(body, dict):
            raise InvalidInput(f"the body of {route.name} must be a JSON object")
        return body
    assert route.body is not None
    return parse_request(route.body, route.name, body)


async def healthz(request: Request) -> Response:
    """Alive: this process answers (it says nothing of NATS or the engine: see /readyz)."""
    return JSONResponse({"status": "ok"})


def readyz(state: HttpState) -> Callable[[Request], Awaitable[Response]]:
    """Ready: NATS is connected, the API answers and engines hold every partition; 503 with
    which one is down otherwise. Workers are counted, not required."""
    async def endpoint(request: Request) -> Response:
        found = await components(state.client)
        down = [name for name, part in found.items() if not part["up"] and name != "workers"]
        ready = not down
        body = {"ready": ready, "down": down, "components": found}
        return JSONResponse(body, status_code=200 if ready else 503)
    return endpoint


async def components(client: AsyncClient) -> dict[str, dict[str, Any]]:
    """Each component's state: {"nats" | "api" | "engine" | "workers": {"up", "detail"}}."""
    from dagnats.engine import partitions

    nc = client._nc  # the client's own connection (no public accessor, by design)
    if not nc.is_connected:
        down = {"up": False, "detail": "not connected"}
        return {"nats": {"up": False, "detail": f"cannot reach NATS at {client.url}"},
                "api": down, "engine": down, "workers": down}
    found: dict[str, dict[str, Any]] = {"nats": {"up": True, "detail": client.url}}
    try:
        await nc.request(f"$SRV.PING.{names.API_SERVICE}", b"", timeout=READY_TIMEOUT_S)
        found["api"] = {"up": True, "detail": "answering"}
    except (nats.errors.Error, TimeoutError) as exc:
        found["api"] = {"up": False, "detail": f"no dagnats API answers ({type(exc).__name__})"}
    try:
        held = await asyncio.wait_for(partitions.holders(client._js), READY_TIMEOUT_S)
        free = names.HISTORY_PARTITIONS - len(held)
        found["engine"] = {"up": free == 0, "detail": (
            f"{len(set(held.values()))} live, holding {len(held)} of "
            f"{names.HISTORY_PARTITIONS} partitions")}
    except Exception as exc:
        found["engine"] = {"up": False, "detail": f"cannot read the partition leases "
                                                  f"({type(exc).__name__})"}
    try:
        workers = await asyncio.wait_for(client.workers(), READY_TIMEOUT_S)
        found["workers"] = {"up": bool(workers), "detail": f"{len(workers)} live"}
    except Exception as exc:
        found["workers"] = {"up": False, "detail": f"cannot list them ({type(exc).__name__})"}
    return found


def openapi_json(state: HttpState) -> Callable[[Request], Awaitable[Response]]:
    """GET /openapi.json."""
    from dagnats.http.openapi import document

    spec = document(state.version)

    async def endpoint(request: Request) -> Response:
        return JSONResponse(spec)
    return endpoint


async def static(request: Request) -> Response:
    """A file of the console (its stylesheet and script), from the package itself."""
    name = request.path_params["name"]
    folder = resources.files("dagnats.http") / "static"
    entry = folder / name
    if "/" in name or name.startswith(".") or not entry.is_file():
        return Response("not found", status_code=404)
    kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return Response(entry.read_bytes(), media_type=kind,
                    headers={"Cache-Control": "public, max-age=300"})


async def not_found(request: Request, exc: Exception) -> Response:
    """404 and 405 as problem details under /api (and the console's page elsewhere)."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 405:
        error = HttpError(405, "MethodNotAllowed", f"{request.method} is not allowed on "
                          f"{request.url.path}")
    else:
        error = HttpError(404, "NotFound", f"no such route: {request.url.path} (see /docs)")
    if request.url.path.startswith("/api/") or status == 405:
        return problem_response(error, request.url.path)
    from dagnats.http.console import error_page

    return error_page(error)


def build_app(state: HttpState) -> Starlette:
    """The whole HTTP app."""
    from dagnats.http import console, docs

    routes: list[BaseRoute] = [
        Route(api.PREFIX + route.path, api_endpoint(route, state), methods=[route.method],
              name=route.name)
        for route in api.ROUTES]
    routes += [
        Route("/healthz", healthz),
        Route("/readyz", readyz(state)),
        Route("/openapi.json", openapi_json(state)),
        Route("/docs", docs.endpoint(state.version)),
        Route("/static/{name}", static),
        *console.routes(state),
    ]
    return Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})


def bind(host: str, port: int, flag: str = "--http-port") -> socket.socket:
    """A listening socket on host:port (port 0: a free one); PortInUse, one line, when taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    if os.name == "posix":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise PortInUse(f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose "
                        f"another port with {flag}") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


class _Server(uvicorn.Server):
    """uvicorn, leaving the signals to dagnats (which stops it by `should_exit`), and saying
    when it listens."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.listening.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def url_of(host: str, port: int) -> str:
    """The console's URL."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


async def run_http(nats_url: str | None, host: str, port: int, tokens: Tokens,
                   stop: asyncio.Event, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve the HTTP API and console on host:port until `stop` is set. `on_ready` gets the
    console's URL once it listens."""
    from dagnats.server.about import dagnats_version

    sock = bind(host, port)
    nc = await connect(nats_url, name="dagnats-http", long_lived=True)
    try:
        client = AsyncClient(nc, redact(nc.connected_url.geturl() if nc.connected_url
                                        else resolve_url(nats_url)))
        state = HttpState(client, tokens, dagnats_version())
        config = uvicorn.Config(build_app(state), log_level="warning", access_log=False,
                                lifespan="off", timeout_graceful_shutdown=int(GRACEFUL_STOP_S),
                                server_header=False)
        server = _Server(config)
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        listening = asyncio.create_task(server.listening.wait())
        await asyncio.wait({serving, listening}, return_when=asyncio.FIRST_COMPLETED)
        listening.cancel()
        if serving.done():
            await serving  # its error
            raise ServerUnavailable("the HTTP server stopped while starting; see its log")
        url = url_of(host, sock.getsockname()[1])
        log.info("HTTP API and console on %s", url)
        if on_ready is not None:
            on_ready(url)
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        server.should_exit = True
        stopping.cancel()
        await serving
    finally:
        sock.close()
        await jetstream.close(nc)

