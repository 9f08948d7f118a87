"""The console's plumbing: its routes, the wrapper every page goes through (who asks, the
CSRF cookie, errors as pages, `?part=live` fragments), and the login page that trades a
token for the session cookie. The pages themselves are in pages.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from dagnats.errors import DagnatsError
from dagnats.http import pages
from dagnats.http.draw import DAG_CSS
from dagnats.http.html import e, layout
from dagnats.http.problems import HttpError, error_name, problem_response, status_of
from dagnats.http.security import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    authorize,
    check_same_origin,
    new_csrf,
)

if TYPE_CHECKING:
    from dagnats.http.app import HttpState

#: The most of a login form read (a token is far shorter).
MAX_FORM_BYTES = 4096
#: How long the session cookie lasts, in seconds (a week).
SESSION_S = 7 * 24 * 3600


def routes(state: HttpState) -> list[Route]:
    """The console's routes."""
    return [
        Route("/", page(state, pages.overview)),
        Route("/workflows", page(state, pages.workflows)),
        Route("/workflows/{name}", page(state, pages.workflow)),
        Route("/runs", page(state, pages.runs)),
        Route("/runs/changes", changes(state)),
        Route("/runs/{run_id}", page(state, pages.run, live=pages.run_live)),
        Route("/dead-letters", page(state, pages.dead_letters)),
        Route("/workers", page(state, pages.workers)),
        Route("/login", login(state), methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
    ]


def page(state: HttpState, render: pages.Render, live: pages.Render | None = None
         ) -> Callable[[Request], Awaitable[Response]]:
    """The endpoint of a page: a caller without a valid token goes to the login page; an
    error is shown as a page with its status; `?part=live` answers the live part alone."""
    async def endpoint(request: Request) -> Response:
        try:
            caller = authorize(request, state.tokens)
        except HttpError as exc:
            if exc.status == 401:
                target = request.url.path + (f"?{request.url.query}" if request.url.query
                                             else "")
                return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
            return error_page(exc)
        view = pages.View(state.client, request, caller.role == "full", pages.now_utc())
        part = request.query_params.get("part")
        try:
            shown = await (live if part == "live" and live is not None else render)(view)
        except DagnatsError as exc:
            return error_page(exc)
        if part == "live":
            return HTMLResponse(shown.live if shown.live is not None else shown.body,
                                headers={"Cache-Control": "no-store"})
        csrf = request.cookies.get(CSRF_COOKIE) or new_csrf()
        body = shown.body + (f"<style>{DAG_CSS}</style>" if shown.drawings else "")
        response = HTMLResponse(layout(shown.title, body, active=shown.active, csrf=csrf,
                                       script=True), headers={"Cache-Control": "no-store"})
        if CSRF_COOKIE not in request.cookies:
            response.set_cookie(CSRF_COOKIE, csrf, max_age=SESSION_S, samesite="strict")
        return response
    return endpoint


def changes(state: HttpState) -> Callable[[Request], Awaitable[Response]]:
    """The stream the lists follow (events.changes_response), for a caller with a token."""
    from dagnats.http.events import changes_response

    async def endpoint(request: Request) -> Response:
        try:
            authorize(request, state.tokens)
        except HttpError as exc:
            return problem_response(exc, request.url.path)
        return await changes_response(state.client)
    return endpoint


def error_page(error: DagnatsError) -> HTMLResponse:
    """An error as a page, with its status."""
    name = error_name(error)
    body = (f'<h1>{e(name)}</h1><p class="err box">{e(error.message)}</p>'
            '<p><a href="/">Back to the overview</a></p>')
    return HTMLResponse(layout(name, body), status_code=status_of(error))


def login(state: HttpState) -> Callable[[Request], Awaitable[Response]]:
    """GET: the token form. POST: check the token, set the session cookie (HttpOnly,
    SameSite=Strict; it holds a value derived from the token, not the token) and go on."""
    async def endpoint(request: Request) -> Response:
        target = _local(request.query_params.get("next"))
        if not state.tokens.required:
            return RedirectResponse(target, status_code=303)
        if request.method == "GET":
            return _login_form(target)
        try:
            check_same_origin(request)
        except HttpError as exc:
            return error_page(exc)
        form = parse_qs((await request.body())[:MAX_FORM_BYTES].decode("utf-8", "replace"))
        given = (form.get("token") or [""])[0].strip()
        role = state.tokens.role_of_token(given) if given else None
        if role is None:
            return _login_form(target, "That token is not right.", 401)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(SESSION_COOKIE, state.tokens.session(role), max_age=SESSION_S,
                            httponly=True, samesite="strict")
        response.set_cookie(CSRF_COOKIE, new_csrf(), max_age=SESSION_S, samesite="strict")
        return response
    return endpoint


def _login_form(target: str, problem: str = "", status: int = 200) -> HTMLResponse:
    said = f'<p class="err" role=alert>{e(problem)}</p>' if problem else ""
    body = f"""<h1>Log in</h1>
<p>This dagnats needs a token: the one in <code>DAGNATS_TOKEN</code> (or
<code>--token-file</code>) of its <code>serve</code>, or a read-only one.</p>
<form method=post action="/login?next={e(quote(target))}" class=login>
<label for=token>Token</label>
<input id=token name=token type=password autocomplete=current-password required autofocus>
{said}<button type=submit>Log in</button></form>"""
    return HTMLResponse(layout("Log in", body), status_code=status)


def _local(target: str | None) -> str:
    """`target` when it is a path of this site, else "/" (no open redirect)."""
    if target and target.startswith("/") and not target.startswith("//") \
            and "\\" not in target:
        return target
    return "/"


async def logout(request: Request) -> Response:
    """Forget the session cookie."""
    try:
        check_same_origin(request)
    except HttpError as exc:
        return error_page(exc)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response
