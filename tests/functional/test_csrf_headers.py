"""CSRF on every unsafe endpoint, and the security headers on error responses.

The endpoints come from the app's registry (``app_endpoints`` in conftest.py) and the
requests from test_acl_matrix.py's REQUESTS, so a new form or API write is covered here the
day it is added (and test_acl_matrix.py fails until it has a request and a row).

* A cookie session's unsafe request without the CSRF token is refused — a 403 with a JSON
  ``detail`` under /api/, the 400 "form has expired" page elsewhere — and nothing happens;
  with the token it gets what the ACL matrix expects of the same caller.
* A valid bearer or upload token travels in a header a foreign page cannot set: such API
  requests need no CSRF token, even with a session cookie in the jar. A header that
  authenticates nobody earns no exemption, and pages never take it.
* The security headers: test_acl_matrix.py::test_matrix checks them on every answer of
  every endpoint to every caller; here the remaining errors (404, 405, 400, bad Host).
"""

import pytest
import webtest
from test_acl_matrix import (
    ENDS_SESSION,
    ENV,
    EXPECTED,
    PRINCIPALS,
    Req,
    World,
    _request_for,
    browser,
    header_problems,
    send,
    start_session,
)

SAFE = {"GET", "HEAD", "OPTIONS"}
CSRF_PAGE = "The form has expired or was sent from another site"


def unsafe(app_endpoints, kinds=("page", "api")):
    return sorted((key for key, kind in app_endpoints.items()
                   if kind in kinds and key[0] not in SAFE), key=lambda k: (k[1], k[0]))


def without_csrf(client):
    """The same browser (cookies and all), sending no CSRF token."""
    client.csrf = ""
    return client


def expected(method, pattern, principal):
    return int(EXPECTED[(method, pattern)].split()[PRINCIPALS.index(principal)])


def is_csrf_refusal(res, path):
    """The API's 403 with a JSON detail, or the pages' 400 "form has expired" page."""
    if path.startswith("/api/"):
        return res.status_int == 403 and "csrf" in res.json.get("detail", "").lower()
    return res.status_int == 400 and res.content_type == "text/html" \
        and CSRF_PAGE in res.text and "Traceback" not in res.text


def test_every_unsafe_endpoint_is_listed(app_endpoints):
    """Every form and API write the registry knows has a request to send (and a row)."""
    for method, pattern in unsafe(app_endpoints):
        assert (method, pattern) in EXPECTED, f"{method} {pattern} has no row in the matrix"
        _request_for(method, pattern)


# A signed-in session, and the matrix column whose answers it gets.
SESSIONS = {"session": "session", "admin_session": "admin"}


@pytest.mark.parametrize("session", sorted(SESSIONS))
def test_cookie_session_needs_the_csrf_token(app, testapp, factory, dbsession, web_login,
                                             app_endpoints, session):
    """A signed-in session without the token: refused (unless the ACL refuses first);
    with it: the ACL's answer. Between the member and the admin session, every unsafe
    endpoint meets the CSRF check."""
    world = World(factory, testapp, dbsession)
    client = browser(app, world, session, web_login)
    column = SESSIONS[session]
    wrong, checked = [], set()
    for method, pattern in unsafe(app_endpoints):
        want = expected(method, pattern, column)
        token = client.csrf
        req = _request_for(method, pattern)(world)
        res = send(without_csrf(client), method, req)
        client.csrf = token
        if is_csrf_refusal(res, req.path):
            checked.add((method, pattern))
        elif not (want >= 400 and res.status_int == want):  # the ACL said no first
            wrong.append(f"{method} {req.path} without the token: {res.status_int} "
                         f"{res.body[:120]!r}")
        # The same request again (a fresh object where it changes one), with the token.
        req = _request_for(method, pattern)(world)
        res = send(client, method, req)
        if res.status_int != want or is_csrf_refusal(res, req.path):
            wrong.append(f"{method} {req.path} with the token: {res.status_int}, expected "
                         f"{want}")
        if (method, pattern) in ENDS_SESSION:
            start_session(client, world, session, web_login)
    assert not wrong, "\n".join(wrong)
    if session == "admin_session":
        # The admin may do everything: every unsafe endpoint checked the token.
        assert checked == set(unsafe(app_endpoints)), set(unsafe(app_endpoints)) - checked


def test_refused_request_changes_nothing(app, testapp, factory, dbsession, web_login):
    """A forged delete with the victim's cookies leaves the ticket where it was."""
    world = World(factory, testapp, dbsession)
    client = without_csrf(browser(app, world, "session", web_login))
    number = world.ticket()
    assert send(client, "POST", Req(world.page(number) + "delete", form={})).status_int == 400
    assert send(client, "DELETE", Req(f"/api/v1/tickets/{number}/")).status_int == 403
    client.get(f"/api/v1/tickets/{number}/", headers=world.bearer["admin"], status=200)


@pytest.mark.parametrize("principal", ["admin", "other"])
def test_header_credentials_are_exempt_on_the_api(app, testapp, factory, dbsession,
                                                  web_login, app_endpoints, principal):
    """A bearer or upload token with a session cookie in the jar and no CSRF token: the
    API answers as the matrix says; a page refuses it all the same."""
    world = World(factory, testapp, dbsession)
    client = without_csrf(browser(app, world, principal, web_login))
    wrong = []
    for method, pattern in unsafe(app_endpoints):
        req = _request_for(method, pattern)(world)
        res = send(client, method, req)
        if app_endpoints[(method, pattern)] == "api":
            want = expected(method, pattern, principal)
            if res.status_int != want:
                wrong.append(f"{method} {req.path}: {res.status_int}, expected {want} "
                             f"{res.body[:120]!r}")
        elif not is_csrf_refusal(res, req.path) and not (
                expected(method, pattern, principal) == res.status_int >= 400):
            wrong.append(f"{method} {req.path} (a page) without the token: {res.status_int}")
        if (method, pattern) in ENDS_SESSION:
            start_session(client, world, principal, web_login)
            client.csrf = ""
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("junk", [{"Authorization": "Bearer not-a-token"},
                                  {"Upload-Token": "not-a-token"}])
def test_a_header_that_authenticates_nobody_does_not_exempt(app, testapp, factory, dbsession,
                                                            web_login, app_endpoints, junk):
    """The exemption is for a request a header credential authenticates: with a junk one
    the session cookie is what signs the request in, so it still needs the CSRF token."""
    world = World(factory, testapp, dbsession)
    client = without_csrf(browser(app, world, "admin_session", web_login))
    client.principal_headers = junk
    wrong = []
    for method, pattern in unsafe(app_endpoints, kinds=("api",)):
        req = _request_for(method, pattern)(world)
        res = send(client, method, req)
        acl_refusal = res.status_int == expected(method, pattern, "anonymous") >= 400
        if not (is_csrf_refusal(res, req.path) or acl_refusal):
            wrong.append(f"{method} {req.path}: {res.status_int} {res.body[:100]!r}")
    assert not wrong, "\n".join(wrong)


# --- security headers ---------------------------------------------------------------------
# Every endpoint × every caller: test_acl_matrix.py::test_matrix checks them on each of its
# answers (2xx, 3xx, 401, 403, 404, 423 …). Here: the other errors.

@pytest.mark.parametrize("method,path,headers,status", [
    ("GET", "/no/such/page", {}, 404),
    ("GET", "/api/v1/no/such/thing", {}, 404),
    ("GET", "/api/v1/tickets/99999/", "admin", 404),
    ("GET", "/platforms/vault/tickets/99999/", "admin", 404),
    ("GET", "/api/v1/tickets/", {}, 401),
    ("GET", "/api/v1/tickets/", {"Authorization": "Bearer nonsense"}, 401),
    ("GET", "/api/v1/audit/", "outsider", 403),
    ("GET", "/admin/users/", "outsider", 403),
    ("POST", "/tickets/new", {}, 403),
    ("POST", "/tickets/new", "admin", 400),  # no CSRF token
    ("POST", "/api/v1/platforms/vault/", "admin", 405),
    ("DELETE", "/account/", "admin", 405),
    ("POST", "/api/v1/tickets/", "admin_bad_json", 400),
    ("GET", "/api/v1/tickets/?limit=nope", "admin", 400),
])
def test_security_headers_on_errors(testapp, factory, method, path, headers, status):
    admin, outsider = factory.user("boss", admin=True), factory.user("outsider")
    factory.platform("vault", restricted=True)
    body = None
    if headers == "admin_bad_json":
        headers, body = factory.token(admin), b"{not json"
    elif headers == "admin":
        headers = factory.token(admin)
    elif headers == "outsider":
        headers = factory.token(outsider)
    res = testapp.request(path, method=method, headers=headers, body=body or b"",
                          content_type="application/json" if body else None,
                          expect_errors=True)
    assert res.status_int == status
    assert not header_problems(res, f"{method} {path}")
    if path.startswith("/api/"):
        assert res.json["detail"]
    else:
        assert "<h1" in res.text and "Traceback" not in res.text


@pytest.mark.parametrize("path", ["/api/v1/tickets/", "/login"])
def test_security_headers_on_a_refused_host(settings, path):
    """The ALLOWED_HOSTS refusal comes from a tween of its own: it has the headers too."""
    from collector import main

    client = webtest.TestApp(main({}, **settings, allowed_hosts="localhost"),
                             extra_environ={**ENV, "HTTP_HOST": "evil.example"})
    res = client.get(path, status=400)
    assert res.json["detail"]
    assert not header_problems(res, path)
