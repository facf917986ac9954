"""The public upload page: served to anyone, under the strict CSP, with its assets."""

import re

import pytest


def test_page_is_public_and_under_the_csp(testapp):
    page = testapp.get("/upload", status=200)
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp
    assert "connect-src 'self'" in csp
    # No inline script or style: every <script> has a src, no style attribute or element.
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page.text)
    assert "<style" not in page.text and " style=" not in page.text
    form = page.html.find("form", id="upload-form")
    # The page speaks tus, in chunks no larger than a request body waitress accepts.
    assert form["data-upload-url"] == "http://localhost/api/v1/uploads/"
    assert form["data-chunk-size"] == str(8 * 1024**2)
    assert form["data-check-url"] == "http://localhost/api/v1/check/token/"
    assert form["data-max-size"] == str(64 * 1024**2)
    # The script writes the limit in the page's own (binary) units, from the byte count.
    assert page.html.find(id="files-help").find(class_="max-size") is not None
    assert not form.has_attr("data-max-size-text")
    assert page.html.find("label", attrs={"for": "token"}) is not None
    assert page.html.find("label", attrs={"for": "files"}) is not None
    assert "each file uses one upload attempt" in page.text
    assert "/static/upload.js" in page.text
    # The console alternatives, with the token filled in by the page's script.
    assert page.html.find(id="uploader-command").text.startswith(
        "curl -fsSLO http://localhost/uploader.sh && sh uploader.sh -u http://localhost -t TOKEN")
    curl = page.html.find(id="curl-command").text
    assert "Upload-Token: TOKEN" in curl and curl.endswith("http://localhost/api/v1/archives/")
    assert "continues where it stopped" in page.text
    # Each item has room for its receipt, hidden until the file is stored.
    receipt = page.html.find(id="upload-item").find(class_="upload-receipt")
    assert receipt.has_attr("hidden") and receipt.find(class_="receipt-copy") is not None


def test_page_does_not_echo_a_token_from_the_query(testapp):
    # The token belongs in the fragment; a token in the query string is not put on the page.
    page = testapp.get("/upload?token=sneaky-token-value")
    assert "sneaky-token-value" not in page.text


def test_assets_are_served(testapp):
    page = testapp.get("/upload")
    # The words and the protocol first: the page's own script uses both.
    sources = [script["src"] for script in page.html.find_all("script")]
    mine = [src.rsplit("/", 1)[-1] for src in sources if "/static/upload" in src]
    assert mine == ["upload-words.js", "upload-tus.js", "upload.js"]
    for name in mine:
        script = testapp.get(f"/static/{name}", status=200)
        assert script.content_type in {"text/javascript", "application/javascript"}
    tus = testapp.get("/static/upload-tus.js").text
    assert "function sendFile(" in tus
    assert '"Tus-Resumable", TUS_VERSION' in tus and "localStorage" in tus
    assert "function refusalOf(" in testapp.get("/static/upload-words.js").text
    css = testapp.get("/static/app.css", status=200)
    assert ".drop-zone" in css.text
    testapp.get("/static/bootstrap/css/bootstrap.min.css", status=200)


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_page_answers_get_only(testapp, method):
    assert testapp.request("/upload", method=method, expect_errors=True).status_int in {404, 405}


def test_token_check_names_the_ticket(testapp, factory):
    ticket = factory.ticket(factory.platform("vm6"), 4321, attempts=3)
    state = testapp.get(f"/api/v1/check/token/{ticket.token}").json
    assert state["ticket"] == 4321 and state["attempts"] == 3 and state["valid"] is True
