"""The whole flow in Chromium, as staff and customer do it: first-run setup, 2FA enrolment,
a platform and a ticket made through the pages, the customer's upload in a browser of its
own, then download and deletion of the archive, and signing out.

The screenshots of docs/staff-guide.md and the README (``docs/screenshots/``) are taken
here, at a laptop's size.
"""

import hashlib
import os
import time

import pyotp
import pytest

from collector.accounts.services import make_setup_code

from .conftest import TIMEOUT_MS, PageProblems

pytestmark = pytest.mark.slow

LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
USERNAME = "alice"
PASSWORD = "correct horse battery staple"
UPLOAD_SIZE = 4 * 1024 * 1024 + 123
FINISHED = "[data-state=done], [data-state=failed], [data-state=refused], [data-state=cancelled]"


def code_of_next_step(secret):
    """A code of the next 30 s step: accepted now (±1 step), and never one used before.

    A code is accepted once per step; the enrolment used the current one, so a sign-in
    right after needs the next step's code rather than a wait of up to 30 s.
    """
    totp = pyotp.TOTP(secret)
    return totp.at(time.time() + totp.interval)


def older_tickets(factory, dbsession):
    """Two tickets made earlier (not through the pages): the list shows other states too."""
    from collector.accounts.services import get_user_by_name
    from collector.tickets.services import require_platform, update_ticket

    platform, alice = require_platform(dbsession, "vm6"), get_user_by_name(dbsession, USERNAME)
    done = factory.ticket(platform, 4698, user=alice, note="Slow backups; fixed in 6.1.3.")
    update_ticket(dbsession, done, resolved=True)
    factory.ticket(platform, 4705, user=alice, attempts=0, note="Kernel oops on boot.")
    dbsession.commit()


def archive_files(data_dir):
    return sorted(path for path in (data_dir / "archives").glob("??/*") if path.is_file())


@pytest.fixture
def customer(browser, live_server):
    """A page in a context of its own (no staff cookies): the customer's browser."""
    context = browser.new_context(base_url=live_server, locale="en-GB", timezone_id="UTC",
                                  viewport=LAPTOP)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    # Watched as the page fixture watches the staff's page.
    problems = PageProblems(page)
    yield page
    context.close()
    assert not problems.errors, "\n".join(problems.errors)


def test_setup_enrol_ticket_upload_download_delete(page, customer, live_server, data_dir,
                                                   tmp_path, factory, dbsession, screenshot):
    page.set_viewport_size(LAPTOP)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server)

    # --- first run: the code `collector serve` prints; / leads to the setup page ---------
    setup_code = make_setup_code(data_dir)
    page.goto("/")
    page.wait_for_url("**/setup")
    page.fill("#setup_code", setup_code)
    page.fill("#username", USERNAME)
    page.fill("#email", "alice@example.com")
    page.fill("#password", PASSWORD)
    page.fill("#password_confirm", PASSWORD)
    screenshot(page, "setup")
    page.click("#setup-submit")

    # --- enrolment: QR code and secret, one code confirms, recovery codes once ------------
    page.wait_for_url("**/enrol")
    assert page.locator("#totp-qr svg").is_visible()
    secret = page.text_content("#totp-secret").strip()
    assert len(secret) >= 16
    screenshot(page, "enrol")
    page.fill("#code", pyotp.TOTP(secret).now())
    page.click("#enrol-submit")
    codes = page.locator("#recovery-codes .recovery-code")
    codes.first.wait_for()
    assert "Two-factor authentication is set up" in page.text_content("main")
    recovery = codes.all_text_contents()
    assert len(recovery) == 10 and len(set(recovery)) == 10, recovery
    screenshot(page, "recovery-codes")
    page.click("#recovery-continue")
    page.wait_for_url("**/tickets/")

    # --- a platform and a ticket, through the forms ---------------------------------------
    page.goto("/platforms/")
    page.fill("#platform-name", "vm6")
    page.fill("#platform-pretty-name", "Virtual Machine 6")
    page.click("#create-platform-submit")
    page.get_by_text("Platform vm6 created.").wait_for()
    page.goto("/platforms/")
    assert page.locator("#platform-vm6").is_visible()
    screenshot(page, "platforms")
    older_tickets(factory, dbsession)

    page.goto("/tickets/new")
    page.fill("#ticket-number", "4711")
    page.select_option("#ticket-platform", "vm6")
    page.fill("#ticket-attempts", "3")
    page.fill("#ticket-lifetime", "14")
    page.fill("#ticket-note", "Crash of the storage node after the 6.2 upgrade.")
    page.click("#ticket-submit")
    page.get_by_text("Ticket 4711 created.").wait_for()
    ticket_url = page.url
    assert ticket_url.endswith("/platforms/vm6/tickets/4711/")
    assert page.locator("#no-archives").is_visible()

    # --- the token through the Copy button and the clipboard ------------------------------
    # http://127.0.0.1 is a secure context, so the page uses navigator.clipboard.
    token = page.text_content("#ticket-token").strip()
    page.click("#copy-token")
    page.locator("#copy-token", has_text="Copied").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == token
    upload_link = page.get_attribute("#upload-link", "href")
    assert upload_link == f"{live_server}/upload#token={token}"

    # --- the customer: the link in another browser, a file of a few MB --------------------
    data = os.urandom(UPLOAD_SIZE)
    sha256 = hashlib.sha256(data).hexdigest()
    path = tmp_path / "node3-logs.tar.gz"
    path.write_bytes(data)
    customer.goto(upload_link)
    customer.locator("#token-status").get_by_text("Ticket 4711").wait_for()
    assert customer.context.cookies() == []
    customer.set_input_files("#files", str(path))
    customer.click("#start")
    item = customer.locator(".upload-item")
    item.and_(customer.locator(FINISHED)).wait_for()
    assert item.get_attribute("data-state") == "done", item.text_content()
    assert item.locator(".progress").get_attribute("aria-valuenow") == "100"
    result = item.locator(".upload-result")
    assert result.get_attribute("data-sha256") == sha256
    assert sha256 in result.text_content()
    customer.locator("#token-status").get_by_text("2 upload attempts left").wait_for()
    screenshot(customer, "upload-done")

    # --- staff again: the archive is listed with its sha256 ------------------------------
    page.goto("/tickets/")
    row = page.locator("#ticket-4711")
    assert "vm6" in row.text_content()
    screenshot(page, "tickets")

    page.goto(ticket_url)
    rows = page.locator("#archives tbody")
    assert rows.count() == 1
    archive_id = rows.first.get_attribute("id").removeprefix("archive-")
    archive = page.locator(f"#archive-{archive_id}")
    assert archive.locator(".sha256").text_content() == sha256
    assert "node3-logs.tar.gz" in archive.text_content()
    assert page.text_content("#attempts-left").strip() == "2"
    screenshot(page, "ticket")
    page.set_viewport_size(PHONE)
    screenshot(page, "ticket-phone")
    page.set_viewport_size(LAPTOP)

    # --- download: the very bytes sent ----------------------------------------------------
    with page.expect_download() as info:
        page.click(f"#download-{archive_id}")
    download = info.value
    assert download.suggested_filename == "node3-logs.tar.gz"
    with open(download.path(), "rb") as downloaded:
        assert downloaded.read() == data
    (stored,) = archive_files(data_dir)
    assert stored.stat().st_size == UPLOAD_SIZE

    # --- delete, after the confirmation: gone from the page and from the disk -------------
    asked = []

    def confirm(dialog):
        asked.append(dialog.message)
        dialog.accept()

    page.once("dialog", confirm)
    page.click(f"#delete-{archive_id}")
    page.locator("#no-archives").wait_for()
    assert asked == ["Delete the archive node3-logs.tar.gz? This cannot be undone."]
    assert page.locator(f"#archive-{archive_id}").count() == 0
    assert page.text_content("#archive-count") == "0"
    assert archive_files(data_dir) == []

    # --- the account page, then sign out: protected pages ask for a sign-in -------------
    page.goto("/account/")
    assert page.text_content("#totp-status") == "On"
    assert "10 of 10 recovery codes left" in page.text_content("#recovery-left")
    screenshot(page, "account")
    page.get_by_role("button", name="Sign out").click()
    page.get_by_text("You are signed out.").wait_for()
    page.goto(ticket_url)
    page.wait_for_url("**/login?next=*")
    assert page.input_value("input[name=next]") == "/platforms/vm6/tickets/4711/"

    # Password, then a code of the next step (the current one went to the enrolment).
    page.fill("#username", USERNAME)
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_url("**/verify")
    page.fill("#code", code_of_next_step(secret))
    page.click("#verify-submit")
    page.wait_for_url(ticket_url)
    assert page.locator("#no-archives").is_visible()


def test_cancelled_confirmation_deletes_nothing(page, factory, sign_in, data_dir):
    """Saying no to the browser's confirm keeps the archive and the ticket."""
    user = factory.user("bob", admin=True)
    ticket = factory.ticket(factory.platform("vm6"), 4712, user=user)
    answer = page.request.post("/api/v1/archives/", headers={"Upload-Token": ticket.token},
                               multipart={"file": {"name": "small.log",
                                                   "mimeType": "text/plain",
                                                   "buffer": b"a log line\n" * 100}})
    assert answer.status == 201, answer.text()
    archive_id = answer.json()["id"]
    sign_in(page, user)
    page.goto("/platforms/vm6/tickets/4712/")

    asked = []

    def refuse(dialog):
        asked.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", refuse)
    page.click(f"#delete-{archive_id}")
    page.click("#delete-ticket")
    assert asked == ["Delete the archive small.log? This cannot be undone.",
                     "Delete ticket 4712 and its 1 archive(s)? This cannot be undone."]
    # Nothing was sent: the same page, the archive and its file still there.
    page.reload()
    assert page.locator(f"#archive-{archive_id}").is_visible()
    assert len(archive_files(data_dir)) == 1
