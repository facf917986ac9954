"""What the upload page tells a person: one plain message per state of the token, plain
sentences for every answer of the server (never its developer wording), binary units, and
a layout that holds on a phone in both themes.

Answers of the server that are hard to cause for real (a full disk, a proxy's page, a
throttled network) are made with ``page.route``.
"""

import datetime as dt
import json
import re

import pytest

from .upload_helpers import (
    FINISHED,
    UPLOADS,
    archives_of,
    configure,
    open_page,
    payload,
    shown,
    update_ticket,
)

pytestmark = pytest.mark.slow

# What a person must never read: the API's own words for developers (backticks, a field
# path before a colon, a status code, JSON).
DEVELOPER_WORDING = re.compile(
    r"`|\b(q|name|body|detail|errors|querystring|header|path)\s*:|HTTP \d|[{}]|\bnull\b")


@pytest.fixture
def ticket(factory):
    return factory.ticket(factory.platform("vm6"), 4711, attempts=20)


def assert_one_message(page, text):
    """The token's state is the only thing said, in exactly these words."""
    assert page.locator("#token-status").text_content() == text
    results = [result for result in page.locator(".upload-result").all_text_contents()
               if result.strip()]
    assert results == [] and "Checking" not in shown(page) and "Not sent" not in shown(page)


@pytest.mark.parametrize("case, message", [
    ("resolved", "Ticket 4711 is closed and takes no more uploads. Ask support for a new "
                 "upload link."),
    ("used up", "This upload link has been used for as many files as it allows. Ask support "
                "for a new upload link."),
    ("expired", "This upload link expired on 1 Jan 2020, 10:00. Ask support for a new "
                "upload link."),
    ("unknown", "This upload token is not known: check that you copied the whole link. Ask "
                "support for a new upload link."),
])
def test_a_refused_token_disables_upload_with_one_message(page, ticket, dbsession, case,
                                                          message):
    changes = {"resolved": {"resolved": True}, "used up": {"attempts": 0},
               "expired": {"expires_at": dt.datetime(2020, 1, 1, 10, tzinfo=dt.UTC)}}
    if case in changes:
        update_ticket(dbsession, ticket, **changes[case])
    token = ticket.token if case != "unknown" else "not-a-real-token-at-all"
    page.goto(f"/upload#token={token}")
    status = page.locator("#token-status")
    status.get_by_text(message, exact=True).wait_for()
    assert "alert-danger" in status.get_attribute("class")
    page.set_input_files("#files", files=[payload("a.log", 1000)])
    # Upload stays off: the file waits, and nothing but the token's message is said.
    assert page.locator("#start").is_disabled()
    assert page.locator(".upload-item").get_attribute("data-state") == "ready"
    assert_one_message(page, message)
    assert token not in shown(page) and not DEVELOPER_WORDING.search(shown(page))
    assert archives_of(dbsession, ticket) == []


def test_checking_replaces_the_message_and_refusal_replaces_checking(page, ticket, dbsession):
    open_page(page, ticket)
    page.set_input_files("#files", files=[payload("a.log", 1000)])
    assert page.locator("#start").is_enabled()
    # The check is held: while it runs the page says only that, and Upload waits for it.
    held = []
    page.route("**/api/v1/check/token/**", lambda route: held.append(route))
    update_ticket(dbsession, ticket, resolved=True)
    page.click("#check-token")
    page.locator("#token-status").get_by_text("Checking the token …", exact=True).wait_for()
    assert page.locator("#start").is_disabled() and page.locator("#check-token").is_disabled()
    held[0].continue_()
    message = "Ticket 4711 is closed and takes no more uploads. Ask support for a new " \
              "upload link."
    page.locator("#token-status").get_by_text(message, exact=True).wait_for()
    assert_one_message(page, message)
    assert page.locator("#start").is_disabled()


@pytest.mark.parametrize("answer, message, upload_possible", [
    ({"status": 429, "headers": {"Retry-After": "240"}, "body": '{"detail": "too many"}'},
     "Too many unknown upload tokens were tried from your network. Try again in 4 "
     "minutes.", False),
    ({"status": 502, "body": "<html>Bad Gateway</html>"},
     "The token could not be checked: the server did not answer. Check your connection, "
     "then press Check.", True),
    ("abort", "The token could not be checked: the server did not answer. Check your "
              "connection, then press Check.", True),
])
def test_a_check_without_an_answer_says_so_plainly(page, ticket, answer, message,
                                                   upload_possible):
    page.route("**/api/v1/check/token/**", lambda route: route.abort("connectionreset")
               if answer == "abort" else route.fulfill(content_type="application/json",
                                                       **answer))
    page.goto(f"/upload#token={ticket.token}")
    page.locator("#token-status").get_by_text(message, exact=True).wait_for()
    page.set_input_files("#files", files=[payload("a.log", 1000)])
    # Without an answer Upload stays possible: each file is checked again first anyway.
    assert page.locator("#start").is_enabled() is upload_possible


def test_a_stopped_upload_started_elsewhere_is_named_beside_the_attempts_left(page, ticket):
    # Another browser (here: the page's own fetch, before any entry is written) started an
    # upload of 1000 bytes and sent 250 of them.
    page.goto("/upload")
    page.evaluate("""async token => {
        const headers = {'Tus-Resumable': '1.0.0', 'Upload-Token': token};
        const created = await fetch('/api/v1/uploads/', {method: 'POST', headers: {...headers,
            'Upload-Length': '1000', 'Upload-Metadata': 'filename ' + btoa('half.log')}});
        await fetch(created.headers.get('Location'), {method: 'PATCH', headers: {...headers,
            'Upload-Offset': '0', 'Content-Type': 'application/offset+octet-stream'},
            body: new Uint8Array(250)});
    }""", ticket.token)
    page.goto(f"/upload#token={ticket.token}")
    status = page.locator("#token-status")
    status.get_by_text("An upload of half.log stopped at 25 %. Choose the same file to "
                       "continue.").wait_for()
    assert status.text_content().startswith("Ticket 4711: 19 upload attempts left, valid until")
    assert "alert-success" in status.get_attribute("class")
    # This browser has no record of it: the same file starts afresh, and says so.
    page.set_input_files("#files", files=[payload("half.log", 1000)])
    assert page.locator(".upload-progress").text_content() == (
        "Ready to upload: starts afresh, as this browser has no record of the stopped upload")
    assert page.locator("#start").is_enabled()


CORNICE_400 = {"detail": "body.q: Required", "errors": [
    {"location": "body", "name": "q", "description": "Required"}]}
TOO_LARGE = ("The server will not take this file now: the largest accepted is 64 MiB, "
             "counting what the stopped uploads of this link hold. Finish them first, or "
             "ask support for another way.")
# method answered, status, extra headers, body, what the person reads, state it ends in.
ANSWERS = [
    ("POST", 400, {}, CORNICE_400, "The server could not accept this file's details. Try "
     "again; if it keeps failing, tell support.", "refused"),
    ("POST", 401, {}, {"detail": "Upload-Token header is required"}, "The upload token is "
     "missing. Enter the token support gave you.", "refused"),
    ("POST", 403, {}, {"detail": "upload token is not valid"}, "This upload token is not "
     "valid: check that you copied the whole link. Ask support for a new upload link.",
     "refused"),
    ("POST", 409, {}, {"detail": "this ticket already holds 16 unfinished uploads"},
     "This upload clashes with another one of the same link (in another tab or window?), "
     "or the link holds too many stopped uploads. Let the other one finish, then press "
     "Retry.", "failed"),
    ("POST", 413, {}, {"detail": "archive larger than the limit of 67108864 bytes"},
     TOO_LARGE, "refused"),
    ("POST", 423, {}, {"detail": "ticket 4711 already resolved"}, "Not stored: this upload "
     "link can no longer be used (the message above says why).", "refused"),
    ("POST", 429, {"Retry-After": "90"}, {"detail": "too many unknown upload tokens"},
     "Too many requests came from your network. Try again in 2 minutes.", "failed"),
    ("PATCH", 460, {}, {"detail": "Upload-Checksum mismatch"}, "Parts of the file kept "
     "arriving damaged. Check your connection and try again.", "failed"),
    ("PATCH", 410, {}, {"detail": "this upload has expired"}, "This upload expired on the "
     "server. Retry starts it again.", "failed"),
    ("PATCH", 404, {}, {"detail": "no such upload"}, "The server no longer has this upload. "
     "Retry starts it again.", "failed"),
    ("POST", 507, {}, {"detail": "not enough free space on the server"}, "The server has no "
     "room for this file right now. Try again later; if it keeps failing, tell support.",
     "failed"),
    ("POST", 502, {}, "<html>Bad Gateway</html>", "The server could not store the file. Try "
     "again in a few minutes; if it keeps failing, tell support.", "failed"),
    ("PATCH", 0, {}, None, "The upload did not complete — check your connection and try "
     "again. Retry continues where it stopped.", "failed"),
]


def answering(method, status, headers, body):
    """A route handler: ``method`` gets this answer (0: the connection drops), others pass."""
    def answer(route):
        if route.request.method != method:
            route.continue_()
        elif not status:
            route.abort("connectionreset")
        else:
            html = isinstance(body, str)
            route.fulfill(status=status, headers=headers, body=body if html else json.dumps(
                body), content_type="text/html" if html else "application/json")
    return answer


def test_every_answer_of_the_server_is_a_plain_sentence(page, ticket):
    """One page, one answer after another (each through the real page and queue)."""
    open_page(page, ticket)
    configure(page, retry_delays="10 10")
    for method, status, headers, body, message, state in ANSWERS:
        page.route(lambda url: UPLOADS in url, answering(method, status, headers, body))
        page.set_input_files("#files", files=[payload("x.log", 1000)])
        page.click("#start")
        item = page.locator(".upload-item")
        item.and_(page.locator(FINISHED)).wait_for()
        result = item.locator(".upload-result").text_content()
        assert (status, result, item.get_attribute("data-state")) == (status, message, state)
        assert not DEVELOPER_WORDING.search(result), result
        assert item.locator(".upload-retry").is_visible() is (state == "failed")
        assert ticket.token not in shown(page)
        page.unroute_all()
        # The queue ends by checking the token again; then the next answer is tried.
        page.locator("#token-status").get_by_text("Ticket 4711").wait_for()
        item.locator(".upload-remove").click()


def test_sizes_are_in_binary_units(page, ticket, app, monkeypatch):
    monkeypatch.setitem(app.registry.settings, "upload.max_size", 4 * 1024**3)
    open_page(page, ticket)
    assert page.locator("#files-help .max-size").text_content() == "4 GiB"
    page.set_input_files("#files", files=[payload("a.log", 1536), payload("b.log", 1000)])
    assert page.locator(".upload-size").all_text_contents() == ["1.5 KiB", "1000 B"]


def test_empty_file_is_refused_before_sending(page, ticket):
    open_page(page, ticket)
    page.set_input_files("#files", files=[payload("empty.log", 0)])
    item = page.locator(".upload-item[data-state=refused]")
    assert item.locator(".upload-result").text_content() == "This file is empty."
    assert page.locator("#start").is_disabled()


def test_expiry_is_shown(page, factory):
    expires = dt.datetime(2099, 5, 17, 12, 30, tzinfo=dt.UTC)
    ticket = factory.ticket(factory.platform("lin"), 99, attempts=1, expires_at=expires)
    status = open_page(page, ticket)
    text = status.text_content()
    assert "Ticket 99: 1 upload attempt left, valid until" in text and "2099" in text


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_phone_layout_in_both_themes(browser, live_server, ticket, screenshot, scheme):
    context = browser.new_context(base_url=live_server, viewport={"width": 390, "height": 844},
                                  is_mobile=True, has_touch=True, device_scale_factor=2,
                                  color_scheme=scheme)
    try:
        page = context.new_page()
        open_page(page, ticket)
        assert page.evaluate("document.documentElement.dataset.bsTheme") == scheme
        page.set_input_files("#files", files=[payload("a-rather-long-file-name-without-any-"
                                                      "breaks-from-node-17.tar.gz", 1000)])
        page.locator("details summary").click()  # the console commands, long lines
        screenshot(page, f"upload-phone-{scheme}")
        # Nothing wider than the screen: no sideways scrolling on a phone.
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        for field in ("#token", "#files", "#start"):
            assert page.locator(field).is_visible()
        assert page.get_by_label("Upload token").input_value() == ticket.token
        # The file chooser is reached with the keyboard alone (a native file input, which
        # Space opens), and the focus is seen.
        page.locator("#check-token").focus()
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.id") == "files"
        focus = page.evaluate("""() => { const style = getComputedStyle(document.activeElement);
            return [style.boxShadow, style.outlineStyle]; }""")
        assert focus[0] != "none" or focus[1] != "none", focus
    finally:
        context.close()
