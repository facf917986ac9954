"""/api/v1/docs, the API explorer: a public page that loads Swagger UI from the app itself
under the site's Content-Security-Policy, and changes nothing about the other pages."""

import hashlib
import re

import pytest

from collector import apidocs, web

DOCS = "/api/v1/docs"


@pytest.fixture
def docs(testapp):
    return testapp.get(DOCS, status=200)


def test_anyone_may_open_the_explorer(testapp, docs):
    # As the document it shows: no credentials needed, with or without the trailing slash.
    assert docs.content_type == "text/html"
    assert 'data-openapi-url="http://localhost/api/v1/openapi.json"' in docs.text
    assert testapp.get(DOCS + "/", status=200).text == docs.text
    assert testapp.head(DOCS, status=200).body == b""
    # It only shows: under /api/, anything else is refused in JSON, as everywhere in the API.
    assert testapp.post(DOCS, status=404).json == {"detail": "Not found."}


def test_the_explorer_keeps_the_sites_policy(testapp, docs, staff):
    assert docs.headers["Content-Security-Policy"] == web.CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in web.CONTENT_SECURITY_POLICY
    assert "unsafe-eval" not in web.CONTENT_SECURITY_POLICY
    assert docs.headers["X-Frame-Options"] == "DENY"
    # Other pages, the API and the assets answer as before.
    assert testapp.get("/login").headers["Content-Security-Policy"] == \
        web.CONTENT_SECURITY_POLICY
    assert testapp.get("/api/v1/openapi.json").headers["Content-Security-Policy"] == \
        web.OTHER_CONTENT_SECURITY_POLICY
    # The explorer loosens nothing for other origins: no CORS on the API.
    health = testapp.get("/api/v1/check/health/", headers={"Origin": "https://evil.example"})
    assert not [h for h in health.headers if h.lower().startswith("access-control-")]


def test_no_inline_script_style_or_outside_url(docs):
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", docs.text)
    assert " style=" not in docs.text and "<style" not in docs.text
    # Every URL the page names is this site's (or a place in the page: the skip link).
    urls = re.findall(r'(?:src|href|data-openapi-url)="([^"]+)"', docs.text)
    assert len(urls) >= 6
    assert all(url.startswith(("http://localhost/", "#")) for url in urls), urls
    assert [url for url in urls if url.startswith("#")] == ["#main"]
    assert "//" not in re.sub(r"https?://localhost/", "", docs.text)


def test_every_asset_the_page_links_is_served(testapp, docs):
    kinds = {".js": "javascript", ".css": "text/css", ".svg": "image/svg+xml"}
    links = re.findall(r'(?:src|href)="http://localhost(/static/[^"]+)"', docs.text)
    assert len(links) == 5  # Swagger UI's script and styles, ours, and the site's icon
    for link in links:
        asset = testapp.get(link, status=200)
        assert kinds[link[link.rindex("."):]] in asset.content_type
        # A day for Swagger UI (its version is in the URL), as for Bootstrap; an hour for ours.
        vendored = link.startswith(f"/static/{apidocs.SWAGGER_UI_VERSION}/")
        assert asset.headers["Cache-Control"] == f"max-age={86400 if vendored else 3600}"


def test_only_the_files_the_page_uses_are_served(testapp):
    base = f"/static/{apidocs.SWAGGER_UI_VERSION}/"
    # The package's demo page loads an outside document; the OAuth2 page is not used here.
    for name in ("index.html", "swagger-initializer.js", "oauth2-redirect.html", "index.j2",
                 "swagger-ui.js", "../apidocs.js", ""):
        testapp.get(base + name, status=404)


# The files as published on npm as swagger-ui-dist 5.31.0 (`npm pack`, sha256): the Python
# package is a repackaging by others, so a new version is checked against npm by hand
# before these change.
NPM_SHA256 = {
    "swagger-ui-bundle.js": "93b7b0862a80e2786f85b560be7693c2344354ffa7e7e224f850a54349724c31",
    "swagger-ui.css": "9e576f8322132c76949da47f9bb53c891373c303ea3a761ff548ffc9de50a98c",
}


def test_swagger_ui_is_the_npm_release():
    assert apidocs.SWAGGER_UI_VERSION == "swagger-ui-5.31.0"
    assert set(NPM_SHA256) == apidocs.SWAGGER_UI_FILES
    for name, digest in NPM_SHA256.items():
        data = (apidocs.SWAGGER_UI_DIR / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest, name


def test_pages_link_the_explorer_from_their_footer(testapp, staff):
    page = testapp.get("/login")
    assert 'id="footer-api-docs" href="http://localhost/api/v1/docs"' in page.text
