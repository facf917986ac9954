"""The pages that look inside archives, through the real WSGI stack: the member tree of
every format, the viewer (paging, tail, jump, cut lines, binary refusal, undecodable bytes),
a member's download, search of an archive and of a ticket (limits, bad input, escaping),
the page shown while an index is built, and who may see any of it."""

import datetime as dt
import gzip
import re
import threading
import urllib.parse

import pytest
import sample_archives as samples
import webtest
from sqlalchemy import select

from collector.archives.inspect import services, store
from collector.audit.models import AuditEvent

# Commits: the member index is built by a thread of the app's own.
pytestmark = pytest.mark.commits

ENV = {"HTTP_HOST": "localhost", "REMOTE_ADDR": "127.0.0.1"}
FORMATS = {
    "logs.tar": samples.tar(),
    "logs.tar.gz": samples.tar(compression="gz"),
    "logs.tar.bz2": samples.tar(compression="bz2"),
    "logs.tar.xz": samples.tar(compression="xz"),
    "logs.tar.zst": samples.tar(compression="zst"),
    "logs.zip": samples.zip_archive(),
}
SINGLE = {name: samples.compress(samples.APP_LOG, name.rsplit(".", 1)[1])
          for name in ("app.log.gz", "app.log.bz2", "app.log.xz", "app.log.zst")}
BASE = "/platforms/vm6/tickets/5005/"


def client(app, headers=None):
    environ = dict(ENV)
    if headers:
        environ["HTTP_AUTHORIZATION"] = headers["Authorization"]
    return webtest.TestApp(app, extra_environ=environ)


@pytest.fixture
def ticket(factory):
    return factory.ticket(factory.platform("vm6"), 5005, attempts=50)


@pytest.fixture
def browser(app, staff):
    """Staff with two-factor (a bearer token minted after TOTP), as a page client."""
    return client(app, staff.headers)


@pytest.fixture
def upload(testapp, ticket, browser):
    """Upload an archive; unless ``index=False``, have its member index built."""

    def upload(name, data, to=ticket, index=True):
        res = testapp.post("/api/v1/archives/", upload_files=[("file", name, data)],
                           headers={"Upload-Token": to.token}, status=201)
        archive_id = res.json["id"]
        if index:
            first = browser.get(f"/archives/{archive_id}/members", status=(200, 422, 503))
            if first.status_int == 503:
                store.wait_for_builders()
        return archive_id

    return upload


def url(archive_id, view="members", path="", **query):
    address = f"{BASE}archives/{archive_id}/{view}"
    if path:
        address += "/" + urllib.parse.quote(path)
    return address + ("?" + urllib.parse.urlencode(query) if query else "")


def line_numbers(page):
    return [int(row["id"][1:]) for row in page.html.select("#lines tr")]


def line_text(page, number):
    return page.html.find(id=f"L{number}").select_one(".text").get_text()


def scripts_are_files(page):
    """The CSP forbids inline script: every <script> of the page has a src."""
    return all(tag.get("src") and not tag.string for tag in page.html.find_all("script"))


# --- while the index is built ------------------------------------------------------------

def test_index_being_built_says_so_and_reloads_itself(browser, upload):
    archive_id = upload("logs.tar.gz", FORMATS["logs.tar.gz"], index=False)
    page = browser.get(url(archive_id), status=503)
    assert page.headers["Retry-After"] == "2"
    notice = page.html.find(id="index-building")
    assert notice["data-reload-after"] == "2"
    assert "being built" in notice.get_text()
    # Without JavaScript: a plain link to the same page.
    assert page.html.find(id="reload-now")["href"] == f"http://localhost{url(archive_id)}"
    assert any(tag["src"].split("?")[0].endswith("/static/inspect.js")
               for tag in page.html.find_all("script"))
    assert scripts_are_files(page)
    assert page.html.find(id="download-archive")["href"].endswith(
        f"/archives/{archive_id}/download")
    store.wait_for_builders()
    ready = browser.get(url(archive_id))
    assert ready.html.find(id="index-building") is None
    assert ready.html.select("#members tr.tree-file")


@pytest.fixture
def held_builds(monkeypatch):
    """Index builds wait until ``release()``: the pages are seen while one is running."""
    from collector.archives.inspect import index

    release, real_build = threading.Event(), index.build

    def held(*args, **kwargs):
        release.wait(10)
        return real_build(*args, **kwargs)

    monkeypatch.setattr(index, "build", held)
    yield release.set
    release.set()
    store.wait_for_builders()


def test_the_viewer_and_search_wait_for_the_index_too(browser, upload, held_builds):
    archive_id = upload("logs.zip", FORMATS["logs.zip"], index=False)
    for address in (url(archive_id, "view", "var/log/syslog"),
                    url(archive_id, "search", q="NEEDLE"),
                    url(archive_id, "member", "var/log/syslog")):
        page = browser.get(address, status=503)
        assert page.html.find(id="index-building")["data-reload-after"] == "2"
        assert page.headers["Retry-After"] == "2"
    held_builds()
    store.wait_for_builders()
    assert browser.get(url(archive_id, "view", "var/log/syslog")).status_int == 200


def test_the_script_that_reloads_is_served(browser):
    script = browser.get("/static/inspect.js")
    assert "location.reload" in script.text and "data-reload-after" in script.text


# --- the member tree ---------------------------------------------------------------------

def tree(page):
    return {row["data-path"]: row for row in page.html.select("#members tr.tree-file")}


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_member_tree_of_every_archive_format(browser, upload, name):
    archive_id = upload(name, FORMATS[name])
    page = browser.get(url(archive_id))
    assert page.html.find(id="archive-format").get_text() == name.removeprefix("logs.")
    rows = tree(page)
    expected = {"var/log/syslog", "var/log/app.log", "var/log/syslog.2.gz", "core.bin"}
    assert expected <= set(rows)
    folders = [row.get_text(strip=True) for row in page.html.select("#members tr.tree-dir")]
    assert folders == ["var/", "log/"]
    assert "depth-2" in rows["var/log/syslog"].select_one(".tree-name")["class"]
    syslog = rows["var/log/syslog"]
    assert syslog.select("td")[1]["title"] == f"{len(samples.SYSLOG)} bytes"
    view = url(archive_id, "view", "var/log/syslog")
    assert syslog.select_one(".view-member")["href"] == f"http://localhost{view}"
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", syslog.get_text())
    nested = rows["var/log/syslog.2.gz"]
    assert "shown decompressed" in nested.select_one(".member-kind").get_text()
    assert nested.select_one(".view-member") is not None
    binary = rows["core.bin"]
    assert "binary" in binary.select_one(".member-kind").get_text()
    assert "download only" in binary.get_text()
    assert binary.select_one(".view-member") is None
    assert binary.select_one(".download-member")["href"].endswith(
        f"/archives/{archive_id}/member/core.bin")
    if name != "logs.zip":
        link = rows["var/log/current"]
        assert "../../etc/shadow" in link.get_text() and "not followed" in link.get_text()
        assert link.select_one(".download-member") is None
    assert page.html.find(id="search-archive")["href"].endswith(f"/archives/{archive_id}/search")


@pytest.mark.parametrize("name", sorted(SINGLE))
def test_a_single_compressed_file_is_one_member(browser, upload, name):
    archive_id = upload(name, SINGLE[name])
    page = browser.get(url(archive_id))
    assert list(tree(page)) == ["app.log"]
    assert page.html.find(id="archive-format").get_text() == name.rsplit(".", 1)[1]
    view = browser.get(url(archive_id, "view", "app.log"))
    assert line_text(view, 2) == "2026-12-01 ERROR connection refused to db:5432"


def test_an_unknown_format_is_one_file_and_says_so(browser, upload):
    text_id = upload("notes.txt", b"just a note\n")
    page = browser.get(url(text_id))
    assert "shown as one file" in page.html.find(id="not-an-archive").get_text()
    assert "binary" not in page.html.find(id="not-an-archive").get_text()
    assert list(tree(page)) == ["notes.txt"]

    blob_id = upload("firmware.img", samples.BINARY)
    page = browser.get(url(blob_id))
    notice = page.html.find(id="not-an-archive").get_text()
    assert "shown as one file" in notice and "binary" in notice and "downloaded" in notice
    assert tree(page)["firmware.img"].select_one(".view-member") is None
    assert page.html.find(id="download-archive")["href"].endswith(f"/archives/{blob_id}/download")


def test_an_archive_that_cannot_be_read_says_why_and_offers_the_download(browser, upload):
    archive_id = upload("zeros.gz", samples.bomb())
    page = browser.get(url(archive_id), status=422)
    assert "decompression bomb" in page.html.find(id="index-failed").get_text()
    assert page.html.find(id="download-archive")["href"].endswith(
        f"/archives/{archive_id}/download")
    search = browser.get(url(archive_id, "search", q="x"), status=422)
    assert "decompression bomb" in search.html.find(id="index-failed").get_text()


def test_a_truncated_archive_lists_what_it_can_and_says_so(browser, upload):
    archive_id = upload("cut.tar.gz", samples.truncated_tar_gz())
    page = browser.get(url(archive_id))
    assert "truncated" in page.html.find(id="index-incomplete").get_text()
    assert "logs/0.log" in tree(page)


def test_a_long_member_list_is_paged(browser, upload, monkeypatch):
    monkeypatch.setattr(services, "MEMBERS_PAGE", 2)
    archive_id = upload("logs.tar", FORMATS["logs.tar"])
    first = browser.get(url(archive_id))
    assert len(tree(first)) == 2
    assert "Files 1–2 of 5" in first.html.find(id="members-pages").get_text()
    assert first.html.find(id="members-prev") is None
    last = browser.get(url(archive_id, page="3"))
    assert len(tree(last)) == 1 and last.html.find(id="members-next") is None
    assert last.html.find(id="members-prev")["href"].endswith("members?page=2")
    # Nonsense page numbers land on a real page.
    assert len(tree(browser.get(url(archive_id, page="x")))) == 2
    assert len(tree(browser.get(url(archive_id, page="99")))) == 1


# --- the viewer --------------------------------------------------------------------------

def test_viewer_pages_tail_and_jump(browser, upload):
    archive_id = upload("logs.tar.gz", FORMATS["logs.tar.gz"])
    page = browser.get(url(archive_id, "view", "var/log/syslog"))
    assert line_numbers(page) == list(range(1, 201))
    assert line_text(page, 1) == "Dec  1 10:01:00 host kernel: line 1 of syslog"
    # The total is not known before the end has been read: no "of ?", only that more follow.
    assert page.html.find(id="top-range").get_text() == "Lines 1–200, more below"
    assert page.html.find(id="bottom-range").get_text() == "Lines 1–200, more below"
    assert page.html.find(id="top-prev") is None
    page = page.click(linkid="top-next")
    assert line_numbers(page) == list(range(201, 401))
    assert page.html.find(id="top-prev")["href"].endswith("syslog?start=1")

    tail = page.click(linkid="top-tail")
    assert line_numbers(tail) == list(range(801, 1001))
    assert tail.html.find(id="top-range").get_text() == "Lines 801–1000 of 1000"
    assert tail.html.find(id="top-next") is None
    assert line_text(tail, 1000).endswith("line 1000 of syslog")

    form = tail.forms["jump-form"]
    form["line"] = "500"
    jumped = form.submit()
    assert line_numbers(jumped)[0] == 490
    assert "hl" in jumped.html.find(id="L500")["class"]
    assert [row["id"] for row in jumped.html.select("#lines tr.hl")] == ["L500"]

    small = browser.get(url(archive_id, "view", "var/log/syslog", count="100", start="901"))
    assert line_numbers(small) == list(range(901, 1001))
    assert small.html.find(id="top-prev")["href"].endswith("start=801&count=100")
    assert small.html.find(id="top-tail")["href"].endswith("tail=1&count=100")
    assert small.forms["jump-form"]["count"].value == "100"
    # Read to the end from the start: the total is known without a tail.
    last = browser.get(url(archive_id, "view", "var/log/syslog", start="801"))
    assert last.html.find(id="top-range").get_text() == "Lines 801–1000 of 1000"
    whole = browser.get(url(archive_id, "view", "var/log/syslog", count="1000"))
    assert whole.html.find(id="top-range").get_text() == "Lines 1–1000 of 1000"
    past = browser.get(url(archive_id, "view", "var/log/syslog", start="5000"))
    assert "no line 5000" in past.html.find(id="no-lines").get_text()
    assert past.html.find(id="top-range").get_text() == "No lines"
    assert "?" not in past.html.find(id="top-range").get_text()


def test_viewer_shows_a_nested_gz_decompressed(browser, upload):
    archive_id = upload("logs.tar.bz2", FORMATS["logs.tar.bz2"])
    page = browser.get(url(archive_id, "view", "var/log/syslog.2.gz", tail="1", count="2"))
    assert line_numbers(page) == [300, 301]
    assert line_text(page, 301) == "NEEDLE in rotated"
    assert "shown decompressed" in page.html.find(id="member-facts").get_text()


def test_viewer_cuts_long_lines_and_shows_undecodable_bytes(browser, upload):
    long_line = b"x" * (2 * 1024 * 1024)
    data = b"first\n" + long_line + b"\nthird caf\xe9 \xff\n"
    archive_id = upload("big.tar.gz", samples.tar({"big.log": data}, "gz", links=False))
    page = browser.get(url(archive_id, "view", "big.log"))
    assert line_numbers(page) == [1, 2, 3]
    cut = page.html.find(id="L2")
    marker = cut.select_one(".cut-marker")
    assert marker.get_text() == "[line cut: 2 MiB in all]"
    assert len(cut.select_one(".text").get_text()) == 4096 + len(marker.get_text())
    assert page.html.find(id="L1").select_one(".cut-marker") is None
    # Bytes that are not UTF-8 are shown as their \xNN escapes, never as raw bytes.
    assert line_text(page, 3) == "third caf\\xe9 \\xff"
    assert page.headers["Content-Type"] == "text/html; charset=UTF-8"


def test_viewer_refuses_binary_members_and_links(browser, upload):
    archive_id = upload("logs.tar.gz", FORMATS["logs.tar.gz"])
    page = browser.get(url(archive_id, "view", "core.bin"), status=422)
    assert "binary file: download it" in page.html.find(id="viewer-refusal").get_text()
    assert page.html.find(id="download-member")["href"].endswith("/member/core.bin")
    assert page.html.find(id="lines") is None
    link = browser.get(url(archive_id, "view", "var/log/current"), status=422)
    assert "links are not followed" in link.html.find(id="viewer-refusal").get_text()
    assert link.html.find(id="download-member") is None


def test_viewer_of_an_empty_member_a_missing_one_and_no_path(browser, upload):
    archive_id = upload("logs.tar", samples.tar({"empty.log": b"", "a.log": b"a\n"},
                                                links=False))
    empty = browser.get(url(archive_id, "view", "empty.log"))
    assert "empty" in empty.html.find(id="no-lines").get_text()
    assert empty.html.find(id="top-range").get_text() == "No lines"
    missing = browser.get(url(archive_id, "view", "no/such.log"), status=404)
    assert "no member" in missing.html.find(id="error-detail").get_text()
    browser.get(url(archive_id, "view", "a.log", count="0"), status=400)
    browser.get(url(archive_id, "view", "a.log", line="x"), status=400)
    bare = browser.get(f"{BASE}archives/{archive_id}/view", status=303)
    assert bare.location.endswith(f"/archives/{archive_id}/members")


def test_download_this_member_streams_only_that_member(browser, upload):
    archive_id = upload("logs.tar.gz", FORMATS["logs.tar.gz"])
    view = browser.get(url(archive_id, "view", "var/log/syslog.2.gz"))
    raw = view.click(linkid="download-member")
    # As stored: the nested .gz stays compressed.
    assert raw.body == samples.MEMBERS["var/log/syslog.2.gz"]
    assert gzip.decompress(raw.body) == samples.ROTATED
    assert raw.content_type == "application/octet-stream"
    assert "syslog.2.gz" in raw.headers["Content-Disposition"]
    ranged = browser.get(url(archive_id, "member", "var/log/syslog"),
                         headers={"Range": "bytes=10-19"}, status=206)
    assert ranged.body == samples.SYSLOG[10:20]
    # From the member tree too, binary members included.
    page = browser.get(url(archive_id))
    assert browser.get(tree(page)["core.bin"].select_one(".download-member")["href"]).body \
        == samples.BINARY


def test_member_paths_with_odd_characters_round_trip(browser, upload):
    name = "logs/a b#c?d%e <x>.log"
    archive_id = upload("odd.zip", samples.zip_archive({name: b"odd line\n"}))
    page = browser.get(url(archive_id))
    row = tree(page)[name]
    view = browser.get(row.select_one(".view-member")["href"])
    assert view.html.find(id="member-path").get_text() == name
    assert line_text(view, 1) == "odd line"
    assert browser.get(row.select_one(".download-member")["href"]).body == b"odd line\n"


# --- escaping ----------------------------------------------------------------------------

def test_markup_in_logs_and_names_is_shown_as_text(browser, upload):
    members = {"var/log/app.log": samples.APP_LOG, "<img src=x onerror=alert(1)>.log":
               b"<b>bold</b> & <script>alert(2)</script>\n"}
    archive_id = upload("logs.zip", samples.zip_archive(members))
    pages = [browser.get(url(archive_id)),
             browser.get(url(archive_id, "view", "var/log/app.log")),
             browser.get(url(archive_id, "view", "<img src=x onerror=alert(1)>.log")),
             browser.get(url(archive_id, "search", q="<script>")),
             browser.get(f"{BASE}search?q=%3Cscript%3E")]
    for page in pages:
        assert "<script>alert" not in page.text
        assert "<img src=x" not in page.text and "<b>bold" not in page.text
        assert page.html.find("img") is None and page.html.find("b") is None
        assert scripts_are_files(page)
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in pages[1].text
    assert line_text(pages[1], 3) == "<script>alert('x')</script> in a log line"
    assert line_text(pages[2], 1) == "<b>bold</b> & <script>alert(2)</script>"
    marks = [mark.get_text() for mark in pages[3].html.select("mark")]
    assert marks == ["<script>", "<script>"]


# --- search ------------------------------------------------------------------------------

def results(page):
    """``{(archive id, path): [(line, is a hit, text), ...]}`` of a results page."""
    found = {}
    for section in page.html.select("section.search-archive"):
        archive_id = int(section["id"].rsplit("-", 1)[1])
        for member in section.select(".search-member"):
            found[archive_id, member["data-path"]] = [
                (int(row.select_one(".ln").get_text()), "hit" in (row.get("class") or []),
                 row.select_one(".text").get_text())
                for row in member.select("tr") if "gap" not in (row.get("class") or [])]
    return found


def test_search_an_archive_and_follow_a_hit_into_the_viewer(browser, upload):
    archive_id = upload("logs.tar.gz", FORMATS["logs.tar.gz"])
    start = browser.get(url(archive_id))
    form = start.click(linkid="search-archive").forms["search-form"]
    form["q"] = "NEEDLE"
    page = form.submit()
    assert results(page) == {(archive_id, "var/log/syslog.2.gz"): [(301, True,
                                                                    "NEEDLE in rotated")]}
    assert "1 matching line in 1 file" in page.html.find(id="search-summary").get_text()
    assert page.html.find(id="search-cap") is None
    assert page.forms["search-form"]["q"].value == "NEEDLE"
    hit = page.html.select_one("tr.hit .ln a")
    assert hit["href"].endswith("/view/var/log/syslog.2.gz?line=301#L301")
    viewer = browser.get(hit["href"].split("#")[0])
    assert "hl" in viewer.html.find(id="L301")["class"]
    assert line_text(viewer, 301) == "NEEDLE in rotated"


def test_search_with_regex_context_and_ignore_case(browser, upload):
    archive_id = upload("logs.tar", FORMATS["logs.tar"])
    page = browser.get(url(archive_id, "search", q=r"line\s+50[0-2]\b", regex="1", context="1",
                           member="var/log/syslog"))
    rows = results(page)[archive_id, "var/log/syslog"]
    # Hits close together share their context: each line once, in order.
    assert [(n, hit) for n, hit, _ in rows] == [(499, False), (500, True), (501, True),
                                                 (502, True), (503, False)]
    assert [m.get_text() for m in page.html.select("mark")] == ["line 500", "line 501",
                                                                 "line 502"]
    assert page.forms["search-form"]["regex"].checked
    assert page.forms["search-form"]["member"].value == "var/log/syslog"
    apart = browser.get(url(archive_id, "search", q=r"line (100|300) ", regex="1",
                            context="2", member="var/log/syslog"))
    assert len(apart.html.select("tr.gap")) == 1

    folded = browser.get(url(archive_id, "search", q="CAF", ignore_case="1"))
    [(_, [(line, _, text)])] = results(folded).items()
    assert line == 4 and text == "caf\\xe9 latin-1 bytes \\xff\\xfe here"
    assert browser.get(url(archive_id, "search", q="CAF")).html.find(id="no-results")


def test_search_form_alone_and_bad_input_as_readable_errors(browser, upload):
    archive_id = upload("a.log", b"some text\n")
    blank = browser.get(url(archive_id, "search"))
    assert blank.html.find(id="search-form") and blank.html.find(id="search-summary") is None
    bad = browser.get(url(archive_id, "search", q="(unclosed", regex="1"), status=400)
    error = bad.html.find(id="search-error").get_text()
    assert "not a valid regular expression" in error and "missing )" in error
    assert bad.forms["search-form"]["q"].value == "(unclosed"
    assert bad.forms["search-form"]["regex"].checked
    for query, status, words in ((dict(q="x", context="11"), 400, "context must be 0..10"),
                                 (dict(q="x", limit="0"), 400, "limit must be"),
                                 (dict(q="x", regex="perhaps"), 400, "regex must be"),
                                 (dict(q="x", member="nope"), 404, "no member 'nope'")):
        page = browser.get(url(archive_id, "search", **query), status=status)
        assert words in page.html.find(id="search-error").get_text()


def test_search_caps_are_said_plainly(browser, upload, app):
    archive_id = upload("logs.tar", FORMATS["logs.tar"])
    capped = browser.get(url(archive_id, "search", q="syslog", limit="5"))
    assert "stopped at 5 matching lines" in capped.html.find(id="search-cap").get_text()
    assert len(capped.html.select("tr.hit")) == 5
    app.registry.settings["inspect.search_max_bytes"] = 1
    by_bytes = browser.get(url(archive_id, "search", q="nothing-like-this"))
    assert "stopped after reading 1 B" in by_bytes.html.find(id="search-cap").get_text()
    app.registry.settings["inspect.search_max_bytes"] = 2**40
    app.registry.settings["inspect.search_timeout"] = 0.3
    slow_id = upload("a.log", b"a" * 5000 + b"\n")
    runaway = browser.get(url(slow_id, "search", q="(a+a+)+b", regex="1"))
    assert "stopped after 0.3 s" in runaway.html.find(id="search-cap").get_text()


def test_search_a_whole_ticket(browser, upload, factory):
    first = upload("one.tar.gz", FORMATS["logs.tar.gz"])
    second = upload("two.log", b"nothing\nNEEDLE two\n")
    bomb = upload("zeros.gz", samples.bomb())
    other = factory.ticket(factory.platform("other"), 6006)
    upload("elsewhere.log", b"NEEDLE elsewhere\n", to=other)
    ticket_page = browser.get(BASE)
    form = ticket_page.forms["search-ticket-form"]
    form["q"] = "NEEDLE"
    page = form.submit()
    assert page.request.path == f"{BASE}search"
    assert results(page) == {(first, "var/log/syslog.2.gz"): [(301, True, "NEEDLE in rotated")],
                             (second, "two.log"): [(2, True, "NEEDLE two")]}
    sections = page.html.select("section.search-archive")
    assert [s["id"] for s in sections] == [f"results-archive-{i}" for i in (first, second, bomb)]
    assert "decompression bomb" in sections[2].select_one(".search-problem").get_text()
    assert sections[1].select_one("h2 a")["href"].endswith(f"/archives/{second}/members")
    link = sections[1].select_one("tr.hit .ln a")["href"]
    assert link.endswith(f"/archives/{second}/view/two.log?line=2#L2")
    assert line_text(browser.get(link.split("#")[0]), 2) == "NEEDLE two"
    assert "2 matching lines in 2 files" in page.html.find(id="search-summary").get_text()
    bad = browser.get(f"{BASE}search?q=(&regex=1", status=400)
    assert "missing )" in bad.html.find(id="search-error").get_text()


def test_search_of_a_ticket_without_archives(browser, ticket):
    page = browser.get(f"{BASE}search?q=anything")
    assert page.html.find(id="no-results").get_text() == "No matching line."
    assert page.html.select("section.search-archive") == []


def ticket_searches(dbsession):
    """The ids of the ``ticket.search`` audit events, oldest first."""
    dbsession.expire_all()
    return dbsession.scalars(select(AuditEvent.id).where(AuditEvent.action == "ticket.search")
                             .order_by(AuditEvent.id)).all()


def test_ticket_search_while_an_index_is_built(browser, upload, held_builds, dbsession):
    archive_id = upload("two.log", b"NEEDLE\n", index=False)
    page = browser.get(f"{BASE}search?q=NEEDLE&ignore_case=1")
    [event] = ticket_searches(dbsession)
    notice = page.html.find(id="index-building")
    assert notice["data-reload-after"] == "2"
    # The page's retry (script or link) is the same search, marked as the retry of `event`.
    retry = notice["data-reload-url"]
    assert retry == page.html.find(id="reload-now")["href"] == (
        f"http://localhost{BASE}search?q=NEEDLE&ignore_case=1&retry_of={event}")
    assert page.html.find(id="no-results") is None
    again = browser.get(retry)
    assert again.html.find(id="index-building")["data-reload-url"] == retry
    held_builds()
    store.wait_for_builders()
    done = browser.get(again.html.find(id="index-building")["data-reload-url"])
    assert done.html.find(id="index-building") is None
    assert results(done) == {(archive_id, "two.log"): [(1, True, "NEEDLE")]}
    # Three requests of one search by one person: one audit event.
    assert ticket_searches(dbsession) == [event]
    # Searching again on purpose is another search.
    browser.get(f"{BASE}search?q=NEEDLE&ignore_case=1")
    assert len(ticket_searches(dbsession)) == 2


def test_a_retry_marker_cannot_hide_another_search(app, browser, upload, factory, ticket, admin,
                                                  dbsession):
    upload("two.log", b"NEEDLE\n")
    factory.ticket(ticket.platform, 5006)
    factory.session.commit()
    browser.get(f"{BASE}search?q=NEEDLE")
    [event] = ticket_searches(dbsession)
    browser.get(f"{BASE}search?q=NEEDLE&retry_of={event}")
    assert ticket_searches(dbsession) == [event]
    # Each of these ran a search the log does not show yet: each is audited.
    other_people = client(app, admin.headers)
    for who, address in (
            (browser, f"{BASE}search?q=needle&retry_of={event}"),  # another text
            (browser, f"{BASE}search?q=NEEDLE&regex=1&retry_of={event}"),  # another kind
            (other_people, f"{BASE}search?q=NEEDLE&retry_of={event}"),  # another person
            (browser, f"/platforms/vm6/tickets/5006/search?q=NEEDLE&retry_of={event}"),
            *((browser, f"{BASE}search?q=NEEDLE&retry_of={junk}")
              for junk in ("", "x", "-1", "0", "1e3", f"{event}.0", f"{event},{event}",
                           "9" * 40, str(event + 1000)))):
        before = len(ticket_searches(dbsession))
        assert who.get(address).status_int == 200
        assert len(ticket_searches(dbsession)) == before + 1, address
    # Another action's event with the same detail is no earlier search either.
    browser.get(f"{BASE}archives/{upload('one.log', b'NEEDLE')}/search?q=NEEDLE")
    archive_event = dbsession.scalars(select(AuditEvent.id).where(
        AuditEvent.action == "archive.search")).one()
    before = len(ticket_searches(dbsession))
    browser.get(f"{BASE}search?q=NEEDLE&retry_of={archive_event}")
    assert len(ticket_searches(dbsession)) == before + 1
    # Nor is an old one: the retries of one search end with its window.
    row = dbsession.get(AuditEvent, event)
    row.time -= services.SEARCH_RETRY_WINDOW + dt.timedelta(seconds=1)
    dbsession.commit()
    before = len(ticket_searches(dbsession))
    browser.get(f"{BASE}search?q=NEEDLE&retry_of={event}")
    assert len(ticket_searches(dbsession)) == before + 1


def test_the_api_ticket_search_is_always_audited(testapp, staff, upload, dbsession):
    upload("two.log", b"NEEDLE\n")
    for _ in range(2):
        testapp.get("/api/v1/tickets/5005/search?q=NEEDLE&retry_of=1", headers=staff.headers)
    assert len(ticket_searches(dbsession)) == 2


# --- the ticket page's links, and who may see the pages ----------------------------------

def test_ticket_page_links_into_the_archives(app, browser, upload, factory, staff):
    archive_id = upload("logs.tar.gz", FORMATS["logs.tar.gz"], index=False)
    page = browser.get(BASE)
    look = page.html.find(id=f"inspect-{archive_id}")
    assert look.get_text() == "Look inside"
    assert look["href"] == f"http://localhost{BASE}archives/{archive_id}/members"
    assert page.forms["search-ticket-form"].action == f"http://localhost{BASE}search"
    weak = client(app, factory.token(staff, mfa=False)).get(BASE)
    assert weak.html.find(id=f"inspect-{archive_id}") is None
    assert "search-ticket-form" not in weak.forms
    assert "looking inside" in weak.html.find(id="download-needs-mfa").get_text()


def test_pages_need_two_factor_and_the_platform(app, testapp, upload, factory, staff):
    archive_id = upload("a.log", b"secret line\n")
    pages = [url(archive_id), url(archive_id, "view", "a.log"),
             url(archive_id, "member", "a.log"), url(archive_id, "search", q="secret"),
             f"{BASE}search?q=secret", f"/archives/{archive_id}/members"]
    anonymous, weak = client(app), client(app, factory.token(staff, mfa=False))
    for page in pages:
        login = anonymous.get(page, status=303)
        assert login.location.startswith("http://localhost/login?next=")
        refused = weak.get(page, status=403)
        assert "two-factor" in refused.html.find(id="error-detail").get_text()
        assert "secret line" not in refused.text

    member = factory.user("member")
    locked = factory.ticket(factory.platform("locked", restricted=True, members=[member]), 7007)
    hidden = upload("hidden.log", b"hidden line\n", to=locked, index=False)
    outsider, insider = client(app, staff.headers), client(app, factory.token(member))
    insider.get(f"/archives/{hidden}/members", status=503)
    store.wait_for_builders()
    hidden_pages = [f"/archives/{hidden}/members", f"/archives/{hidden}/view/hidden.log",
                    f"/archives/{hidden}/member/hidden.log",
                    f"/archives/{hidden}/search?q=hidden", "/tickets/7007/search?q=hidden"]
    for page in hidden_pages:
        refused = outsider.get(page, status=404)
        assert "hidden line" not in refused.text
        assert insider.get(page).status_int == 200


def test_pages_in_a_signed_in_session(testapp, web_login, staff, upload):
    archive_id = upload("logs.tar.gz", FORMATS["logs.tar.gz"])
    web_login(testapp, staff)
    page = testapp.get(BASE).click(linkid=f"inspect-{archive_id}")
    assert "var/log/syslog" in tree(page)
    viewer = page.click(href=r"/view/var/log/app\.log$", index=0)
    assert line_text(viewer, 2).endswith("connection refused to db:5432")
