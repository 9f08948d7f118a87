"""The OpenAPI 3.1 document of /api/v1, built from the route table (api.ROUTES) and the
pydantic models the client returns: there is no second, hand-written copy to drift."""

from __future__ import annotations

import re
from typing import Any, get_args, get_origin

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from dagnats.http.api import PREFIX, ROUTES, Route
from dagnats.http.problems import MEDIA_TYPE, STATUS, Problem, title

REF = "#/components/schemas/{model}"
PARAM = re.compile(r"\{(\w+)(?::(\w+))?\}")
#: What each error status means, for the responses every route lists.
ERROR_TEXT = {
    401: "No valid token (when the server has one set)",
    403: "A read-only token, or a cross-site browser request, asking to change something",
    404: "No such run, workflow or dead letter",
    409: "Not possible in the run's or step's present state",
    413: "A value over the payload limit",
    415: "A body that is not sent as application/json",
    422: "Invalid input or definition",
    503: "NATS, or the dagnats API behind it, cannot be reached",
}

#: One Server-Sent Events message (OpenAPI 3.1 has no itemSchema: `schema` describes each
#: message, as tools such as schemathesis read it): `data` is the event as JSON.
SSE_MESSAGE: dict[str, Any] = {
    "type": "object",
    "description": "One message: `id` is the history sequence, `event` the event type, "
                   "`data` the event as JSON (the last message of a stream that fails midway "
                   "is `event: error` with {\"error\", \"detail\"})",
    "properties": {
        "id": {"type": "string"},
        "event": {"type": "string"},
        "data": {"type": "string", "contentMediaType": "application/json"},
        "retry": {"type": "integer", "minimum": 0},
    },
    "required": ["data"],
}


def openapi_path(path: str) -> str:
    """A route's path as OpenAPI writes it: /dead-letters/{seq:int} -> /dead-letters/{seq}."""
    return PREFIX + PARAM.sub(lambda m: "{" + m.group(1) + "}", path)


def _models(routes: list[Route]) -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    found: list[tuple[type[BaseModel], JsonSchemaMode]] = [(Problem, "serialization")]
    for route in routes:
        for model in _model_types(route.response):
            found.append((model, "serialization"))
        for given in (route.body, route.query):
            if given is not None:
                found.append((given, "validation"))
    return list(dict.fromkeys(found))


def _model_types(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in _model_types(arg)]


def document(version: str) -> dict[str, Any]:
    """The OpenAPI document, for dagnats `version`."""
    keys, defs = models_json_schema(_models(ROUTES), ref_template=REF)

    def ref(annotation: Any, mode: JsonSchemaMode = "serialization") -> dict[str, Any]:
        if get_origin(annotation) is list:
            return {"type": "array", "items": ref(get_args(annotation)[0], mode)}
        return dict(keys[(annotation, mode)])

    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(openapi_path(route.path), {})[route.method.lower()] = _operation(
            route, ref, defs.get("$defs", {}))
    return {
        "openapi": "3.1.0",
        "info": {"title": "dagnats HTTP API", "version": version,
                 "description": "Register workflows, start runs and follow them. Errors are "
                                "RFC 9457 problem details; `error` is the dagnats error type "
                                "(see /docs#errors)."},
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "DAGNATS_TOKEN (or the read-only token)"},
                "session": {"type": "apiKey", "in": "cookie", "name": "dagnats_session",
                            "description": "The console's session, set by its login page"},
            },
        },
        "security": [{"bearer": []}, {"session": []}, {}],
    }


def _operation(route: Route, ref: Any, defs: dict[str, Any]) -> dict[str, Any]:
    ok_content: dict[str, Any] = {"application/json": {"schema": ref(route.response)}}
    if route.streams:
        ok_content["text/event-stream"] = {"schema": SSE_MESSAGE}
    operation: dict[str, Any] = {
        "operationId": route.name,
        "summary": route.summary,
        "tags": [route.tag],
        "parameters": _parameters(route, defs),
        "responses": {str(route.status): {"description": "Done", "content": ok_content},
                      **_errors(route)},
    }
    if route.body is not None:
        operation["requestBody"] = {
            "required": route.body_required,
            "content": {"application/json": {"schema": ref(route.body, "validation")}}}
    return operation


def _parameters(route: Route, defs: dict[str, Any]) -> list[dict[str, Any]]:
    params = [
        {"name": name, "in": "path", "required": True,
         "schema": {"type": "integer", "minimum": 0} if kind == "int" else
         {"type": "string", "minLength": 1}}
        for name, kind in PARAM.findall(route.path)]
    if route.query is not None:
        schema = defs[route.query.__name__]
        required = set(schema.get("required", []))
        for name, prop in schema["properties"].items():
            params.append({"name": name, "in": "query", "required": name in required,
                           "schema": prop})
    for name, text in route.headers.items():
        params.append({"name": name, "in": "header", "required": False,
                       "description": text, "schema": {"type": "string"}})
    return params


def _errors(route: Route) -> dict[str, Any]:
    statuses = [401, 404, 422, 503]
    if route.changes:
        statuses += [403, 409]
    if route.body is not None:
        statuses += [413, 415]
    problem = {MEDIA_TYPE: {"schema": {"$ref": REF.format(model="Problem")}}}
    return {str(code): {"description": ERROR_TEXT[code], "content": problem}
            for code in sorted(statuses)}


def error_types() -> list[tuple[str, int, str]]:
    """(type, status, title) of every error type a problem's `error` may name, for /docs."""
    listed = [(cls.__name__, status, (cls.__doc__ or "").strip().splitlines()[0])
              for cls, status in STATUS.items()]
    http = [("Unauthorized", 401, "No valid token"),
            ("ReadOnly", 403, "A read-only token asked to change something"),
            ("CrossSiteRefused", 403, "A browser request from another site"),
            ("CsrfRefused", 403, "A browser request without the console's CSRF token"),
            ("NotFound", 404, "No such route"),
            ("MethodNotAllowed", 405, "The route does not take this method"),
            ("UnsupportedMediaType", 415, "A body that is not JSON")]
    return sorted([*listed, *http], key=lambda item: (item[1], item[0]))


__all__ = ["document", "error_types", "openapi_path", "title"]
