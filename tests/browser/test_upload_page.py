"""The upload page in Chromium: from the customer's link to a stored, verified archive."""

import datetime as dt
import hashlib
import json
import os
import re

import pytest
from sqlalchemy import select

from collector.archives.models import Archive
from collector.tickets.models import Ticket

pytestmark = pytest.mark.slow

# Each item's state is in data-state; these are the ones an upload ends in.
FINISHED = "[data-state=done], [data-state=failed], [data-state=refused], [data-state=cancelled]"


@pytest.fixture
def ticket(factory):
    return factory.ticket(factory.platform("vm6"), 4711, attempts=3)


def payload(name, size):
    data = os.urandom(size)
    return {"name": name, "mimeType": "application/gzip", "buffer": data}


def throttle(page, bytes_per_second):
    """Limit the page's upload speed (Chromium's own network emulation, over CDP)."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0, "downloadThroughput": -1,
        "uploadThroughput": bytes_per_second})


def open_page(page, ticket):
    page.goto(f"/upload#token={ticket.token}")
    status = page.locator("#token-status")
    status.get_by_text(f"Ticket {ticket.number}").wait_for()
    return status


def archives_of(dbsession, ticket):
    dbsession.expire_all()
    return dbsession.scalars(select(Archive).where(Archive.ticket_id == ticket.id)).all()


def attempts_left(dbsession, ticket):
    dbsession.expire_all()
    return dbsession.scalar(select(Ticket.attempts).where(Ticket.id == ticket.id))


def update_ticket(dbsession, ticket, **values):
    row = dbsession.get(Ticket, ticket.id)
    for name, value in values.items():
        setattr(row, name, value)
    dbsession.commit()


def test_upload_one_file(page, ticket, dbsession, screenshot):
    status = open_page(page, ticket)
    assert "3 upload attempts left" in status.text_content()
    # The token went in the fragment; the field shows it, the server never saw it in a URL.
    assert page.input_value("#token") == ticket.token
    assert f"-t {ticket.token} -f" in page.text_content("#uploader-command")
    screenshot(page, "upload-ready")

    upload = payload("logs-2024.tar.gz", 3 * 1024 * 1024 + 17)
    page.set_input_files("#files", files=[upload])
    item = page.locator(".upload-item")
    assert item.locator(".upload-name").text_content() == "logs-2024.tar.gz"
    assert item.locator(".upload-size").text_content() == "3.1 MB"
    # Every value the progress bar and its text take, recorded in the page as they change.
    page.evaluate("""() => {
        window.seen = [];
        window.texts = [];
        const bar = document.querySelector('.upload-item .progress');
        const text = document.querySelector('.upload-item .upload-progress');
        new MutationObserver(() => window.seen.push(Number(bar.getAttribute('aria-valuenow'))))
            .observe(bar, {attributes: true, attributeFilter: ['aria-valuenow']});
        new MutationObserver(() => window.texts.push(text.textContent))
            .observe(text, {childList: true, characterData: true, subtree: true});
    }""")
    # A slow line (1.5 MB/s up), so that the upload takes a while and progress is seen.
    throttle(page, 1_500_000)
    page.click("#start")
    page.wait_for_function("""() => Number(document.querySelector('.upload-item .progress')
        .getAttribute('aria-valuenow')) >= 40""")
    screenshot(page, "upload-progress")
    item.and_(page.locator(FINISHED)).wait_for()
    screenshot(page, "upload-done")

    assert item.get_attribute("data-state") == "done", item.text_content()
    seen = page.evaluate("window.seen")
    assert seen[-1] == 100 and seen == sorted(seen), seen
    assert len([value for value in seen if 0 < value < 100]) >= 5, seen
    # Percentage, speed and time left while it runs ("42 % · 1.5 MB/s · 1 s left").
    texts = page.evaluate("window.texts")
    assert any(re.fullmatch(r"\d+ % · [\d.]+ [kM]B/s · \d+ s left", text) for text in texts), \
        texts
    assert any(text.startswith("100 % sent in") for text in texts), texts
    assert item.locator(".progress").get_attribute("aria-valuenow") == "100"
    sha256 = hashlib.sha256(upload["buffer"]).hexdigest()
    result = item.locator(".upload-result")
    assert result.get_attribute("data-sha256") == sha256
    assert sha256 in result.text_content() and "3145745 bytes" in result.text_content()
    (archive,) = archives_of(dbsession, ticket)
    assert archive.sha256 == sha256 and archive.size == len(upload["buffer"])
    assert archive.name == "logs-2024.tar.gz"
    # The token state was asked again: one attempt used.
    status.get_by_text("2 upload attempts left").wait_for()
    assert page.locator("#cancel").is_hidden() and page.locator("#start").is_disabled()


def test_several_files_dropped_go_one_after_another(page, ticket, dbsession):
    open_page(page, ticket)
    files = [("first.log", b"one\n" * 1000), ("second.log", b"two\n" * 2000)]
    # A real drop event carrying File objects, as the browser makes when files are dropped.
    transfer = page.evaluate_handle("""(files) => {
        const transfer = new DataTransfer();
        for (const [name, text] of files) { transfer.items.add(new File([text], name)); }
        return transfer;
    }""", [[name, data.decode()] for name, data in files])
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": transfer})
    assert page.locator(".upload-item").count() == 2
    page.click("#start")
    page.locator(".upload-item[data-state=done]").nth(1).wait_for()
    results = page.locator(".upload-result").all()
    by_name = {a.name: a.sha256 for a in archives_of(dbsession, ticket)}
    for (name, data), result in zip(files, results, strict=True):
        assert result.get_attribute("data-sha256") == hashlib.sha256(data).hexdigest()
        assert by_name[name] == hashlib.sha256(data).hexdigest()
    assert attempts_left(dbsession, ticket) == 1
    page.locator("#token-status").get_by_text("1 upload attempt left").wait_for()


@pytest.mark.parametrize("change, detail", [
    ({"resolved": True}, "ticket 4711 already resolved"),
    ({"attempts": 0}, "no upload attempts left"),
])
def test_refused_token_shows_the_servers_detail(page, ticket, dbsession, change, detail):
    update_ticket(dbsession, ticket, **change)
    page.goto(f"/upload#token={ticket.token}")
    status = page.locator("#token-status")
    status.get_by_text(detail).wait_for()
    assert "cannot be used" in status.text_content()
    assert "alert-danger" in status.get_attribute("class")
    # Trying anyway sends nothing: the token is checked before each file.
    page.set_input_files("#files", files=[payload("a.log", 1000)])
    page.click("#start")
    item = page.locator(".upload-item[data-state=refused]")
    assert detail in item.locator(".upload-result").text_content()
    assert archives_of(dbsession, ticket) == []


def test_unknown_token(page):
    page.goto("/upload#token=not-a-real-token")
    page.locator("#token-status").get_by_text("upload token is not valid").wait_for()


def test_upload_refused_by_the_server_shows_its_detail(page, ticket, dbsession):
    open_page(page, ticket)
    # The ticket is resolved between the page's check and the upload: the check is made to
    # answer as before, so the upload itself reaches the server and is refused there.
    state = page.evaluate("t => fetch('/api/v1/check/token/' + t).then(r => r.json())",
                          ticket.token)
    update_ticket(dbsession, ticket, resolved=True)
    page.route("**/api/v1/check/token/**", lambda route: route.fulfill(
        status=200, content_type="application/json", body=json.dumps(state)))
    page.set_input_files("#files", files=[payload("late.log", 5000)])
    page.click("#start")
    result = page.locator(".upload-item[data-state=refused] .upload-result")
    assert result.text_content() == ("The server refused the upload (HTTP 423): "
                                     "ticket 4711 already resolved.")
    assert archives_of(dbsession, ticket) == []


def test_dropped_connection_says_so_and_retry_works(page, ticket, dbsession, screenshot):
    open_page(page, ticket)
    page.route("**/api/v1/archives/", lambda route: route.abort("connectionreset"))
    upload = payload("flaky.tar.gz", 200_000)
    page.set_input_files("#files", files=[upload])
    page.click("#start")
    item = page.locator(".upload-item[data-state=failed]")
    assert item.locator(".upload-result").text_content() == (
        "The upload did not complete — check your connection and try again.")
    screenshot(page, "upload-failed")
    # Nothing reached the server, so nothing was stored and no attempt was spent.
    assert archives_of(dbsession, ticket) == [] and attempts_left(dbsession, ticket) == 3

    page.unroute("**/api/v1/archives/")
    item.locator(".upload-retry").click()
    done = page.locator(".upload-item[data-state=done] .upload-result")
    assert done.get_attribute("data-sha256") == hashlib.sha256(upload["buffer"]).hexdigest()
    assert len(archives_of(dbsession, ticket)) == 1


def test_cancel_and_leaving_warning_while_uploading(page, ticket, dbsession):
    open_page(page, ticket)
    held = []
    # The upload request is held (never answered) so that it is "running" for the test.
    page.route("**/api/v1/archives/", lambda route: held.append(route))
    page.set_input_files("#files", files=[payload("big.tar.gz", 100_000)])
    with page.expect_request("**/api/v1/archives/"):
        page.click("#start")
    page.locator(".upload-item[data-state=uploading]").wait_for()
    cancel = page.locator("#cancel")
    assert cancel.is_visible()
    assert page.locator("#token").get_attribute("readonly") is not None
    assert page.get_by_role("progressbar", name="Upload progress of big.tar.gz").is_visible()
    # Leaving the page now asks first (the beforeunload handler cancels the event).
    asked = page.evaluate("""() => {
        const event = new Event('beforeunload', {cancelable: true});
        window.dispatchEvent(event);
        return event.defaultPrevented;
    }""")
    assert asked is True

    cancel.click()
    item = page.locator(".upload-item[data-state=cancelled]")
    assert "Cancelled" in item.locator(".upload-result").text_content()
    assert item.locator(".upload-retry").is_visible() and cancel.is_hidden()
    assert page.evaluate("""() => {
        const event = new Event('beforeunload', {cancelable: true});
        window.dispatchEvent(event);
        return event.defaultPrevented;
    }""") is False
    assert archives_of(dbsession, ticket) == []


def test_empty_file_is_refused_before_sending(page, ticket):
    open_page(page, ticket)
    page.set_input_files("#files", files=[payload("empty.log", 0)])
    item = page.locator(".upload-item[data-state=refused]")
    assert item.locator(".upload-result").text_content() == "This file is empty."
    assert page.locator("#start").is_disabled()


def test_phone_layout(browser, live_server, ticket, screenshot):
    context = browser.new_context(base_url=live_server, viewport={"width": 375, "height": 740},
                                  is_mobile=True, has_touch=True, device_scale_factor=2)
    try:
        page = context.new_page()
        open_page(page, ticket)
        screenshot(page, "upload-phone")
        # Nothing wider than the screen: no sideways scrolling on a phone.
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        for field in ("#token", "#files", "#start"):
            assert page.locator(field).is_visible()
        assert page.get_by_label("Upload token").input_value() == ticket.token
    finally:
        context.close()


def test_expiry_is_shown(page, factory):
    expires = dt.datetime(2099, 5, 17, 12, 30, tzinfo=dt.UTC)
    ticket = factory.ticket(factory.platform("lin"), 99, attempts=1, expires_at=expires)
    status = open_page(page, ticket)
    text = status.text_content()
    assert "Ticket 99: 1 upload attempt left, valid until" in text and "2099" in text


@pytest.mark.parametrize("status, body, message, state", [
    (413, {"detail": "archive too large: 70000000 bytes, the limit is 67108864"},
     "The server refused the upload (HTTP 413): archive too large: 70000000 bytes, the limit "
     "is 67108864.", "refused"),
    (507, {"detail": "not enough free space on the server"},
     "The server refused the upload (HTTP 507): not enough free space on the server.",
     "refused"),
    (502, "<html>Bad Gateway</html>",
     "The server could not store the file (HTTP 502). Try again in a few minutes; if it keeps "
     "failing, tell support.", "failed"),
])
def test_other_answers_are_explained(page, ticket, status, body, message, state):
    # What a proxy or a full disk answers, made here: the page's wording for each.
    open_page(page, ticket)
    page.route("**/api/v1/archives/", lambda route: route.fulfill(
        status=status, body=body if isinstance(body, str) else json.dumps(body),
        content_type="text/html" if isinstance(body, str) else "application/json"))
    page.set_input_files("#files", files=[payload("x.log", 1000)])
    page.click("#start")
    item = page.locator(f".upload-item[data-state={state}]")
    assert item.locator(".upload-result").text_content() == message
    assert item.locator(".upload-retry").is_visible() is (state == "failed")
