"""Browser tests: Playwright for Python driving the system's Chromium against a live server.

The browser is Debian's Chromium (``/usr/bin/chromium``, or the one ``$CHROMIUM`` names);
Playwright never downloads one here. Without Chromium or the playwright package every test
of this directory is skipped, with the reason in pytest's summary (``-ra``); with
``REQUIRE_BROWSER=1`` (``.ci/run`` sets it) they fail instead, so CI cannot pass silently
without them.

One browser per session (starting Chromium costs about a second), a fresh context per test
(its own cookies, storage and routes), both closed in the fixtures' teardown so no browser
process outlives the tests. The live server is ``tests/conftest.py``'s ``live_server``.

Browser tests run on one database, as the functional suite does (PostgreSQL in CI): running
them on both doubled their time (measured 10.6 s → 21.6 s) without covering anything new.
They commit for real (the live server answers from threads of its own).

``SCREENSHOTS_DIR=dir`` makes the ``screenshot`` fixture save PNGs there (off by default).
"""

import os
import pathlib

import pytest

DEFAULT_CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update"]
# Long enough for a loaded CI machine (a sign-in once took over 15 s there, with the whole
# suite and coverage on two cores), short enough that a broken page fails soon.
TIMEOUT_MS = 30_000


def _unavailable(reason):
    if os.environ.get("REQUIRE_BROWSER") == "1":
        pytest.fail(f"REQUIRE_BROWSER=1 but {reason}", pytrace=False)
    pytest.skip(f"browser tests need Chromium and playwright: {reason} "
                "(set CHROMIUM=/path/to/chromium; REQUIRE_BROWSER=1 makes this a failure)")


def _chromium_path():
    path = os.environ.get("CHROMIUM") or DEFAULT_CHROMIUM
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        _unavailable(f"no Chromium executable at {path}")
    return path


@pytest.fixture(scope="session")
def browser():
    executable = _chromium_path()
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError as exc:
        _unavailable(f"the playwright package is missing ({exc})")
    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(executable_path=executable, headless=True,
                                              args=LAUNCH_ARGS)
    except Error as exc:
        playwright.stop()
        _unavailable(f"Chromium at {executable} did not start: {exc.message.splitlines()[0]}")
    yield chromium
    chromium.close()
    playwright.stop()


@pytest.fixture
def context(browser, live_server):
    context = browser.new_context(base_url=live_server, locale="en-GB", timezone_id="UTC",
                                  viewport={"width": 1200, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    yield context
    context.close()


class PageProblems:
    """What went wrong in the page: uncaught exceptions and Content-Security-Policy refusals."""

    def __init__(self, page):
        self.errors = []
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
        page.on("console", self._console)

    def _console(self, message):
        if message.type == "error" and "Content Security Policy" in message.text:
            self.errors.append(f"CSP: {message.text}")


@pytest.fixture
def page(context):
    """A fresh page; the test fails if its scripts threw or the CSP refused anything."""
    page = context.new_page()
    problems = PageProblems(page)
    yield page
    page.close()
    assert not problems.errors, "\n".join(problems.errors)


@pytest.fixture
def sign_in(factory):
    """``sign_in(page, user)``: through /login and /verify, landing on the ticket list."""
    def sign_in(page, user):
        page.goto("/login")
        page.fill("#username", user.username)
        page.fill("#password", user.password)
        _submit(page, "#login-submit", "/verify")
        page.fill("#code", factory.otp(user))
        _submit(page, "#verify-submit", "/tickets/")
    return sign_in


def _submit(page, button, path):
    """Click a form's button and wait for the page it leads to.

    When another page answers instead (an error, a throttle), the failure says which page
    and what it said, rather than only that a wait timed out.
    """
    with page.expect_navigation():
        page.click(button)
    if not page.url.endswith(path):
        alert = page.locator(".alert")
        said = alert.first.text_content() if alert.count() else page.title()
        pytest.fail(f"expected {path} after {button}, got {page.url}: {said!r}")


@pytest.fixture
def screenshot(request):
    """``screenshot(page, "name")`` saves ``$SCREENSHOTS_DIR/name.png`` when that is set."""
    directory = os.environ.get("SCREENSHOTS_DIR")

    def save(page, name, full_page=True):
        if not directory:
            return None
        path = pathlib.Path(directory) / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        # Transitions finished: a progress bar is drawn where it ends, not half-way there.
        page.screenshot(path=str(path), full_page=full_page, animations="disabled")
        return path

    return save
