"""The HTTP API and console with tokens set, against a real `serve`: no token -> 401, a
read-only token may read but not change (403), the console trades a token for an HttpOnly
SameSite=Strict cookie, and a browser request from another site, or without the CSRF
header, is refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import ROOT, Serve, free_port
from tests.e2e.http_calls import call

FULL = "full-token-0123456789abcdef"
READ = "read-token-0123456789abcdef"
PIPELINE = json.loads((ROOT / "examples" / "hello-pipeline" / "pipeline.json").read_text())


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A serve whose HTTP API has a full token (from a file) and a read-only one (from the
    environment), with the tutorial's workflow registered."""
    folder = tmp_path_factory.mktemp("tokens")
    token_file = folder / "token"
    token_file.write_text(FULL + "\n")
    port = free_port()
    serve = Serve(folder / "data", [], env={"DAGNATS_READ_TOKEN": READ},
                  args=["--http-port", str(port), "--token-file", str(token_file)])
    try:
        serve.wait_for_output("Press Ctrl-C to stop")
        url = f"http://127.0.0.1:{port}"
        assert call("POST", f"{url}/api/v1/workflows", PIPELINE, bearer(FULL)).status == 201
        yield url
    finally:
        serve.stop()


def bearer(token: str) -> dict[str, str]:
    """The Authorization header of a token."""
    return {"Authorization": f"Bearer {token}"}


def test_every_api_call_needs_a_token(base: str) -> None:
    missing = call("GET", f"{base}/api/v1/runs")
    assert missing.status == 401 and missing.json["error"] == "Unauthorized"
    assert missing.headers["www-authenticate"] == "Bearer"
    assert call("GET", f"{base}/api/v1/runs", headers=bearer("not-the-token-at-all")
                ).status == 401
    assert call("POST", f"{base}/api/v1/runs", {"workflow": "hello-pipeline"}).status == 401
    assert call("GET", f"{base}/healthz").status == 200  # probes need no token


def test_a_read_only_token_reads_everything_and_changes_nothing(base: str) -> None:
    assert call("GET", f"{base}/api/v1/runs", headers=bearer(READ)).status == 200
    assert call("GET", f"{base}/api/v1/workflows", headers=bearer(READ)).status == 200
    refused = call("POST", f"{base}/api/v1/runs", {"workflow": "hello-pipeline"},
                   bearer(READ))
    assert refused.status == 403 and refused.json["error"] == "ReadOnly"
    assert call("DELETE", f"{base}/api/v1/workflows/hello-pipeline", headers=bearer(READ)
                ).status == 403
    started = call("POST", f"{base}/api/v1/runs", {"workflow": "hello-pipeline"}, bearer(FULL))
    assert started.status == 201


def test_the_console_asks_for_the_token_once_and_keeps_it_in_a_strict_cookie(base: str
                                                                              ) -> None:
    page = call("GET", f"{base}/runs")
    assert page.status == 200 and "Log in" in page.raw.decode()  # redirected to the login
    wrong = call("POST", f"{base}/login?next=/runs", raw=b"token=wrong",
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert wrong.status == 401
    session = login(base, FULL)
    assert "HttpOnly" in session["set"] and "SameSite=strict" in session["set"]
    assert FULL not in session["set"]  # the cookie holds a value derived from the token
    shown = call("GET", f"{base}/runs", headers={"Cookie": session["cookie"]})
    assert shown.status == 200 and "<h1>Runs</h1>" in shown.raw.decode()


def login(base: str, token: str) -> dict[str, str]:
    """Log in through the console's form; the cookies it set, as a Cookie header."""
    import http.client

    connection = http.client.HTTPConnection(base.removeprefix("http://"), timeout=10)
    connection.request("POST", "/login?next=/runs", body=f"token={token}",
                       headers={"Content-Type": "application/x-www-form-urlencoded",
                                "Origin": base})
    reply = connection.getresponse()
    assert reply.status == 303 and reply.getheader("location") == "/runs"
    set_cookies = reply.headers.get_all("set-cookie") or []
    cookies = {c.split(";")[0].split("=")[0]: c.split(";")[0].split("=", 1)[1]
               for c in set_cookies}
    connection.close()
    session = next(c for c in set_cookies if c.startswith("dagnats_session="))
    return {"set": session, "csrf": cookies["dagnats_csrf"],
            "cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}


def test_a_change_by_the_session_cookie_needs_the_csrf_header_and_the_same_origin(base: str
                                                                                  ) -> None:
    session = login(base, FULL)
    body = {"workflow": "hello-pipeline"}
    browser = {"Cookie": session["cookie"], "Origin": base, "Sec-Fetch-Site": "same-origin"}
    no_csrf = call("POST", f"{base}/api/v1/runs", body, browser)
    assert no_csrf.status == 403 and no_csrf.json["error"] == "CsrfRefused"
    ok = call("POST", f"{base}/api/v1/runs", body, {**browser, "X-CSRF-Token": session["csrf"]})
    assert ok.status == 201
    cross = {**browser, "X-CSRF-Token": session["csrf"], "Origin": "http://evil.example",
             "Sec-Fetch-Site": "cross-site"}
    refused = call("POST", f"{base}/api/v1/runs", body, cross)
    assert refused.status == 403 and refused.json["error"] == "CrossSiteRefused"


def test_a_cross_site_form_post_is_refused(base: str) -> None:
    session = login(base, FULL)
    run_id = call("POST", f"{base}/api/v1/runs", {"workflow": "hello-pipeline"},
                  bearer(FULL)).json["run_id"]
    form = call("POST", f"{base}/api/v1/runs/{run_id}/cancel", raw=b"",
                headers={"Content-Type": "application/x-www-form-urlencoded",
                         "Cookie": session["cookie"], "Origin": "http://evil.example",
                         "Sec-Fetch-Site": "cross-site"})
    assert form.status == 403 and form.json["error"] == "CrossSiteRefused"
    login_elsewhere = call("POST", f"{base}/login", raw=f"token={FULL}".encode(),
                           headers={"Content-Type": "application/x-www-form-urlencoded",
                                    "Origin": "http://evil.example"})
    assert login_elsewhere.status == 403


def test_a_token_file_that_is_too_short_is_refused_in_one_line(tmp_path: Path) -> None:
    weak = tmp_path / "token"
    weak.write_text("secret")
    serve = Serve(tmp_path / "data", [], args=["--http-port", str(free_port()),
                                               "--token-file", str(weak)])
    assert serve.proc.wait(timeout=30) == 2
    line = serve.wait_for_output("at least 16 characters", timeout_s=5)
    assert line.startswith("error: the token in --token-file")
