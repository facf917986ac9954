"""The upload page in Chromium: from the customer's link to a stored, verified archive.

The page speaks tus (``/api/v1/uploads/``); the tests make its chunks small (through the
form's ``data-chunk-size``) so a few megabytes go in several chunks, and its waits between
retries short (``data-retry-delays``), and drop requests with ``page.route``.
"""

import hashlib
import json
import os
import re

import pytest

from .upload_helpers import (
    FINISHED,
    UPLOADS,
    MiB,
    archives_of,
    attempts_left,
    configure,
    open_page,
    payload,
    shown,
    stored_entries,
    throttle,
    tus_requests,
    uploads_of,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def ticket(factory):
    return factory.ticket(factory.platform("vm6"), 4711, attempts=3)


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
    # Binary units, as everywhere in the product: 3 MiB, not 3.1 MB.
    assert item.locator(".upload-size").text_content() == "3 MiB"
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
    # Percentage, speed and time left while it runs ("42 % · 1.4 MiB/s · 1 s left").
    texts = page.evaluate("window.texts")
    assert any(re.fullmatch(r"\d+ % · [\d.]+ (KiB|MiB)/s · \d+ s left", text)
               for text in texts), texts
    assert any(text.startswith("100 % sent in") for text in texts), texts
    assert item.locator(".progress").get_attribute("aria-valuenow") == "100"
    sha256 = hashlib.sha256(upload["buffer"]).hexdigest()
    result = item.locator(".upload-result")
    assert result.get_attribute("data-sha256") == sha256
    assert sha256 in result.text_content() and "3145745 bytes" in result.text_content()
    (archive,) = archives_of(dbsession, ticket)
    assert archive.sha256 == sha256 and archive.size == len(upload["buffer"])
    assert archive.name == "logs-2024.tar.gz"
    # tus: one creation, then four chunks (3 MiB + 17 bytes in 1 MiB pieces), in order; the
    # last one's answer has no body, so the receipt is asked with GET.
    assert requests == [("POST", None)] + [("PATCH", str(n * MiB)) for n in range(4)] + [
        ("GET", None)], requests
    # The receipt, shown and copyable.
    receipt = item.locator(".upload-receipt")
    assert receipt.is_visible()
    assert receipt.locator(".receipt-ticket").text_content() == "4711"
    assert receipt.locator(".receipt-file").text_content() == "logs-2024.tar.gz"
    assert receipt.locator(".receipt-size").text_content() == "3 MiB (3145745 bytes)"
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


def test_the_receipt_comes_from_the_headers_when_its_get_fails(page, ticket, dbsession):
    # The last chunk's 204 carries the receipt's headers; GET on the upload gives the whole
    # receipt. Without the GET the page still shows what the headers said.
    open_page(page, ticket)
    page.route(lambda url: UPLOADS in url, lambda route: route.abort("connectionreset")
               if route.request.method == "GET" else route.continue_())
    upload = payload("headers-only.log", 5000)
    page.set_input_files("#files", files=[upload])
    page.click("#start")
    item = page.locator(".upload-item[data-state=done]")
    sha256 = hashlib.sha256(upload["buffer"]).hexdigest()
    assert item.locator(".receipt-sha-256").text_content() == sha256
    (archive,) = archives_of(dbsession, ticket)
    assert item.locator(".receipt-archive-id").text_content() == str(archive.id)
    assert item.locator(".receipt-size").text_content() == "4.9 KiB (5000 bytes)"
    assert item.locator(".receipt-file").text_content() == "headers-only.log"


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
                         ("HEAD", None)] + [("PATCH", offset) for offset in chunks[1:]]
                        + [("GET", None)]), requests
    sha256 = hashlib.sha256(upload["buffer"]).hexdigest()
    assert item.locator(".upload-result").get_attribute("data-sha256") == sha256
    (archive,) = archives_of(dbsession, ticket)
    assert archive.sha256 == sha256 and attempts_left(dbsession, ticket) == 2


def test_reopened_page_offers_the_stopped_upload_and_resumes_it(context, page, factory,
                                                                 dbsession, tmp_path):
    # One attempt only: after the creation reserved it the token has none left, and the
    # page must still be able to finish the upload it started, without calling the token
    # used up or expired.
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
    # customer closes the tab first (or reloads it, or the browser dies).
    held[0].abort("connectionreset")
    page.locator(".upload-item .upload-progress").get_by_text("trying again").wait_for()
    page.close()

    again = context.new_page()
    errors = []
    again.on("pageerror", lambda error: errors.append(str(error)))
    requests = tus_requests(again)
    again.goto(f"/upload#token={ticket.token}")
    status = again.locator("#token-status")
    # 1 MiB of 3 MiB + 1000 bytes: 33 %, in a calm message, not a red one.
    status.get_by_text("An upload of node1-logs.tar.gz stopped at 33 %. Choose the same "
                       "file to continue.", exact=True).wait_for()
    assert "alert-danger" not in status.get_attribute("class")
    text = shown(again)
    for word in ("expired", "attempts left", "cannot be used", ticket.token):
        assert word not in text, word
    configure(again, chunk_size=1 * MiB)
    # Another file cannot be sent: the link can only finish the stopped upload.
    again.set_input_files("#files", files=[payload("other.log", 1000)])
    other = again.locator(".upload-item[data-state=blocked]")
    assert other.locator(".upload-result").text_content().startswith(
        "Not sent: this link can only finish the stopped upload, not start a new one.")
    assert again.locator("#start").is_disabled()
    # The same file: it continues where it stopped.
    again.set_input_files("#files", str(path))
    item = again.locator(".upload-item").nth(1)
    assert item.locator(".upload-progress").text_content() == (
        "Ready to upload: continues the upload stopped at 33 %")
    assert again.locator("#start").is_enabled()
    again.evaluate("""() => { window.said = [];
        const status = document.getElementById('token-status');
        new MutationObserver(() => window.said.push(status.textContent))
            .observe(status, {childList: true, characterData: true, subtree: true}); }""")
    again.click("#start")
    item.and_(again.locator(FINISHED)).wait_for()
    # While it ran, the page did not offer it again.
    assert "Continuing the stopped upload of node1-logs.tar.gz." in again.evaluate(
        "window.said")
    assert item.get_attribute("data-state") == "done", item.text_content()
    # No creation and the first chunk not sent again: HEAD, then the rest from 1 MiB, then
    # the receipt.
    assert requests == [("HEAD", None), ("PATCH", str(MiB)), ("PATCH", str(2 * MiB)),
                        ("PATCH", str(3 * MiB)), ("GET", None)], requests
    sha256 = hashlib.sha256(data).hexdigest()
    assert item.locator(".upload-result").get_attribute("data-sha256") == sha256
    assert item.locator(".receipt-sha-256").text_content() == sha256
    assert item.locator(".receipt-ticket").text_content() == "4712"
    (archive,) = archives_of(dbsession, ticket)
    assert archive.sha256 == sha256 and archive.size == len(data)
    assert archive.name == "node1-logs.tar.gz"
    assert attempts_left(dbsession, ticket) == 0  # reserved once, by the first creation
    assert stored_entries(again) == [] and uploads_of(dbsession, ticket) == []
    # Nothing is left to finish: now the link is used up, and the page says so, once.
    status.get_by_text("This upload link has been used for as many files as it allows."
                       ).wait_for()
    assert again.locator("#start").is_disabled()
    assert other.count() == 0 and again.locator(".upload-item[data-state=ready]").count() == 1
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
    assert requests == [("HEAD", None), ("PATCH", str(MiB)), ("GET", None)], requests
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
                        ("PATCH", "262144"), ("PATCH", "524288"), ("GET", None)], requests
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
