"""Looking inside an archive in Chromium: from the ticket page into the archive's files
(past the page shown while its index is built, which reloads itself), a search, and a hit
followed into the viewer at its line.

The viewer's screenshot in docs/staff-guide.md (``docs/screenshots/inspect-viewer.png``) is taken
here.
"""

import pytest
import sample_archives as samples

pytestmark = pytest.mark.slow

LAPTOP = {"width": 1280, "height": 800}


def test_open_search_and_follow_a_hit_into_the_viewer(page, factory, sign_in, screenshot):
    page.set_viewport_size(LAPTOP)
    user = factory.user("carol")
    ticket = factory.ticket(factory.platform("vm6"), 4800, user=user)
    archive = page.request.post("/api/v1/archives/", headers={"Upload-Token": ticket.token},
                                multipart={"file": {"name": "node3-logs.tar.gz",
                                                    "mimeType": "application/gzip",
                                                    "buffer": samples.tar(compression="gz")}})
    assert archive.status == 201, archive.text()
    archive_id = archive.json()["id"]
    sign_in(page, user)

    page.goto("/platforms/vm6/tickets/4800/")
    page.click(f"#inspect-{archive_id}")
    # The first look builds the index: the page says so and reloads itself until the
    # file list is there (no click needed).
    page.locator("#members").wait_for()
    assert page.locator("#index-building").count() == 0
    rows = page.locator("#members tr.tree-file")
    paths = [rows.nth(i).get_attribute("data-path") for i in range(rows.count())]
    assert {"var/log/syslog", "var/log/app.log", "var/log/syslog.2.gz", "core.bin"} <= \
        set(paths)
    screenshot(page, "inspect-members")

    page.click("#search-archive")
    page.fill("#search-q", "connection refused")
    page.click("#search-submit")
    hit = page.locator("tr.hit")
    hit.first.wait_for()
    assert hit.count() == 1
    assert hit.locator("mark").text_content() == "connection refused"
    # The log line with markup in it is text on the page, not an element.
    page.fill("#search-q", "<script>")
    page.click("#search-submit")
    page.locator("tr.hit mark").wait_for()
    assert page.locator("tr.hit .text").text_content().startswith("<script>alert('x')")
    page.fill("#search-q", "connection refused")
    page.click("#search-submit")
    screenshot(page, "inspect-search")

    page.locator("tr.hit .ln a").click()
    page.wait_for_url("**/view/var/log/app.log?line=2#L2")
    target = page.locator("#L2")
    assert "hl" in target.get_attribute("class")
    assert target.locator(".text").text_content() == \
        "2026-12-01 ERROR connection refused to db:5432"
    assert page.text_content("#member-path") == "var/log/app.log"
    assert page.locator("#L3 .text").text_content() == "<script>alert('x')</script> in a log line"
    screenshot(page, "inspect-viewer", full_page=False)

    # The viewer's own controls: the end of a longer file, then back to its start.
    page.goto(f"/archives/{archive_id}/view/var/log/syslog")
    page.click("#top-tail")
    page.locator("#L1000").wait_for()
    assert page.text_content("#top-range") == "Lines 801–1000 of 1000"
    page.click("#top-first")
    page.locator("#L1").wait_for()
