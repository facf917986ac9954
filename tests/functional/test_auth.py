"""/api/v1/auth/…: password + TOTP → tokens, refresh rotation, verify, revoke, throttle."""

import pytest


def _login(testapp, user, otp, status=200, password=None):
    return testapp.post_json("/api/v1/auth/token/", {
        "username": user.username, "password": password or user.password, "otp": otp},
        status=status, extra_environ={"REMOTE_ADDR": "10.0.0.9"})


def test_token_pair_and_use(testapp, factory):
    user = factory.user("alice")
    pair = _login(testapp, user, factory.otp(user)).json
    assert set(pair) == {"access", "refresh"}
    access = {"Authorization": f"Bearer {pair['access']}"}
    assert testapp.get("/api/v1/tickets/", headers=access).json == []
    # access tokens carry mfa: they were minted after a TOTP check
    verified = testapp.post_json("/api/v1/auth/token/verify/", {"token": pair["access"]}).json
    assert verified["valid"] and verified["kind"] == "access" and verified["user"] == "alice"
    testapp.post_json("/api/v1/auth/token/verify/", {"token": "junk"}, status=401)


def test_otp_cannot_be_reused(testapp, factory):
    user = factory.user("alice")
    code = factory.otp(user)
    _login(testapp, user, code)
    assert _login(testapp, user, code, status=401).json["detail"]


def test_wrong_credentials_are_401_and_throttled(testapp, factory):
    user = factory.user("alice")
    _login(testapp, user, "000000", status=401)
    _login(testapp, user, factory.otp(user), password="wrong password", status=401)
    res = testapp.post_json("/api/v1/auth/token/", {"username": "ghost", "password": "x",
                                                    "otp": "1"}, status=401)
    assert res.json["detail"] == "wrong username, password or one-time code"
    for _ in range(3):
        _login(testapp, user, "123456", status=401)
    throttled = _login(testapp, user, factory.otp(user), status=429)
    assert "too many" in throttled.json["detail"] and throttled.headers["Retry-After"]
    testapp.post_json("/api/v1/auth/token/", {"username": "alice"}, status=400)


def test_refresh_rotates_and_revoke(testapp, factory):
    user = factory.user("alice")
    pair = _login(testapp, user, factory.otp(user)).json
    new = testapp.post_json("/api/v1/auth/token/refresh/", {"refresh": pair["refresh"]}).json
    assert new["access"] != pair["access"]
    # the old refresh token and the access token minted with it are revoked
    testapp.post_json("/api/v1/auth/token/refresh/", {"refresh": pair["refresh"]}, status=401)
    testapp.get("/api/v1/tickets/", headers={"Authorization": f"Bearer {pair['access']}"},
                status=401)
    testapp.post_json("/api/v1/auth/token/refresh/", {"refresh": new["access"]}, status=401)
    testapp.post_json("/api/v1/auth/token/revoke/", {"token": new["refresh"]}, status=204)
    testapp.get("/api/v1/tickets/", headers={"Authorization": f"Bearer {new['access']}"},
                status=401)


def test_personal_tokens(testapp, factory, staff):
    made = testapp.post_json("/api/v1/auth/tokens/", {"name": "helpdesk bot"},
                             headers=staff.headers, status=201).json
    assert made["mfa"] is True and made["token"] and made["last_used_at"] is None
    bot = {"Authorization": f"Bearer {made['token']}"}
    assert testapp.get("/api/v1/tickets/", headers=bot).json == []
    listed = {t["name"]: t for t in testapp.get("/api/v1/auth/tokens/",
                                                 headers=staff.headers).json}
    assert listed["helpdesk bot"]["last_used_at"].endswith("Z")
    other = factory.user("other")
    testapp.delete(f"/api/v1/auth/tokens/{made['id']}/", headers=factory.token(other),
                   status=404)
    testapp.delete(f"/api/v1/auth/tokens/{made['id']}/", headers=staff.headers, status=204)
    testapp.get("/api/v1/tickets/", headers=bot, status=401)
    testapp.delete("/api/v1/auth/tokens/abc/", headers=staff.headers, status=404)


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "Basic abc", "Bearer nope"])
def test_bad_authorization_headers(testapp, header):
    res = testapp.get("/api/v1/tickets/", headers={"Authorization": header}, status=401)
    assert res.headers["WWW-Authenticate"].startswith("Bearer")


def test_inactive_user_token_stops_working(testapp, factory, dbsession):
    user = factory.user("leaver")
    headers = factory.token(user)
    testapp.get("/api/v1/tickets/", headers=headers)
    user.is_active = False
    dbsession.merge(user)
    dbsession.commit()
    testapp.get("/api/v1/tickets/", headers=headers, status=401)


def test_forwarded_for_does_not_dodge_the_address_throttle(testapp, factory):
    users = [factory.user(f"u{i}") for i in range(21)]
    for i, user in enumerate(users[:20]):
        testapp.post_json("/api/v1/auth/token/", {"username": user.username, "password": "bad",
                                                  "otp": "1"}, status=401, headers={
            "X-Forwarded-For": f"192.0.2.{i}"})
    last = users[20]
    testapp.post_json("/api/v1/auth/token/", {"username": last.username,
                                              "password": last.password,
                                              "otp": factory.otp(last)}, status=429,
                      headers={"X-Forwarded-For": "192.0.2.200"})
