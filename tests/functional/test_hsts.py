"""Strict-Transport-Security: on every answer that went out over https — pages, API,
static files, errors, the refused Host — and on none over plain http, where it would be a
lie. The scheme is what waitress tells the app: https directly, or ``X-Forwarded-Proto``
from ``WAITRESS_TRUSTED_PROXY`` only (a real ``collector serve`` below)."""

import http.client

import pytest
import webtest
from serverproc import Server

from collector import main

HSTS = "max-age=31536000; includeSubDomains"

ANSWERS = [
    ("GET", "/api/v1/check/health/", {}, 200),
    ("HEAD", "/api/v1/check/health/", {}, 200),
    ("GET", "/login", {}, 303),  # to /setup: no user exists yet
    ("GET", "/static/upload.js", {}, 200),
    ("GET", "/api/v1/openapi.json", {}, 200),
    ("GET", "/api/v1/no/such/thing", {}, 404),
    ("GET", "/no/such/page", {}, 404),
    ("GET", "/api/v1/tickets/", {}, 401),
    ("GET", "/api/v1/tickets/", {"Authorization": "Bearer nonsense"}, 401),
    ("POST", "/api/v1/auth/token/", {"Content-Type": "application/json"}, 400),
    ("DELETE", "/api/v1/check/health/", {}, 405),
]


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("method,path,headers,status", ANSWERS,
                         ids=[f"{m} {p} {s}" for m, p, _, s in ANSWERS])
def test_hsts_only_over_https(testapp, scheme, method, path, headers, status):
    body = b"{not json" if method == "POST" else b""
    res = testapp.request(path, method=method, headers=headers, body=body,
                          environ={"wsgi.url_scheme": scheme}, expect_errors=True)
    assert res.status_int == status
    assert "Traceback" not in res.text
    expected = [HSTS] if scheme == "https" else []
    assert res.headers.getall("Strict-Transport-Security") == expected


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_hsts_on_a_refused_host(settings, scheme):
    """The ALLOWED_HOSTS refusal comes from a tween of its own: it carries it too."""
    client = webtest.TestApp(main({}, **settings, allowed_hosts="logs.example.com"),
                             extra_environ={"HTTP_HOST": "evil.example",
                                            "wsgi.url_scheme": scheme})
    res = client.get("/api/v1/check/health/", status=400)
    assert res.headers.getall("Strict-Transport-Security") == (
        [HSTS] if scheme == "https" else [])


def test_hsts_max_age_is_a_setting_and_zero_turns_it_off(settings):
    for max_age, expected in (("600", ["max-age=600; includeSubDomains"]), ("0", [])):
        client = webtest.TestApp(main({}, **settings, **{"hsts.max_age": max_age}),
                                 extra_environ={"HTTP_HOST": "localhost",
                                                "wsgi.url_scheme": "https"})
        res = client.get("/api/v1/check/health/")
        assert res.headers.getall("Strict-Transport-Security") == expected


def _get(port, path, source, headers):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30,
                                      source_address=(source, 0))
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status, response.headers.get_all("Strict-Transport-Security") or []
    finally:
        conn.close()


def test_hsts_through_waitress_follows_the_trusted_proxy(tmp_path):
    """``X-Forwarded-Proto: https`` counts from the trusted proxy (127.0.0.1) only; from
    any other peer (127.0.0.2) waitress drops it and the answer is plain http's."""
    (tmp_path / "db").mkdir()
    server = Server(tmp_path, f"sqlite:///{tmp_path / 'db' / 'db.sqlite3'}")
    server.extra_env = {"WAITRESS_TRUSTED_PROXY": "127.0.0.1"}
    server.setup().start()
    try:
        https = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "192.0.2.7"}
        for path, status in (("/api/v1/check/health/", 200), ("/api/v1/nothing", 404),
                             ("/api/v1/tickets/", 401), ("/login", 200)):
            assert _get(server.port, path, "127.0.0.1", https) == (status, [HSTS])
            assert _get(server.port, path, "127.0.0.1", {}) == (status, [])
            assert _get(server.port, path, "127.0.0.2", https) == (status, [])
    finally:
        server.stop()

