"""Hardening of tokens and sessions: upload-token guessing is throttled per address, token
lookups are exact equalities, sessions are renewed at sign-in, replayed and revoked
credentials are refused."""

import datetime as dt
import re

import pytest

from collector.tickets import services as tickets

ADDR = "10.9.8.7"
ENV = {"HTTP_HOST": "localhost", "REMOTE_ADDR": ADDR}


@pytest.fixture
def few_failures(monkeypatch):
    """A small limit keeps the tests fast; the rule is the same as with 20."""
    monkeypatch.setattr(tickets, "TOKEN_THROTTLE_PER_ADDRESS", 3)
    return 3


def _guess(testapp, path, status, method="post", env=ENV, token="not-a-real-token"):
    headers = {"Upload-Token": token, "Tus-Resumable": "1.0.0", "Upload-Length": "10"}
    if method == "get":
        return testapp.get(path, status=status, extra_environ=env)
    return testapp.post(path, b"x", headers=headers, status=status, extra_environ=env)


@pytest.mark.parametrize("path,method,refused", [
    ("/api/v1/archives/", "post", 403),
    ("/api/v1/uploads/", "post", 403),
    ("/api/v1/check/token/not-a-real-token/", "get", 404),
])
def test_unknown_tokens_are_throttled_per_address(testapp, factory, few_failures,
                                                  path, method, refused):
    ticket = factory.ticket(factory.platform())
    for _ in range(few_failures):
        _guess(testapp, path, refused, method)
    # The failures survived their requests' rollback: the next check is refused, even
    # with a valid token, on every path that checks one.
    res = _guess(testapp, path, 429, method)
    assert "too many" in res.json["detail"] and int(res.headers["Retry-After"]) > 0
    _guess(testapp, "/api/v1/archives/", 429, token=ticket.token)
    _guess(testapp, "/api/v1/uploads/", 429, token=ticket.token)
    _guess(testapp, f"/api/v1/check/token/{ticket.token}/", 429, "get")
    # Another address is not affected.
    other = {**ENV, "REMOTE_ADDR": "10.1.1.1"}
    assert _guess(testapp, f"/api/v1/check/token/{ticket.token}/", 200, "get",
                  env=other).json["valid"]


def test_valid_tokens_are_not_counted(testapp, factory, few_failures):
    ticket = factory.ticket(factory.platform())
    for _ in range(few_failures + 2):
        _guess(testapp, f"/api/v1/check/token/{ticket.token}/", 200, "get")


def test_forwarded_for_from_an_untrusted_client_does_not_escape(testapp, factory,
                                                                few_failures):
    for n in range(few_failures):
        testapp.get("/api/v1/check/token/nope/", status=404, extra_environ=ENV,
                    headers={"X-Forwarded-For": f"192.0.2.{n}"})
    testapp.get("/api/v1/check/token/nope/", status=429, extra_environ=ENV,
                headers={"X-Forwarded-For": "192.0.2.99"})


def test_token_lookup_is_an_exact_equality():
    for statement in (tickets._TICKET_BY_TOKEN, tickets._TOKEN_STATE):
        sql = str(statement.compile()).lower()
        assert "tickets.token_digest = :digest" in sql
        assert " like " not in sql and "substr" not in sql


# --- sessions --------------------------------------------------------------------------

def _session_cookie(testapp):
    return testapp.cookies.get("session")


def test_session_is_renewed_at_sign_in_and_at_two_factor(testapp, staff, factory):
    page = testapp.get("/login", extra_environ=ENV)
    planted = _session_cookie(testapp)
    assert planted
    form = page.forms["login-form"]
    form["username"], form["password"] = staff.username, staff.password
    page = form.submit(status=303, extra_environ=ENV).follow(extra_environ=ENV)
    after_password = _session_cookie(testapp)
    assert after_password != planted
    form = page.forms["verify-form"]
    form["code"] = factory.otp(staff)
    form.submit(status=303, extra_environ=ENV)
    assert _session_cookie(testapp) not in (planted, after_password)
    testapp.get("/account/", status=200, extra_environ=ENV)
    # The planted cookie is not signed in.
    testapp.set_cookie("session", planted)
    testapp.get("/account/", status=303, extra_environ=ENV)


# --- bearer tokens ---------------------------------------------------------------------

def _login(testapp, user, otp, status=200):
    return testapp.post_json("/api/v1/auth/token/", {
        "username": user.username, "password": user.password, "otp": otp},
        status=status, extra_environ=ENV)


def test_totp_replay_is_refused_on_the_api(testapp, factory):
    user = factory.user("replayer")
    code = factory.otp(user)
    _login(testapp, user, code)
    _login(testapp, user, code, status=401)


def test_revoked_and_refreshed_away_tokens_stay_refused(testapp, factory):
    user = factory.user("rotator")
    pair = _login(testapp, user, factory.otp(user)).json
    new = testapp.post_json("/api/v1/auth/token/refresh/", {"refresh": pair["refresh"]}).json
    testapp.post_json("/api/v1/auth/token/revoke/", {"token": new["refresh"]}, status=204)
    for secret in (pair["access"], new["access"]):
        for _ in range(2):
            testapp.get("/api/v1/tickets/", status=401,
                        headers={"Authorization": f"Bearer {secret}"})
    testapp.post_json("/api/v1/auth/token/refresh/", {"refresh": new["refresh"]}, status=401)


def test_expired_token_is_refused(testapp, factory, dbsession):
    from collector.accounts.models import ApiToken

    user = factory.user("expiring")
    headers = factory.token(user)
    testapp.get("/api/v1/tickets/", headers=headers, status=200)
    for token in dbsession.query(ApiToken).filter_by(user_id=user.id):
        token.expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    dbsession.commit()
    testapp.get("/api/v1/tickets/", headers=headers, status=401)


def _csrf(testapp, path="/account/"):
    return re.search(r'name="csrf_token" value="([^"]+)"', testapp.get(path).text).group(1)


def test_sign_out_ends_the_session_on_the_server(app, staff, web_login):
    """A session cookie copied before sign-out is worth nothing afterwards, on any device."""
    import webtest

    browser = web_login(webtest.TestApp(app), staff)
    other_device = web_login(webtest.TestApp(app), staff)
    copied = browser.cookies["session"]
    browser.get("/account/", status=200)
    browser.post("/logout", {"csrf_token": _csrf(browser)}, status=303)

    thief = webtest.TestApp(app)
    thief.set_cookie("session", copied)
    assert "/login?next=" in thief.get("/account/", status=303).location
    thief.get("/api/v1/tickets/", status=401)
    other_device.get("/account/", status=303)
    # Signing in again works, and makes a session of its own.
    again = web_login(webtest.TestApp(app), staff)
    again.get("/account/", status=200)
    assert again.cookies["session"] != copied
