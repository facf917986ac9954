"""Every page of the app in Chromium, at a laptop's and a phone's width, in the light and
the dark theme: no horizontal overflow, no console error, no serious or critical axe-core
violation, every focusable element reachable by Tab with a visible focus ring, and a
full-page screenshot of each under ``var/screenshots/<width>-<theme>/<page>.png``.

The data is one realistic installation (ui_dataset.py). ``PAGES`` names the route of each
page visited; ``test_every_page_route_is_visited`` compares them with the app's own list of
HTML GET routes, so a new page cannot escape this check. The test collects every problem
of the run and fails once with the whole list; the same report (figures first) is written
to ``var/ui-report.txt``. ``PAGE_SCREENSHOTS=dir`` puts the screenshots elsewhere;
``PAGES_ONLY=name,name`` checks only those pages of ``PAGES`` (while fixing one).
"""

import dataclasses
import os
import pathlib

import pytest

from . import axe
from .conftest import TIMEOUT_MS
from .pagecheck import REPO, SIZES, THEMES, Audit, ConsoleWatch
from .ui_dataset import Dataset

pytestmark = pytest.mark.slow



@dataclasses.dataclass
class Page:
    """One page: who visits it, where, and what to wait for before checking it."""

    name: str
    route: str | None          # the app's route pattern (None: not a route of its own)
    role: str                  # the browser it is visited in (see ``_browsers``)
    path: str                  # the URL, with the data set's values in {braces} (_url)
    status: int = 200
    ready: str | None = None   # a selector that exists once the page has settled
    submit: str | None = None  # a form to submit: the page is the answer to its POST
    fill: dict = dataclasses.field(default_factory=dict)  # that form's fields first
    upload: bool = False       # the upload page after a file sent through it
    docs: str | None = None    # also saved as docs/screenshots/<docs>[-phone].png material
    themed: bool = True        # follows the site's light/dark theme
    phone_axe: bool = False    # axe at the phone's width too (its layout differs)

    def open(self, page, url):
        if "#" in url:
            # Otherwise only the fragment would change when the address is the same
            # (another theme, another size): no new load, and the old theme stays.
            page.goto("about:blank")
        response = page.goto(url)
        if self.upload:
            page.locator("#token-status:not(:empty)").wait_for()
            page.set_input_files("#files", {"name": "node3-logs-2026-12-01.tar.gz",
                                            "mimeType": "application/gzip",
                                            "buffer": UPLOADED})
            page.click("#start")
            return response
        if self.submit is None:
            return response
        for field, value in self.fill.items():
            page.fill(field, value)
        with page.expect_navigation() as navigation:
            page.locator(self.submit).locator("[type=submit]").click()
        return navigation.value


UPLOADED = b"\x1f\x8b" + bytes(range(256)) * 64  # what the upload page sends, each time
TICKET = "/platforms/{name}/tickets/{number}/"
ARCHIVE = TICKET + "archives/{id}/"
PAGES = [
    Page("setup", "/setup", "setup", "/setup"),
    Page("login", "/login", "anonymous", "/login"),
    Page("login-refused", None, "anonymous", "/login", status=401, submit="#login-form",
         fill={"#username": "nobody", "#password": "not the password"}),
    Page("verify", "/verify", "verify", "/verify"),
    Page("enrol", "/enrol", "enrol", "/enrol"),
    Page("upload", "/upload", "anonymous", "/upload"),
    Page("upload-token", None, "anonymous", "/upload#token={token}",
         ready="#token-status:not(:empty)"),
    Page("upload-refused", None, "anonymous", "/upload#token={refused}",
         ready="#token-status:not(:empty)"),
    Page("upload-done", None, "anonymous", "/upload#token={upload}", upload=True,
         ready=".upload-item[data-state=done]", docs="upload-done"),
    # Swagger UI's page has no dark theme of its own.
    Page("api-docs", None, "anonymous", "/api/v1/docs/",
         ready="#operations-default-listTickets", themed=False),
    Page("tickets", "/tickets/", "staff", "/tickets/", phone_axe=True, docs="tickets"),
    Page("ticket", TICKET, "staff", "{ticket}", phone_axe=True, docs="ticket"),
    Page("ticket-resolved", None, "staff", "/platforms/vm6/tickets/4698/"),
    Page("ticket-hold", None, "admin", "/platforms/vm6/tickets/4702/"),
    Page("ticket-new", "/tickets/new", "staff", "/tickets/new"),
    Page("ticket-edit", TICKET + "edit", "staff", "{ticket}edit"),
    Page("ticket-delete", TICKET + "delete", "staff", "{ticket}delete"),
    Page("ticket-search", TICKET + "search", "staff", "{ticket}search?q=ERROR"),
    Page("platforms", "/platforms/", "staff", "/platforms/"),
    Page("platform", "/platforms/{name}/", "staff", "/platforms/vault/"),
    Page("platform-edit", "/platforms/{name}/edit", "admin", "/platforms/vault/edit"),
    Page("platform-delete", "/platforms/{name}/delete", "admin", "/platforms/vault/delete"),
    Page("archive-members", ARCHIVE + "members", "staff", "{archive}members"),
    Page("archive-viewer", ARCHIVE + "view", "staff",
         "{archive}view/var/log/app.log?line=2#L2"),
    Page("archive-search", ARCHIVE + "search", "staff", "{archive}search?q=ERROR"),
    Page("archive-delete", ARCHIVE + "delete", "staff", "{archive}delete"),
    Page("archive-unreadable", None, "staff", "{damaged}members", status=422),
    Page("account", "/account/", "staff", "/account/", phone_axe=True),
    Page("token-created", None, "staff", "/account/", submit="#token-form",
         fill={"#token-name": "made by the page check"}),
    Page("recovery-codes", None, "staff", "/account/", submit="#recovery-codes-form"),
    Page("users", "/admin/users/", "admin", "/admin/users/"),
    Page("user", "/admin/users/{id}/", "admin", "/admin/users/{user}/"),
    Page("audit", "/admin/audit", "admin", "/admin/audit"),
    Page("webhooks", "/admin/webhooks/", "admin", "/admin/webhooks/"),
    Page("error-400", None, "admin", "/admin/audit?ticket=not-a-number", status=400),
    Page("error-403", None, "staff", "/admin/users/", status=403),
    Page("error-404", None, "staff", "/platforms/vault/tickets/999999/", status=404),
]

# The HTML GET routes that are no page of their own (a redirect or a file; ``test_every_page``
# checks that each answers so): route → a URL of it, as the admin asks for it.
NOT_PAGES = {
    "/": "/",                                        # to the ticket list
    "/admin/": "/admin/",                            # to the user list
    ARCHIVE: "{archive}",                            # to the archive's ticket
    ARCHIVE + "download": "{archive}download",       # the archive's bytes
    ARCHIVE + "member": "{archive}member/var/log/app.log",  # one member's bytes
    "/uploader.sh": "/uploader.sh",                  # the console uploader script
    "/favicon.ico": "/favicon.ico",                  # the icon
}


@pytest.fixture(scope="module")
def axe_source():
    try:
        return axe.axe_source()
    except axe.AxeUnavailable as exc:
        if os.environ.get("REQUIRE_NODE") == "1":
            pytest.fail(f"REQUIRE_NODE=1 but {exc}", pytrace=False)
        pytest.skip(f"the every-page check needs axe-core from npm: {exc} "
                    "(REQUIRE_NODE=1 makes this a failure)")


def _new_page(browser, live_server, storage_state=None):
    context = browser.new_context(base_url=live_server, locale="en-GB", timezone_id="UTC",
                                  storage_state=storage_state)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    # The one confirmation asked (new recovery codes) is answered yes.
    page.on("dialog", lambda dialog: dialog.accept())
    return page, ConsoleWatch(page)


def _password_step(page, user):
    page.goto("/login")
    page.fill("#username", user.username)
    page.fill("#password", user.password)
    with page.expect_navigation():
        page.click("#login-submit")


def _browsers(browser, live_server, data, factory):
    """{role: (page, console watch)}: signed in once each, reused for all its pages."""
    browsers = {"anonymous": _new_page(browser, live_server)}
    for role, user in (("staff", data.staff), ("admin", data.admin)):
        page, watch = _new_page(browser, live_server)
        _password_step(page, user)
        page.fill("#code", factory.otp(user))
        with page.expect_navigation():
            page.click("#verify-submit")
        assert page.url.endswith("/tickets/"), page.url
        browsers[role] = (page, watch)
    # Half signed in: the password given, the second step ahead.
    for role, user in (("verify", data.staff), ("enrol", data.newcomer)):
        page, watch = _new_page(browser, live_server)
        _password_step(page, user)
        assert page.url.endswith(f"/{role}"), page.url
        browsers[role] = (page, watch)
    return browsers


def _url(path, data):
    return path.format(ticket=data.ticket_path, archive=data.archive_path,
                       damaged=f"{data.ticket_path}archives/{data.damaged_id}/",
                       user=data.staff.id, token=data.ticket.token,
                       refused=data.resolved.token, upload=data.upload_ticket.token)


def test_every_page(browser, live_server, factory, dbsession, axe_source):
    screenshots = pathlib.Path(os.environ.get("PAGE_SCREENSHOTS") or
                               REPO / "var" / "screenshots")
    audit = Audit(live_server, axe_source, screenshots)
    pages = []
    try:
        # First run: no user yet, so the setup page is there (and only then).
        setup, watch = _new_page(browser, live_server)
        pages.append(setup)
        only = set(filter(None, os.environ.get("PAGES_ONLY", "").split(",")))
        chosen = [spec for spec in PAGES if not only or spec.name in only]
        for spec in (p for p in chosen if p.role == "setup"):
            for size in SIZES:
                for theme in THEMES:
                    audit.visit(setup, watch, spec, spec.path, size, theme)

        anonymous = _new_page(browser, live_server)
        pages.append(anonymous[0])
        data = Dataset(factory, dbsession, anonymous[0].request)
        browsers = _browsers(browser, live_server, data, factory)
        pages += [page for page, _ in browsers.values()]
        for spec in (p for p in chosen if p.role != "setup"):
            page, watch = browsers[spec.role]
            for size in SIZES:
                for theme in THEMES:
                    audit.visit(page, watch, spec, _url(spec.path, data), size, theme)
        for route, path in NOT_PAGES.items():
            answer = browsers["admin"][0].request.get(_url(path, data), max_redirects=0)
            kind = answer.headers.get("content-type", "")
            if answer.status != 303 and (answer.status != 200 or kind.startswith("text/html")):
                audit.problem("route", f"{route} is listed as no page, but answers "
                                       f"{answer.status} {kind}")
    finally:
        for page in pages:
            page.context.close()
    report = audit.report()
    out = REPO / "var" / "ui-report.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report + "\n")
    print(report)
    assert not audit.problems, report


def test_every_page_route_is_visited(app_endpoints):
    """Every HTML GET route of the app is in PAGES, or in NOT_PAGES."""
    routes = {pattern for (method, pattern), kind in app_endpoints.items()
              if kind == "page" and method == "GET"}
    visited = {spec.route for spec in PAGES if spec.route}
    missing = sorted(routes - visited - set(NOT_PAGES))
    assert not missing, f"pages no test_every_page entry visits: {missing}"
    stale = sorted((visited | set(NOT_PAGES)) - routes)
    assert not stale, f"routes in test_every_page that the app no longer serves: {stale}"
    assert not visited & set(NOT_PAGES)
