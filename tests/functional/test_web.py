"""The web side's frame: headers, static assets, error pages, the start page.

The ``staff`` fixture makes a user exist, so /login is the sign-in page (not first-run
setup).
"""

import re

import pytest

from collector.web import VERSION


def test_security_headers_on_pages_and_api(testapp, staff):
    page = testapp.get("/login")
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    for response in (page, testapp.get("/api/v1/check/health/")):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Referrer-Policy"] == "same-origin"


def test_pages_have_no_inline_script_or_style(testapp, staff):
    page = testapp.get("/login")
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page.text)
    assert " style=" not in page.text and "<style" not in page.text
    assert re.search(r"<title>[^<]+ · Logs Collector</title>", page.text)
    assert f"Logs Collector {VERSION}</span>" in page.text  # footer: the installed version


@pytest.mark.parametrize("path, kind", [
    ("/static/bootstrap/css/bootstrap.min.css", "text/css"),
    ("/static/bootstrap/js/bootstrap.bundle.min.js", "javascript"),
    ("/static/app.css", "text/css"),
    ("/static/app.js", "javascript"),
    ("/static/theme.js", "javascript"),
])
def test_assets_are_served_by_the_app(testapp, path, kind):
    response = testapp.get(path)
    assert kind in response.content_type and len(response.body) > 100
    assert response.headers["Cache-Control"].startswith("max-age=")


def test_every_asset_a_page_links_is_served(testapp, staff):
    page = testapp.get("/login")
    links = re.findall(r'(?:src|href)="http://localhost(/static/[^"]+)"', page.text)
    assert len(links) >= 4
    for link in links:
        testapp.get(link)


def test_start_page_sends_each_visitor_on(testapp, staff):
    assert testapp.get("/", status=303).headers["Location"].endswith("/login")
    assert testapp.get("/", headers=staff.headers, status=303).headers["Location"].endswith(
        "/tickets/")


def test_error_pages_are_pages_outside_the_api(testapp, staff):
    missing = testapp.get("/no/such/page", status=404)
    assert missing.content_type == "text/html" and "404" in missing.text
    assert "Traceback" not in missing.text
    assert testapp.get("/api/v1/no/such", status=404).json == {"detail": "Not found."}
    # A staff member on an admin page: a 403 page, not a redirect to sign in.
    forbidden = testapp.get("/admin/users/", headers=staff.headers, status=403)
    assert forbidden.content_type == "text/html" and "permission" in forbidden.text


def test_wrong_method_on_a_page_is_a_405_page(testapp):
    response = testapp.post("/upload", {"x": "1"}, status=405)
    assert response.content_type == "text/html" and "does not accept POST" in response.text
    assert testapp.put("/uploader.sh", "x", status=405).content_type == "text/html"


def test_anonymous_visitor_is_sent_to_sign_in_and_back(testapp):
    response = testapp.get("/tickets/?resolved=false", status=303)
    assert response.headers["Location"] == (
        "http://localhost/login?next=%2Ftickets%2F%3Fresolved%3Dfalse")


def test_unexpected_errors_are_a_page_without_traceback(testapp, staff, monkeypatch):
    from collector.archives.storage import LocalArchiveStorage

    def broken(self):
        raise RuntimeError("secret internals")

    # The layout itself fails (its storage gauge): the error page falls back to plain HTML.
    monkeypatch.setattr(LocalArchiveStorage, "usage", broken)
    response = testapp.get("/tickets/", headers=staff.headers, status=500)
    assert response.content_type == "text/html" and "500" in response.text
    assert "secret internals" not in response.text and "Traceback" not in response.text


def test_storage_gauge_warns_above_threshold(testapp, staff, monkeypatch):
    from collector.archives.storage import LocalArchiveStorage

    page = testapp.get("/tickets/", headers=staff.headers)
    assert 'id="storage-gauge"' in page.text and "gauge-ok" in page.text
    monkeypatch.setattr(LocalArchiveStorage, "usage",
                        lambda self: {"total": 100, "used": 95, "free": 5})
    assert "gauge-warning" in testapp.get("/tickets/", headers=staff.headers).text
    monkeypatch.setattr(LocalArchiveStorage, "usage",
                        lambda self: {"total": 100, "used": 100, "free": 0})
    assert "gauge-danger" in testapp.get("/tickets/", headers=staff.headers).text


# --- the icon, and sizes in binary units -------------------------------------------------

def test_every_page_links_the_icon_and_favicon_ico_answers(testapp, staff):
    icon = testapp.get("/static/favicon.svg")
    assert icon.content_type == "image/svg+xml" and icon.body.startswith(b"<svg")
    link = '<link rel="icon" href="http://localhost/static/favicon.svg'
    for page in (testapp.get("/login"), testapp.get("/upload"),
                 testapp.get("/tickets/", headers=staff.headers),
                 testapp.get("/no/such/page", status=404), testapp.get("/api/v1/docs")):
        assert link in page.text
    # Asked for by browsers and tools on their own: the same bytes, never a 404.
    for client in ({}, staff.headers):
        answer = testapp.get("/favicon.ico", headers=client)
        assert answer.body == icon.body and answer.content_type == "image/svg+xml"
        assert answer.headers["Cache-Control"].startswith("public")
    assert testapp.head("/favicon.ico").status_int == 200
    testapp.post("/favicon.ico", status=405)


def test_the_upload_limit_is_shown_in_the_units_it_is_set_in(testapp, app, monkeypatch):
    # The default, UPLOAD_MAX_SIZE=4GiB (the tests' own is smaller), once shown as "4.3 GB".
    monkeypatch.setitem(app.registry.settings, "upload.max_size", 4294967296)
    page = testapp.get("/upload")
    limit = page.html.select_one(".max-size")
    assert limit.get_text() == "4 GiB"
    assert " ".join(limit.parent.get_text().split()).count("Largest file accepted: 4 GiB.") == 1
    assert "GB" not in page.text.replace("GiB", "")


@pytest.mark.parametrize("size, shown", [
    (0, "0 B"), (1023, "1023 B"), (1024, "1 KiB"), (1536, "1.5 KiB"),
    (2_000_000, "1.9 MiB"), (1024**2 - 1, "1 MiB"), (int(2.5 * 1024**3), "2.5 GiB"),
    (5 * 1024**4, "5 TiB"), (3 * 1024**5, "3072 TiB"),
])
def test_sizes_on_pages_are_binary(testapp, staff, monkeypatch, size, shown):
    from collector.archives.storage import LocalArchiveStorage

    monkeypatch.setattr(LocalArchiveStorage, "usage",
                        lambda self: {"total": size * 4 + 4, "used": size * 3 + 4, "free": size})
    gauge = testapp.get("/tickets/", headers=staff.headers).html.find(id="storage-gauge")
    assert gauge.select_one("span.small:last-child").get_text() == f"{shown} free"
