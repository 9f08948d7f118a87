"""The HTTP API (`/api/v1`, OpenAPI at `/openapi.json`, docs at `/docs`) and the web console.

Both are clients of the NATS API (dagnats.client): a route calls the same client method as
the CLI command it mirrors, so the two never differ. `dagnats serve` runs it as its `http`
process; `dagnats http --nats-url` runs it against a NATS that serve does not run.

    app.py       the Starlette app and the uvicorn server that runs it
    api.py       the /api/v1 routes: one table, read by the router and by openapi.py
    problems.py  the error tree as HTTP statuses and RFC 9457 problem details
    security.py  tokens (full and read-only), the console's cookie, CSRF
    events.py    following a run as Server-Sent Events
    openapi.py   the OpenAPI 3.1 document, from the route table and the client's models
    console.py   the server-rendered console pages; draw.py draws DAGs and timelines
"""
