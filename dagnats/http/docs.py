"""GET /docs: the API reference as one server-rendered page, made from /openapi.json itself
(so it cannot drift), with no script and nothing from a CDN: it works on an air-gapped host.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from dagnats.http.html import e, layout
from dagnats.http.openapi import document, error_types

METHOD_ORDER = {"get": 0, "post": 1, "delete": 2}


def endpoint(version: str) -> Callable[[Request], Awaitable[Response]]:
    """The /docs endpoint (rendered once: the document does not change while serving)."""
    page = render(document(version))

    async def docs(request: Request) -> Response:
        return HTMLResponse(page)
    return docs


def render(spec: dict[str, Any]) -> str:
    """The reference page of an OpenAPI document."""
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            by_tag.setdefault(operation["tags"][0], []).append((method, path, operation))
    index = "".join(
        f'<li><a href="#{e(op["operationId"])}"><code>{method.upper()} {e(path)}</code></a> '
        f'{e(op["summary"])}</li>'
        for ops in by_tag.values() for method, path, op in ops)
    sections = "".join(
        f"<h2>{e(tag.capitalize())}</h2>" + "".join(_operation(m, p, op) for m, p, op in ops)
        for tag, ops in by_tag.items())
    errors = "".join(
        f'<tr id="{e(name)}"><td><code>{e(name)}</code></td><td>{status}</td>'
        f"<td>{e(text)}</td></tr>" for name, status, text in error_types())
    schemas = "".join(
        f'<details id="schema-{e(name)}"><summary><code>{e(name)}</code> '
        f'{e(schema.get("description", "").splitlines()[0] if schema.get("description") else "")}'
        f"</summary><pre>{e(json.dumps(schema, indent=2))}</pre></details>"
        for name, schema in spec["components"]["schemas"].items())
    body = f"""
<h1>HTTP API <small>v{e(spec["info"]["version"])}</small></h1>
<p>{e(spec["info"]["description"])} The machine-readable document is
<a href="/openapi.json">/openapi.json</a> (OpenAPI 3.1). With a token set, send
<code>Authorization: Bearer TOKEN</code>; a read-only token may only GET.</p>
<pre>curl -s -X POST localhost:8422/api/v1/runs -H 'Content-Type: application/json' \\
     -d '{{"workflow": "hello-pipeline", "input": "World"}}'
curl -sN 'localhost:8422/api/v1/runs/RUN_ID/events?follow=true'</pre>
<ul class="index">{index}</ul>
{sections}
<h2 id="errors">Errors</h2>
<p>Every error is <code>application/problem+json</code> (RFC 9457): <code>detail</code> is the
message the CLI prints, <code>error</code> its type.</p>
<table><tr><th>error</th><th>status</th><th>meaning</th></tr>{errors}</table>
<h2>Schemas</h2>{schemas}
"""
    return layout("API reference", body, active="docs")


def _operation(method: str, path: str, op: dict[str, Any]) -> str:
    params = "".join(
        f"<tr><td><code>{e(p['name'])}</code></td><td>{e(p['in'])}</td>"
        f"<td>{'yes' if p.get('required') else ''}</td><td>{_type(p.get('schema', {}))}"
        f"{' — ' + e(p['description']) if p.get('description') else ''}</td></tr>"
        for p in op.get("parameters", []))
    table = (f"<table><tr><th>parameter</th><th>in</th><th>required</th><th>type</th></tr>"
             f"{params}</table>") if params else ""
    body = ""
    if "requestBody" in op:
        schema = op["requestBody"]["content"]["application/json"]["schema"]
        body = f"<p>Body (JSON): {_type(schema)}</p>"
    replies = ", ".join(
        f"{code} {_type(reply['content'].get('application/json', {}).get('schema', {}))}"
        if code.startswith("2") else code
        for code, reply in op["responses"].items())
    return (f'<section class="op" id="{e(op["operationId"])}"><h3><span class="method '
            f'm-{method}">{method.upper()}</span> <code>{e(path)}</code></h3>'
            f"<p>{e(op['summary'])}</p>{table}{body}<p class=\"muted\">Answers: {replies}</p>"
            "</section>")


def _type(schema: dict[str, Any]) -> str:
    """A schema in a few words, linking to the named ones."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f'<a href="#schema-{e(name)}">{e(name)}</a>'
    if schema.get("type") == "array":
        return f"list of {_type(schema.get('items', {}))}"
    if "anyOf" in schema:
        return " or ".join(_type(part) for part in schema["anyOf"])
    if "enum" in schema:
        return " | ".join(e(str(value)) for value in schema["enum"])
    return e(str(schema.get("type", "any JSON")))
