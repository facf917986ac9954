"""What the account and webhook pages do in Chromium: recovery codes copied and saved as a
file made in the browser (with the keyboard), a webhook's secret copied from the one page
that shows it, their tables at phone width without sideways scrolling, and the ticket
search's automatic retry going to its marked address."""

import threading

import pytest

from collector.archives.inspect import index, store

PHONE = {"width": 390, "height": 844}


@pytest.fixture
def clipboard(context, live_server):
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server)


def _no_sideways_scrolling(page):
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_recovery_codes_are_copied_and_downloaded_by_keyboard(page, factory, sign_in,
                                                              clipboard, tmp_path, screenshot):
    user = factory.user("dana")
    sign_in(page, user)
    page.goto("/account/")
    page.once("dialog", lambda dialog: dialog.accept())  # "Make 10 new recovery codes?"
    with page.expect_navigation():
        page.click("#regenerate-recovery-codes")
    codes = [text.strip() for text in page.locator("#recovery-codes code").all_text_contents()]
    assert len(codes) == 10

    page.focus("#recovery-copy")
    page.keyboard.press("Enter")
    page.locator("#recovery-status", has_text="Copied").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == "\n".join(codes)

    page.focus("#recovery-download")
    with page.expect_download() as info:
        page.keyboard.press(" ")
    download = info.value
    assert download.suggested_filename == "logs-collector-recovery-codes-dana.txt"
    saved = tmp_path / "codes.txt"
    download.save_as(saved)
    lines = saved.read_text(encoding="utf-8").splitlines()
    assert lines[0].endswith("recovery codes of dana. Each signs in once instead of a "
                             "6-digit code.") and lines[1] == ""
    assert lines[2:] == codes
    assert "Saved as logs-collector-recovery-codes-dana.txt" in page.text_content(
        "#recovery-status")
    screenshot(page, "recovery-codes")


def test_a_new_webhook_secret_is_copied_and_the_admin_tables_fit_a_phone(
        page, factory, sign_in, clipboard, screenshot):
    admin = factory.user("erin", admin=True)
    factory.platform("vm6")
    sign_in(page, admin)
    page.goto("/admin/webhooks/")
    page.fill("#wh-url", "https://helpdesk.support.example.com/api/integrations/v2/hooks/"
              "logs-collector?tenant=acme-industries&token=abcdefghijklmnopqrstuvwxyz")
    with page.expect_navigation():
        page.click("#create-webhook-form button[type=submit]")
    secret = page.text_content("#secret-value")
    page.click("#secret-copy")
    page.locator("#secret-status", has_text="Copied").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == secret
    screenshot(page, "webhook-secret-shown")

    page.set_viewport_size(PHONE)
    for path in ("/admin/webhooks/", "/admin/users/", f"/admin/users/{admin.id}/",
                 "/account/"):
        page.goto(path)
        assert _no_sideways_scrolling(page), path
        screenshot(page, "phone" + path.replace("/", "-").rstrip("-"))
    # Stacked: each cell on a line of its own, its label before it.
    page.goto("/admin/webhooks/")
    url_cell = page.locator("#webhook-list td.url")
    assert url_cell.evaluate("cell => getComputedStyle(cell).display") == "block"
    assert url_cell.evaluate("cell => getComputedStyle(cell, '::before').content") == '"URL"'


@pytest.fixture
def held_builds(monkeypatch):
    """Index builds wait until released: the search runs while one is being built."""
    release, real_build = threading.Event(), index.build

    def held(*args, **kwargs):
        release.wait(20)
        return real_build(*args, **kwargs)

    monkeypatch.setattr(index, "build", held)
    yield release.set
    release.set()
    store.wait_for_builders()


def test_the_ticket_search_retries_at_its_marked_address(page, factory, sign_in, held_builds):
    user = factory.user("frank")
    ticket = factory.ticket(factory.platform("vm6"), 4900, user=user)
    answer = page.request.post("/api/v1/archives/", headers={"Upload-Token": ticket.token},
                               multipart={"file": {"name": "two.log", "mimeType": "text/plain",
                                                   "buffer": b"NEEDLE\n"}})
    assert answer.status == 201, answer.text()
    sign_in(page, user)
    page.goto("/platforms/vm6/tickets/4900/search?q=NEEDLE")
    page.locator("#index-building").wait_for()
    marked = page.get_attribute("#index-building", "data-reload-url")
    assert "&retry_of=" in marked
    entries = page.evaluate("history.length")
    held_builds()
    # The script goes to the marked address (replacing the page), which finds the hit.
    page.wait_for_url(marked)
    page.locator("section.search-archive tr.hit").first.wait_for()
    # Replaced, not added: Back leaves the search instead of stepping through its retries.
    assert page.evaluate("history.length") == entries
