"""The upload page in Chromium: from the customer's link to a stored, verified archive.

The page speaks tus (``/api/v1/uploads/``); the tests make its chunks small (through the
form's ``data-chunk-size``) so a few megabytes go in several chunks, and its waits between
retries short (``data-retry-delays``), and drop requests with ``page.route``.
"""

import datetime as dt
import hashlib
import json
import os
import re

import pytest
from sqlalchemy import select

from collector.archives.models import Archive, TusUpload
from collector.tickets.models import Ticket

pytestmark = pytest.mark.slow

# Each item's state is in data-state; these are the ones an upload ends in.
FINISHED = "[data-state=done], [data-state=failed], [data-state=refused], [data-state=cancelled]"
MiB = 1024 * 1024
UPLOADS = "/api/v1/uploads/"


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


def configure(page, chunk_size=None, retry_delays=None):
    """The page's chunk size and waits between retries (ms), for this test."""
    page.evaluate("""([chunk, delays]) => {
        const form = document.getElementById('upload-form');
        if (chunk) { form.setAttribute('data-chunk-size', String(chunk)); }
        if (delays) { form.setAttribute('data-retry-delays', delays); }
    }""", [chunk_size, retry_delays])


def tus_requests(page):
    """Every request the page makes to the tus endpoints: (method, Upload-Offset)."""
    seen = []
    page.on("request", lambda request: seen.append(
        (request.method, request.headers.get("upload-offset")))
        if UPLOADS in request.url else None)
    return seen


def stored_entries(page):
    return page.evaluate("""() => Object.keys(localStorage)
        .filter(key => key.startsWith('collector.upload.'))""")


def uploads_of(dbsession, ticket, unfinished=True):
    """The ticket's tus uploads; a finished one stays (its HEAD names the archive)."""
    dbsession.expire_all()
    query = select(TusUpload).where(TusUpload.ticket_id == ticket.id)
    if unfinished:
        query = query.where(TusUpload.finished_at.is_(None))
    return dbsession.scalars(query).all()


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


def test_upload_one_file(page, ticket, dbsession, screenshot, live_server):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server)
    status = open_page(page, ticket)
    configure(page, chunk_size=1 * MiB)
    requests = tus_requests(page)
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
    # tus: one creation, then four chunks (3 MiB + 17 bytes in 1 MiB pieces), in order.
    assert requests == [("POST", None)] + [("PATCH", str(n * MiB)) for n in range(4)], requests
    # The receipt: what the server answered to the last chunk, shown and copyable.
    receipt = item.locator(".upload-receipt")
    assert receipt.is_visible()
    assert receipt.locator(".receipt-ticket").text_content() == "4711"
    assert receipt.locator(".receipt-file").text_content() == "logs-2024.tar.gz"
    assert receipt.locator(".receipt-size").text_content() == "3.1 MB (3145745 bytes)"
    assert receipt.locator(".receipt-sha-256").text_content() == sha256
    assert receipt.locator(".receipt-archive-id").text_content() == str(archive.id)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC",
                        receipt.locator(".receipt-stored").text_content())
    receipt.get_by_role("button", name="Copy receipt").click()
    receipt.get_by_role("button", name="Copied").wait_for()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied.splitlines()[0] == "Ticket: 4711" and f"SHA-256: {sha256}" in copied
    assert f"Archive ID: {archive.id}" in copied
    # The token state was asked again: one attempt used; nothing is left to resume.
    status.get_by_text("2 upload attempts left").wait_for()
    assert page.locator("#cancel").is_hidden() and page.locator("#start").is_disabled()
    assert stored_entries(page) == [] and uploads_of(dbsession, ticket) == []


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
    page.route("**/api/v1/uploads/", lambda route: route.abort("connectionreset"))
    upload = payload("flaky.tar.gz", 200_000)
    page.set_input_files("#files", files=[upload])
    page.click("#start")
    item = page.locator(".upload-item[data-state=failed]")
    assert item.locator(".upload-result").text_content() == (
        "The upload did not complete — check your connection and try again.")
    screenshot(page, "upload-failed")
    # Nothing reached the server, so nothing was stored and no attempt was spent.
    assert archives_of(dbsession, ticket) == [] and attempts_left(dbsession, ticket) == 3

    page.unroute("**/api/v1/uploads/")
    item.locator(".upload-retry").click()
    done = page.locator(".upload-item[data-state=done] .upload-result")
    assert done.get_attribute("data-sha256") == hashlib.sha256(upload["buffer"]).hexdigest()
    assert len(archives_of(dbsession, ticket)) == 1
    assert attempts_left(dbsession, ticket) == 2


@pytest.mark.parametrize("failure", ["connectionreset", 409, 503])
def test_a_dropped_chunk_is_resent_from_the_servers_offset(page, ticket, dbsession, failure):
    open_page(page, ticket)
    configure(page, chunk_size=256 * 1024, retry_delays="50 100")
    requests = tus_requests(page)
    dropped = []

    def drop_second_chunk(route):
        request = route.request
        if request.method == "PATCH" and request.headers.get("upload-offset") == "262144" \
                and not dropped:
            dropped.append(request.url)
            if isinstance(failure, int):
                route.fulfill(status=failure, content_type="application/json",
                              body=json.dumps({"detail": "busy"}))
            else:
                route.abort(failure)
        else:
            route.continue_()

    page.route(lambda url: UPLOADS in url, drop_second_chunk)
    upload = payload("flaky-line.tar.gz", 1 * MiB + 5)
    page.set_input_files("#files", files=[upload])
    page.click("#start")
    item = page.locator(".upload-item")
    item.and_(page.locator(FINISHED)).wait_for()
    assert item.get_attribute("data-state") == "done", item.text_content()
    # The dropped chunk: the page asked the server's offset (HEAD) and sent it again.
    chunks = [str(n * 256 * 1024) for n in range(5)]
    assert requests == ([("POST", None), ("PATCH", chunks[0]), ("PATCH", chunks[1]),
                         ("HEAD", None)] + [("PATCH", offset) for offset in chunks[1:]]), \
        requests
    sha256 = hashlib.sha256(upload["buffer"]).hexdigest()
    assert item.locator(".upload-result").get_attribute("data-sha256") == sha256
    (archive,) = archives_of(dbsession, ticket)
    assert archive.sha256 == sha256 and attempts_left(dbsession, ticket) == 2


def test_resume_after_closing_the_page(context, page, factory, dbsession, tmp_path):
    # One attempt only: after the creation reserved it the token has none left, and the
    # page must still be able to finish the upload it started.
    ticket = factory.ticket(factory.platform("vm6"), 4712, attempts=1)
    data = os.urandom(3 * MiB + 1000)
    path = tmp_path / "node1-logs.tar.gz"  # a real file: its lastModified is the same twice
    path.write_bytes(data)
    open_page(page, ticket)
    configure(page, chunk_size=1 * MiB, retry_delays="600000")
    held = []

    # The first chunk reaches the server; the second is held, then dropped.
    def hold_after_first(route):
        if route.request.method == "PATCH" and route.request.headers["upload-offset"] != "0":
            held.append(route)
        else:
            route.continue_()

    page.route(lambda url: UPLOADS in url, hold_after_first)
    page.set_input_files("#files", str(path))
    with page.expect_request(lambda request: request.method == "PATCH"
                             and request.headers["upload-offset"] == str(MiB)):
        page.click("#start")
    (upload,) = uploads_of(dbsession, ticket)
    assert upload.offset == MiB and attempts_left(dbsession, ticket) == 0
    assert len(stored_entries(page)) == 1
    # The line dies under the second chunk; the page would try again later, but the
    # customer closes the tab first (or the browser dies).
    held[0].abort("connectionreset")
    page.locator(".upload-item .upload-progress").get_by_text("trying again").wait_for()
    page.close()

    again = context.new_page()
    errors = []
    again.on("pageerror", lambda error: errors.append(str(error)))
    requests = tus_requests(again)
    again.goto(f"/upload#token={ticket.token}")
    again.locator("#token-status").get_by_text("no upload attempts left").wait_for()
    configure(again, chunk_size=1 * MiB)
    again.set_input_files("#files", str(path))
    item = again.locator(".upload-item")
    assert "continues an earlier upload" in item.locator(".upload-progress").text_content()
    again.click("#start")
    item.and_(again.locator(FINISHED)).wait_for()
    assert item.get_attribute("data-state") == "done", item.text_content()
    # No creation and the first chunk not sent again: HEAD, then the rest from 1 MiB.
    assert requests == [("HEAD", None), ("PATCH", str(MiB)), ("PATCH", str(2 * MiB)),
                        ("PATCH", str(3 * MiB))], requests
    sha256 = hashlib.sha256(data).hexdigest()
    assert item.locator(".upload-result").get_attribute("data-sha256") == sha256
    assert item.locator(".receipt-ticket").text_content() == "4712"
    (archive,) = archives_of(dbsession, ticket)
    assert archive.sha256 == sha256 and archive.size == len(data)
    assert archive.name == "node1-logs.tar.gz"
    assert attempts_left(dbsession, ticket) == 0  # reserved once, by the first creation
    assert stored_entries(again) == [] and uploads_of(dbsession, ticket) == []
    again.close()
    assert not errors, errors


def test_retry_after_a_failure_resumes_and_says_so(page, ticket, dbsession, tmp_path):
    path = tmp_path / "half.log"
    data = os.urandom(2 * MiB)
    path.write_bytes(data)
    open_page(page, ticket)
    configure(page, chunk_size=1 * MiB, retry_delays="20 20")
    # Every request after the first chunk fails: the page gives up after its retries.
    page.route(lambda url: UPLOADS in url, lambda route: route.continue_()
               if route.request.method == "POST" or route.request.headers.get(
                   "upload-offset") == "0" else route.abort("connectionreset"))
    page.set_input_files("#files", str(path))
    page.click("#start")
    failed = page.locator(".upload-item[data-state=failed]")
    assert failed.locator(".upload-result").text_content() == (
        "The upload did not complete — check your connection and try again. Retry continues "
        "where it stopped.")
    (upload,) = uploads_of(dbsession, ticket)
    assert upload.offset == MiB
    # The connection is back: Retry continues from the server's offset, and says so.
    page.unroute_all()
    requests = tus_requests(page)
    page.evaluate("""() => { window.results = [];
        new MutationObserver(() => window.results.push(
            document.querySelector('.upload-item .upload-result').textContent))
        .observe(document.querySelector('.upload-item .upload-result'),
                 {childList: true, characterData: true, subtree: true}); }""")
    failed.locator(".upload-retry").click()
    done = page.locator(".upload-item[data-state=done]")
    assert done.locator(".upload-result").get_attribute("data-sha256") == \
        hashlib.sha256(data).hexdigest()
    assert any(text.startswith("Resuming from 50 %") for text in page.evaluate(
        "window.results")), page.evaluate("window.results")
    assert requests == [("HEAD", None), ("PATCH", str(MiB))], requests
    assert attempts_left(dbsession, ticket) == 2


def test_an_upload_gone_from_the_server_starts_again_once(page, ticket, dbsession):
    open_page(page, ticket)
    configure(page, chunk_size=256 * 1024)
    requests = tus_requests(page)
    gone = []

    def expire_first(route):
        if route.request.method == "PATCH" and not gone:
            gone.append(route.request.url)
            route.fulfill(status=410, content_type="application/json",
                          body=json.dumps({"detail": "this upload has expired"}))
        else:
            route.continue_()

    page.route(lambda url: UPLOADS in url, expire_first)
    upload = payload("again.tar.gz", 600_000)
    page.set_input_files("#files", files=[upload])
    page.click("#start")
    done = page.locator(".upload-item[data-state=done] .upload-result")
    assert done.get_attribute("data-sha256") == hashlib.sha256(upload["buffer"]).hexdigest()
    assert requests == [("POST", None), ("PATCH", "0"), ("POST", None), ("PATCH", "0"),
                        ("PATCH", "262144"), ("PATCH", "524288")], requests
    (archive,) = archives_of(dbsession, ticket)
    assert archive.sha256 == hashlib.sha256(upload["buffer"]).hexdigest()


def test_cancel_and_leaving_warning_while_uploading(page, ticket, dbsession):
    open_page(page, ticket)
    configure(page, chunk_size=64 * 1024)
    held = []

    # The second chunk is held (never answered) so that the upload is "running" for the test.
    def hold(route):
        if route.request.method == "PATCH" and route.request.headers["upload-offset"] != "0":
            held.append(route)
        else:
            route.continue_()

    page.route(lambda url: UPLOADS in url, hold)
    page.set_input_files("#files", files=[payload("big.tar.gz", 200_000)])
    with page.expect_request(lambda request: request.method == "PATCH"
                             and request.headers["upload-offset"] == "65536"):
        page.click("#start")
    assert attempts_left(dbsession, ticket) == 2  # the creation reserved one
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

    # Cancel terminates the upload on the server (DELETE), which gives the attempt back.
    with page.expect_response(lambda response: response.request.method == "DELETE") as deleted:
        cancel.click()
    assert deleted.value.status == 204
    item = page.locator(".upload-item[data-state=cancelled]")
    assert item.locator(".upload-result").text_content() == (
        "Cancelled: the partly sent file was removed from the server and the upload attempt "
        "was given back.")
    assert item.locator(".upload-retry").is_visible() and cancel.is_hidden()
    assert page.evaluate("""() => {
        const event = new Event('beforeunload', {cancelable: true});
        window.dispatchEvent(event);
        return event.defaultPrevented;
    }""") is False
    assert archives_of(dbsession, ticket) == [] and uploads_of(dbsession, ticket) == []
    assert attempts_left(dbsession, ticket) == 3 and stored_entries(page) == []


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
    page.route("**/api/v1/uploads/", lambda route: route.fulfill(
        status=status, body=body if isinstance(body, str) else json.dumps(body),
        content_type="text/html" if isinstance(body, str) else "application/json"))
    page.set_input_files("#files", files=[payload("x.log", 1000)])
    page.click("#start")
    item = page.locator(f".upload-item[data-state={state}]")
    assert item.locator(".upload-result").text_content() == message
    assert item.locator(".upload-retry").is_visible() is (state == "failed")
