"""Script injection, in Chromium: a payload in every field the pages show back — ticket
note, platform pretty name, usernames, token names, archive names (from the API and from
the upload page), member names inside an archive, log lines in the viewer, search input and
results, flash messages, the audit log, an error page — never runs and is shown as text.

The pages' Content-Security-Policy would stop inline script anyway; these tests turn it
off (``bypass_csp``) so that what they check is the escaping itself. Every payload calls
``__xss(...)``, a function the test exposes to the page, or ``alert``; a call of either, an
element with an ``on…`` attribute, an ``<img src=x>``, a ``<script>`` that mentions
``__xss`` or a ``javascript:`` link fails the test.
"""

import io
import tarfile
import urllib.parse

import pytest

from .conftest import TIMEOUT_MS

pytestmark = pytest.mark.slow

PAYLOADS = [
    "<script>__xss(1)</script>",
    "<img src=x onerror=__xss(2)>",
    '"><svg onload=__xss(3)>',
    "'><b onclick=alert(4)>",
    "javascript:__xss(5)",
    "{{7*7}}${7*7}",
]
# All of them in one value (150 characters fit a username).
ALL = "".join(PAYLOADS)
assert len(ALL) <= 150
# Where a name loses its path and reserved characters (archive names), the tail is kept.
LOG = b"".join(f"{n} {payload} line\n".encode() for n, payload in enumerate(PAYLOADS))
MEMBER_NAMES = ['<img src=x onerror=__xss("m1")>.log', '"><svg onload=__xss("m2")>.log',
                "{{7*7}}.log", "javascript:__xss('m3').log"]

INERT = """() => {
    const found = [];
    for (const element of document.querySelectorAll('*')) {
        for (const attribute of element.attributes) {
            if (attribute.name.startsWith('on')) { found.push(element.outerHTML.slice(0, 120)); }
        }
    }
    for (const image of document.querySelectorAll('img')) {
        if (image.getAttribute('src') === 'x') { found.push(image.outerHTML); }
    }
    for (const script of document.querySelectorAll('script')) {
        if (script.textContent.includes('__xss') || script.textContent.includes('alert')) {
            found.push(script.outerHTML.slice(0, 120));
        }
    }
    for (const link of document.querySelectorAll('[href], [src], [action], [formaction]')) {
        for (const name of ['href', 'src', 'action', 'formaction']) {
            const value = (link.getAttribute(name) || '').trim().toLowerCase();
            if (value.startsWith('javascript:') || value.startsWith('data:')) {
                found.push(link.outerHTML.slice(0, 120));
            }
        }
    }
    return found;
}"""


@pytest.fixture
def context(browser, live_server):
    """Like conftest's, but without the page's CSP: the escaping alone must hold."""
    context = browser.new_context(base_url=live_server, bypass_csp=True, locale="en-GB",
                                  timezone_id="UTC", viewport={"width": 1200, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    yield context
    context.close()


@pytest.fixture
def ran(context, page):
    """What the payloads managed to run: calls of ``__xss`` and unexpected dialogs."""
    calls = []
    context.expose_function("__xss", lambda what: calls.append(f"__xss({what})"))

    def on_dialog(dialog):
        # The app's own "Really delete …?" confirmations are fine (and show the name as
        # text); anything else is a payload's alert.
        if dialog.type == "confirm":
            dialog.accept()
        else:
            calls.append(f"{dialog.type}({dialog.message})")
            dialog.dismiss()

    page.on("dialog", on_dialog)
    context.on("page", lambda other: other.on("dialog", on_dialog))
    return calls


def check(page, ran, *texts):
    """Nothing ran, nothing was injected, and each of ``texts`` is on the page as text."""
    page.wait_for_load_state("load")
    assert page.evaluate(INERT) == [], page.url
    assert ran == [], page.url
    body = page.locator("body").inner_text()
    for text in texts:
        assert text in body, (page.url, text)
    # Template syntax stays literal (no server- or client-side template evaluated it).
    if "{{7*7}}" in "".join(texts):
        assert "{{7*7}}" in body


def _tar(members):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def world(factory):
    """An admin whose username is the payload, a platform and a ticket full of it."""
    admin = factory.user(ALL, admin=True)
    platform = factory.platform("xss")
    # The column holds 100 characters (PostgreSQL enforces it): the four payloads that fit.
    platform.pretty_name = "".join(PAYLOADS[:4])
    assert len(platform.pretty_name) <= 100
    factory.session.commit()
    ticket = factory.ticket(platform, 7007, user=admin, note=ALL, attempts=20)
    return admin, platform, ticket


def _upload(page, ticket, name, data):
    res = page.request.post("/api/v1/archives/", headers={"Upload-Token": ticket.token},
                            multipart={"file": {"name": name, "mimeType": "application/x-tar",
                                                "buffer": data}})
    assert res.status == 201, res.text()
    return res.json()


def test_staff_pages_show_payloads_as_text(page, ran, world, sign_in):
    admin, platform, ticket = world
    archive = _upload(page, ticket, ALL + ".tar",
                      _tar({**{name: LOG for name in MEMBER_NAMES}, "plain.log": LOG}))
    sign_in(page, admin)
    check(page, ran, ALL)  # the ticket list: owner, platform, note

    page.goto("/platforms/")
    check(page, ran, ALL)
    page.goto("/platforms/xss/")
    check(page, ran, ALL)
    ticket_url = "/platforms/xss/tickets/7007/"
    page.goto(ticket_url)
    check(page, ran, archive["name"])
    assert page.locator("#ticket-note").inner_text().strip() == ALL

    page.click(f"#inspect-{archive['id']}")
    page.locator("#members").wait_for()
    check(page, ran, *MEMBER_NAMES)
    rows = page.locator("#members tr.tree-file")
    assert {rows.nth(i).get_attribute("data-path") for i in range(rows.count())} == \
        {*MEMBER_NAMES, "plain.log"}

    # The viewer: a payload member, its lines full of payloads.
    page.locator("a.member-link", has_text=MEMBER_NAMES[0]).click()
    page.locator("#lines").wait_for()
    check(page, ran, MEMBER_NAMES[0], *PAYLOADS)
    assert page.locator("#lines tr").nth(1).locator(".text").inner_text() == \
        f"1 {PAYLOADS[1]} line"

    # Search: what was typed comes back in the field and in the summary, hits marked.
    for scope in (f"{ticket_url}archives/{archive['id']}/search", f"{ticket_url}search"):
        for query in (PAYLOADS[1], PAYLOADS[2], "{{7*7}}"):
            page.goto(scope + "?" + urllib.parse.urlencode({"q": query}))
            page.locator("tr.hit").first.wait_for()
            check(page, ran, query)
            assert page.input_value("#search-q") == query
            assert query in page.locator("tr.hit mark").first.inner_text()

    # Deleting the archive: the confirmation and the flash message carry its name.
    page.goto(ticket_url)
    page.click(f"#delete-{archive['id']}")
    page.wait_for_url(f"**{ticket_url}#archives")
    check(page, ran, f"Archive {archive['name']} deleted.")


def test_account_admin_and_audit_pages(page, ran, world, sign_in, factory):
    admin, platform, ticket = world
    sign_in(page, admin)

    # A token named with the payload: listed, then revoked (flash message).
    page.goto("/account/")
    page.fill("#token-name", ALL[:100])
    page.click("#token-submit")
    page.locator("#new-token-secret").wait_for()
    check(page, ran, ALL[:100])
    page.locator("#token-list button", has_text="Revoke").first.click()
    page.wait_for_load_state("load")
    check(page, ran, f"Token {ALL[:100]} is revoked.")

    # A user created with the payload as name: the flash, the list, their page.
    other = PAYLOADS[2] + PAYLOADS[0]
    page.goto("/admin/users/")
    page.fill("#new-username", other)
    page.fill("#new-password", "correct horse battery staple")
    page.click("#create-user-submit")
    page.wait_for_load_state("load")
    check(page, ran, other)
    page.goto("/admin/users/")
    check(page, ran, ALL, other)
    page.locator("#user-list a", has_text=other).click()
    page.wait_for_load_state("load")
    check(page, ran, other)

    # The audit log: actors, details, and the filter fields echoing what was typed.
    page.goto("/admin/audit")
    check(page, ran, ALL)
    page.goto("/admin/audit?" + urllib.parse.urlencode({"actor": ALL, "action": PAYLOADS[1]}))
    check(page, ran)
    assert page.input_value("#f-actor") == ALL
    assert page.input_value("#f-action") == PAYLOADS[1]
    page.goto("/admin/audit?" + urllib.parse.urlencode({"since": PAYLOADS[2]}))
    check(page, ran)
    assert page.input_value("#f-since") == PAYLOADS[2]

    # The ticket list's search field and an error page with the payload in its path.
    page.goto("/tickets/?" + urllib.parse.urlencode({"search": ALL}))
    check(page, ran)
    page.goto("/platforms/" + urllib.parse.quote(ALL, safe="") + "/")
    check(page, ran)


def test_upload_page_shows_a_hostile_file_name_as_text(page, ran, world, sign_in):
    """The customer's page shows the chosen file's name, then the server's (sanitised)
    name in the receipt; staff see that name on the ticket page."""
    admin, platform, ticket = world
    name = PAYLOADS[1] + ".log"
    # A link whose token is a payload: the page puts it into its console commands.
    page.goto("/upload#" + urllib.parse.urlencode({"token": PAYLOADS[1]}))
    page.locator("#token-status").get_by_text("not", exact=False).wait_for()
    check(page, ran)
    assert f"-t {PAYLOADS[1]} -f" in page.text_content("#uploader-command")
    page.goto("/")
    page.goto(f"/upload#token={ticket.token}")
    page.locator("#token-status").get_by_text("Ticket 7007").wait_for()
    check(page, ran)
    page.set_input_files("#files", files=[{"name": name, "mimeType": "text/plain",
                                           "buffer": LOG}])
    item = page.locator(".upload-item")
    assert item.locator(".upload-name").text_content() == name
    page.click("#start")
    item.and_(page.locator("[data-state=done], [data-state=failed]")).wait_for()
    assert item.get_attribute("data-state") == "done", item.text_content()
    kept = item.locator(".receipt-file").text_content()
    assert "<" not in kept and ">" not in kept and "onerror=__xss" in kept
    check(page, ran, name, kept)

    sign_in(page, admin)
    page.goto("/platforms/xss/tickets/7007/")
    check(page, ran, kept)
