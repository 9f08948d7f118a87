"""Fixtures of the real-browser tests: headless Debian chromium driven by Playwright (sync API).

Playwright's own browser download does not work here (closed network), so the tests launch the
system's chromium with `executable_path`. Without one every test in this folder is skipped with
one line, except under `CI=true`, where that line is an error. Each xdist worker has its own
browser. A test takes `page` (fresh context, 1366x850, 10 s timeouts) and drives it:

    def test_console(page, console_url):  # console_url: a fixture serving the console
        page.goto(console_url)
        page.get_by_role("button", name="Run").click()
        expect(page.get_by_text("succeeded")).to_be_visible()

Dark mode: `@pytest.mark.parametrize("page", ["dark"], indirect=True)`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

CHROMIUM_ENV = "DAGNATS_CHROMIUM"
TIMEOUT_MS = 10_000
VIEWPORT = {"width": 1366, "height": 850}
# --disable-background-networking and friends: Chromium otherwise calls Google's hosts, which
# are refused here. Playwright adds a fresh temporary --user-data-dir itself.
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def find_chromium() -> tuple[str | None, str]:
    """The browser to launch, or None and the one-line reason why there is none."""
    chosen = os.environ.get(CHROMIUM_ENV)
    if chosen:
        return shutil.which(chosen), f"{CHROMIUM_ENV}={chosen} is not an executable"
    for candidate in ("/usr/bin/chromium", "chromium", "chromium-browser"):
        if found := shutil.which(candidate):
            return found, ""
    return None, f"no Chromium found (install Debian's chromium, or set {CHROMIUM_ENV})"


CHROMIUM, WHY_NOT = find_chromium()


class _NoBrowserModule(pytest.Module):
    """A test module skipped whole, its skip reported from here: `-ra` folds them into one line."""

    def collect(self) -> list[pytest.Item]:
        pytest.skip(f"{WHY_NOT}; browser tests skipped", allow_module_level=True)


def pytest_pycollect_makemodule(
    module_path: Path, parent: pytest.Collector
) -> pytest.Module | None:
    """Without a browser, skip this folder's test modules unimported (CI=true: chromium_path)."""
    if CHROMIUM is None and os.environ.get("CI") != "true":
        return _NoBrowserModule.from_parent(parent, path=module_path)
    return None


@pytest.fixture(scope="session", autouse=True)
def chromium_path() -> str:
    """The Chromium executable; without one (only reached when CI=true) every test errors."""
    if CHROMIUM is None:
        pytest.fail(f"{WHY_NOT}; CI=true needs it for the browser tests", pytrace=False)
    return CHROMIUM


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[Browser]:
    """One headless Chromium per test module, closed at its end: Playwright's sync API runs
    an event loop in this thread while it is started, and the modules the same xdist
    worker runs next call asyncio.run."""
    playwright = sync_playwright().start()
    try:
        launched = playwright.chromium.launch(
            executable_path=chromium_path, headless=True, args=LAUNCH_ARGS)
        expect.set_options(timeout=TIMEOUT_MS)
        yield launched
        launched.close()
    finally:
        playwright.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keeps each phase's report on the item, so `page` knows whether the test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Page]:
    """A page in a fresh context: laptop viewport, 10 s timeouts, colour scheme "light" unless
    parametrized indirectly. A failing test leaves failure.png in its tmp_path."""
    scheme = getattr(request, "param", "light")
    context = browser.new_context(viewport=VIEWPORT, color_scheme=scheme)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    yield page
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        with contextlib.suppress(Exception):  # a crashed page has no screenshot; keep the failure
            page.screenshot(path=tmp_path / "failure.png", full_page=True)
    context.close()
