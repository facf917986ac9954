"""The staff pages' frame and presentation: the navigation marks the page's own item, file
names wrap only at separators, audit events read as a person needs them.

How the pages look in a browser (no overflow, cards on a phone, copy buttons) is
tests/browser/test_layout.py.
"""

import pytest

from collector.archives.inspect import store

LONG_NAME = "node03_2026-12-01_full-diagnostics.tar.gz"


@pytest.fixture
def world(factory, admin):
    platform = factory.platform("vm6")
    ticket = factory.ticket(platform, 4711, user=admin, attempts=5)
    return ticket


def _upload(testapp, ticket, name=LONG_NAME, body=b"log line\n"):
    return testapp.post("/api/v1/archives/", upload_files=[("file", name, body)],
                        headers={"Upload-Token": ticket.token, "User-Agent": "curl/8.5"},
                        status=201).json


def _current(page):
    """The navigation items marked as the current page: (id, has aria-current)."""
    return [(link.get("id"), link.get("aria-current")) for link in
            page.html.select("nav.navbar .nav-link.active")]


@pytest.mark.parametrize("path, item", [
    ("/tickets/", "nav-tickets"),
    ("/tickets/new", "nav-tickets"),
    ("/platforms/vm6/tickets/4711/", "nav-tickets"),
    ("/platforms/vm6/tickets/4711/edit", "nav-tickets"),
    ("/platforms/", "nav-platforms"),
    ("/platforms/vm6/", "nav-platforms"),
    ("/platforms/vm6/edit", "nav-platforms"),
    ("/admin/users/", "nav-users"),
    ("/admin/audit", "nav-audit"),
    ("/admin/webhooks/", "nav-webhooks"),
    ("/account/", "nav-account"),
    ("/upload", "nav-upload"),
])
def test_each_page_marks_its_own_navigation_item(testapp, admin, world, web_login, path, item):
    web_login(testapp, admin)
    page = testapp.get(path)
    assert _current(page) == [(item, "page")]
    # Every other item is a plain link: no second "current" page.
    assert len(page.html.select('nav.navbar [aria-current]')) == 1


def test_archive_pages_are_ticket_pages(testapp, admin, world, web_login):
    archive = _upload(testapp, world)
    web_login(testapp, admin)
    page = testapp.get(f"/platforms/vm6/tickets/4711/archives/{archive['id']}/delete")
    assert _current(page) == [("nav-tickets", "page")]


def test_an_unknown_page_marks_nothing_of_another_section(testapp, admin, world, web_login):
    web_login(testapp, admin)
    page = testapp.get("/admin/nothing-here", status=404)
    assert _current(page) == []


def test_file_names_wrap_only_after_separators(testapp, admin, world, web_login):
    _upload(testapp, world)
    web_login(testapp, admin)
    page = testapp.get("/platforms/vm6/tickets/4711/")
    name = page.html.select_one("#archives .archive-name .file-name")
    assert name.decode_contents() == ("node03_<wbr/>2026-<wbr/>12-<wbr/>01_<wbr/>full-<wbr/>"
                                      "diagnostics.<wbr/>tar.<wbr/>gz")
    assert name.get_text() == LONG_NAME


def test_hashes_are_shortened_whole_on_hover_and_copyable(testapp, admin, world, web_login):
    archive = _upload(testapp, world)
    web_login(testapp, admin)
    page = testapp.get("/platforms/vm6/tickets/4711/")
    value = page.html.select_one(f"#archive-{archive['id']} .long-value:has(.sha256)")
    assert value["title"] == archive["sha256"]
    assert value.select_one(".sha256").get_text() == archive["sha256"]
    assert value.select_one("button.copy-button")["data-copy-value"] == archive["sha256"]
    assert "onclick" not in page.text


def _event_row(page, table, action):
    rows = [row for row in page.html.select(f"#{table} tbody tr")
            if row.select_one(".action").get_text() == action]
    assert rows, f"no {action} event in #{table}"
    return rows[0]


def _key_details(row):
    return {span["class"][1].removeprefix("detail-"): span for span in
            row.select(".event-key-details > .event-detail")}


def _more(row):
    return {div["class"][1].removeprefix("detail-"): div.select_one("dd").get_text()
            for div in row.select("details.event-more .event-detail")}


@pytest.mark.commits  # the search builds the archive's member index in a thread of its own
def test_audit_rows_show_three_details_and_the_rest_behind_a_disclosure(
        testapp, admin, world, web_login):
    archive = _upload(testapp, world)
    web_login(testapp, admin)
    # The first look builds the member index (503 meanwhile), then the search runs.
    if testapp.get(f"/archives/{archive['id']}/members", status=(200, 503)).status_int == 503:
        store.wait_for_builders()
    testapp.get(f"/archives/{archive['id']}/search", {"q": "log"})
    testapp.get(f"/archives/{archive['id']}/download")
    page = testapp.get("/admin/audit")

    upload = _event_row(page, "audit-log", "upload.finished")
    key = _key_details(upload)
    assert list(key) == ["name", "size", "sha256"]
    assert key["sha256"].select_one(".long-value")["title"] == archive["sha256"]
    more = _more(upload)
    assert more["protocol"] == "single"
    assert more["user_agent"] == "curl/8.5"
    assert more["address"] == "127.0.0.1"
    assert more["archive_id"] == str(archive["id"])

    search = _event_row(page, "audit-log", "archive.search")
    key = _key_details(search)
    assert list(key) == ["q", "regex"]
    assert key["regex"].get_text(" ", strip=True) == "regex no"
    assert key["q"].get_text(" ", strip=True) == "query log"

    download = _event_row(page, "audit-log", "archive.download")
    key = _key_details(download)
    assert list(key) == ["name", "range", "size"]
    assert key["range"].get_text(" ", strip=True) == "range whole file"


def test_audit_details_omit_empty_values_and_print_booleans(testapp, admin, world, web_login):
    # A tus upload: its "concat" detail is empty, so it is not shown at all.
    testapp.post("/api/v1/uploads/", headers={
        "Upload-Token": world.token, "Tus-Resumable": "1.0.0", "Upload-Length": "10",
        "Upload-Metadata": "filename bm9kZTMubG9n",
        "User-Agent": "Mozilla/5.0 (X11; Linux x86_64)"},
        status=201)
    web_login(testapp, admin)
    page = testapp.get("/platforms/vm6/tickets/4711/")
    started = _event_row(page, "history", "upload.started")
    assert "concat" not in started.get_text()
    assert list(_key_details(started)) == ["name", "size"]
    text = page.html.select_one("#ticket-history").get_text(" ")
    assert "True" not in text and "False" not in text and "None" not in text
    # The user agent never fills the row: it is behind the disclosure.
    assert started.select_one("details.event-more .detail-user_agent")


def test_audit_filter_has_labels_and_hints(testapp, admin, web_login):
    web_login(testapp, admin)
    form = testapp.get("/admin/audit").html.select_one("#audit-filter-form")
    for name in ("actor", "ticket", "action", "since", "until"):
        field = form.select_one(f"input[name={name}]")
        assert form.select_one(f"label[for={field['id']}]").get_text().strip()
        hint = form.select_one(f"#{field['aria-describedby']}")
        assert "form-text" in hint["class"] and hint.get_text().strip()
        # An example, never a value that looks filled in.
        assert field["placeholder"].startswith("e.g. ")
