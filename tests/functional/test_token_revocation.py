"""Bearer tokens do not outlive a compromise.

The user's own password change, an admin's password reset, an admin's two-factor reset,
disabling a user and an admin's "revoke all" each revoke every access and refresh token of
the user, and the personal API tokens too unless "keep personal API tokens" is ticked; an
old refresh token never rotates into a new pair afterwards; enabling a user again revives
nothing. Admins list and revoke any user's tokens on /admin/users/{id}/ and through
/api/v1/users/{id}/tokens/. Every event is driven through the real pages or API.
"""

import concurrent.futures
import hashlib
import http.client
import json
import time
import urllib.parse

import pyotp
import pytest
import webtest
from sqlalchemy import select

from collector.accounts.models import ApiToken
from collector.audit.models import AuditEvent

ENV = {"HTTP_HOST": "localhost", "REMOTE_ADDR": "127.0.0.1"}
KINDS = ("access", "refresh", "personal")
REFUSED = {kind: 401 for kind in KINDS}


def _browser(app):
    return webtest.TestApp(app, extra_environ=ENV)


def _unused_code(factory, user):
    """A TOTP code of a step the user has not used yet (each sign-in claims one)."""
    factory.session.expire_all()
    user_row = factory.session.get(type(user), user.id)
    totp = pyotp.TOTP(user_row.totp_secret)
    now_step = int(time.time() // totp.interval)
    step = next((s for s in (now_step, now_step + 1) if s > user_row.totp_last_step), None)
    if step is None:
        user_row.totp_last_step = -1
        factory.session.commit()
        step = now_step
    return totp.at(step * totp.interval)


def _sign_in_tokens(testapp, factory, user):
    """One token of every kind, made through the API: an access and refresh pair from
    /auth/token/ (rotated once, so the pair under test came from a rotation) and a
    personal token created with that access token."""
    first = testapp.post_json("/api/v1/auth/token/", {
        "username": user.username, "password": user.password,
        "otp": _unused_code(factory, user)}, status=200).json
    pair = testapp.post_json("/api/v1/auth/token/refresh/", {"refresh": first["refresh"]},
                             status=200).json
    personal = testapp.post_json("/api/v1/auth/tokens/", {"name": "script"}, status=201,
                                 headers={"Authorization": f"Bearer {pair['access']}"}).json
    return {"access": pair["access"], "refresh": pair["refresh"],
            "personal": personal["token"]}


def _state(testapp, tokens):
    """{kind: status}: an access or personal token used on the API, a refresh token
    rotated; /auth/token/verify/ must agree with each."""
    states = {}
    for kind, secret in tokens.items():
        verified = testapp.post_json("/api/v1/auth/token/verify/", {"token": secret},
                                     expect_errors=True).status_int
        if kind == "refresh":
            used = testapp.post_json("/api/v1/auth/token/refresh/", {"refresh": secret},
                                     expect_errors=True)
        else:
            used = testapp.get("/api/v1/tickets/", expect_errors=True,
                               headers={"Authorization": f"Bearer {secret}"})
        assert used.status_int in (200, 401), used
        if used.status_int == 401:
            assert used.json["detail"]
        assert verified == used.status_int, \
            f"{kind}: verify says {verified}, use says {used.status_int}"
        states[kind] = used.status_int
    return states


def _tick(form, keep):
    """Tick "keep personal API tokens" or leave it empty (the default; a form without
    the box, as before it existed, sends the same)."""
    if keep or "keep_personal_tokens" in form.fields:
        form["keep_personal_tokens"].checked = keep
    return form


# --- the events, each through the page or API a person would use --------------------------

def own_password(ctx, keep):
    browser = ctx.web_login(_browser(ctx.app), ctx.user)
    form = browser.get("/account/").forms["password-form"]
    form["current_password"] = ctx.user.password
    form["new_password"] = form["new_password_confirm"] = "a brand new password"
    page = _tick(form, keep).submit(status=303).follow()
    assert "API token" in page.text  # the flash says how many were revoked


def _admin_form(ctx, form_id):
    admins = ctx.web_login(_browser(ctx.app), ctx.admin)
    return admins.get(f"/admin/users/{ctx.user.id}/").forms[form_id]


def admin_password(ctx, keep):
    form = _admin_form(ctx, "reset-password-form")
    form["password"] = "set by the admin"
    _tick(form, keep).submit(status=303)


def admin_2fa_reset(ctx, keep):
    _tick(_admin_form(ctx, "reset-2fa-form"), keep).submit(status=303)


def disable(ctx, keep):
    _tick(_admin_form(ctx, "active-form"), keep).submit(status=303)


def admin_revoke_all_page(ctx, keep):
    page = _tick(_admin_form(ctx, "revoke-tokens-form"), keep).submit(status=303).follow()
    assert "revoked" in page.text


def admin_revoke_all_api(ctx, keep):
    res = ctx.testapp.post_json(f"/api/v1/users/{ctx.user.id}/tokens/revoke/",
                                {"keep_personal_tokens": keep}, headers=ctx.admin.headers)
    assert res.json == {"revoked": 3 if not keep else 2, "keep_personal_tokens": keep}


EVENTS = [own_password, admin_password, admin_2fa_reset, disable, admin_revoke_all_page,
          admin_revoke_all_api]


class Ctx:
    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)


@pytest.fixture
def ctx(app, testapp, factory, admin, web_login):
    user = factory.user("victim")
    tokens = _sign_in_tokens(testapp, factory, user)
    return Ctx(app=app, testapp=testapp, factory=factory, admin=admin, user=user,
               tokens=tokens, web_login=web_login)


@pytest.mark.parametrize("keep", [False, True], ids=["revoke-personal", "keep-personal"])
@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.__name__)
def test_every_event_revokes_every_kind_of_token(ctx, event, keep):
    assert _state(ctx.testapp, {k: ctx.tokens[k] for k in ("access", "personal")}) == {
        "access": 200, "personal": 200}
    event(ctx, keep)
    expected = dict(REFUSED)
    if keep and event is not disable:  # a disabled user's kept tokens wait for enabling
        expected["personal"] = 200
    assert _state(ctx.testapp, ctx.tokens) == expected
    # And nothing of the user is left alive in the database but what was kept.
    ctx.factory.session.expire_all()
    live = ctx.factory.session.scalars(select(ApiToken.kind).where(
        ApiToken.user_id == ctx.user.id, ApiToken.revoked_at.is_(None))).all()
    assert live == (["personal"] if keep else [])


@pytest.mark.parametrize("keep", [False, True], ids=["revoke-personal", "keep-personal"])
def test_enabling_again_revives_nothing(ctx, keep):
    disable(ctx, keep)
    admins = ctx.web_login(_browser(ctx.app), ctx.admin)
    form = admins.get(f"/admin/users/{ctx.user.id}/").forms["active-form"]
    assert form["active"].value == "1"
    assert "keep_personal_tokens" not in form.fields  # enabling has nothing to keep
    page = form.submit(status=303).follow()
    assert "is enabled." in page.text and "revoked" not in page.text
    # Kept personal tokens work again (the admin chose so); nothing else does.
    assert _state(ctx.testapp, ctx.tokens) == {**REFUSED, "personal": 200 if keep else 401}
    # The user signs in afresh and gets tokens that work.
    fresh = _sign_in_tokens(ctx.testapp, ctx.factory, ctx.user)
    assert _state(ctx.testapp, {"access": fresh["access"]}) == {"access": 200}


def test_own_password_change_offers_to_keep_personal_tokens(ctx):
    """The box is there, unticked: the default revokes personal tokens too."""
    browser = ctx.web_login(_browser(ctx.app), ctx.user)
    form = browser.get("/account/").forms["password-form"]
    assert not form["keep_personal_tokens"].checked
    # A failed change (wrong current password) revokes nothing.
    form["current_password"] = "not the password"
    form["new_password"] = form["new_password_confirm"] = "a brand new password"
    form.submit(status=401)
    assert _state(ctx.testapp, {k: ctx.tokens[k] for k in ("access", "personal")}) == {
        "access": 200, "personal": 200}


def test_a_failed_admin_action_revokes_nothing(ctx):
    form = _admin_form(ctx, "reset-password-form")
    form["password"] = "short"
    assert "at least 8" in form.submit(status=400).text
    assert _state(ctx.testapp, {k: ctx.tokens[k] for k in ("access", "personal")}) == {
        "access": 200, "personal": 200}
    # The last active admin cannot be disabled: their tokens are not revoked either.
    admins = ctx.web_login(_browser(ctx.app), ctx.admin)
    form = admins.get(f"/admin/users/{ctx.admin.id}/").forms["active-form"]
    assert "last active admin" in form.submit(status=409).text
    _listed(ctx, ctx.admin.id)


def test_the_audit_log_records_the_choice_and_no_secret(ctx, dbsession):
    admin_password(ctx, keep=True)
    admin_2fa_reset(ctx, keep=False)
    dbsession.expire_all()
    events = dbsession.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
    password = [e for e in events if e.action == "user.password"]
    assert [e.detail["keep_personal_tokens"] for e in password] == [True]
    assert password[0].actor_name == "root"
    bulk = [e for e in events if e.action == "token.revoke_all"]
    assert [(e.actor_name, e.detail["cause"], e.detail["keep_personal_tokens"],
             e.detail["count"], e.detail["user"]) for e in bulk] == [
        ("root", "user.password", True, 2, "victim"), ("root", "2fa.reset", False, 1, "victim")]
    # No secret, and no hash of one, anywhere in the log.
    text = json.dumps([(e.action, e.detail, e.reason) for e in events])
    for secret in ctx.tokens.values():
        assert secret not in text and secret[:12] not in text
        assert hashlib.sha256(secret.encode()).hexdigest() not in text


# --- the admin API ----------------------------------------------------------------------

def _listed(ctx, user_id=None, headers=None, status=200):
    return ctx.testapp.get(f"/api/v1/users/{user_id or ctx.user.id}/tokens/",
                           headers=headers or ctx.admin.headers, status=status)


def test_admin_lists_every_live_token_without_secrets(ctx, dbsession):
    import datetime as dt

    rows = _listed(ctx).json
    # The first pair was revoked by its rotation; the rotated pair and the personal token live.
    assert sorted(row["kind"] for row in rows) == ["access", "personal", "refresh"]
    for row in rows:
        assert set(row) == {"id", "kind", "name", "time_create", "expires_at",
                            "last_used_at", "mfa"}
        assert row["mfa"] is True
    text = json.dumps(rows)
    for secret in ctx.tokens.values():
        assert secret not in text and hashlib.sha256(secret.encode()).hexdigest() not in text
    # An expired token is not live; another user's tokens are not this user's.
    personal = next(row for row in rows if row["kind"] == "personal")
    token = dbsession.get(ApiToken, personal["id"])
    token.expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    dbsession.commit()
    assert sorted(row["kind"] for row in _listed(ctx).json) == ["access", "refresh"]
    assert all(row["name"] == "test" for row in _listed(ctx, ctx.admin.id).json)
    _listed(ctx, 99999, status=404)
    _listed(ctx, "nope", status=404)


@pytest.mark.parametrize("kind", KINDS)
def test_admin_revokes_one_token_of_each_kind(ctx, kind, dbsession):
    rows = {row["kind"]: row["id"] for row in _listed(ctx).json}
    ctx.testapp.delete(f"/api/v1/users/{ctx.user.id}/tokens/{rows[kind]}/",
                       headers=ctx.admin.headers, status=204)
    # A refresh token takes the access token minted with it along.
    gone = {kind, "access"} if kind == "refresh" else {kind}
    assert sorted(row["kind"] for row in _listed(ctx).json) == sorted(set(KINDS) - gone)
    assert _state(ctx.testapp, ctx.tokens) == {k: 401 if k in gone else 200 for k in KINDS}
    again = ctx.testapp.delete(f"/api/v1/users/{ctx.user.id}/tokens/{rows[kind]}/",
                               headers=ctx.admin.headers, status=404)
    assert again.json["detail"] == "no such token"
    dbsession.expire_all()
    [event] = [e for e in dbsession.scalars(select(AuditEvent).where(
        AuditEvent.action == "token.revoke")) if e.detail["token_id"] == rows[kind]]
    assert (event.actor_name, event.detail["kind"], event.detail["user"]) == (
        "root", kind, "victim")


@pytest.mark.parametrize("token_id", ["abc", "0", "-1", "99999999999", "²", "١٢", "1.5"])
def test_bad_token_ids_are_404(ctx, token_id):
    res = ctx.testapp.delete(f"/api/v1/users/{ctx.user.id}/tokens/{urllib.parse.quote(token_id)}/",
                             headers=ctx.admin.headers, status=404)
    assert res.json["detail"]


@pytest.mark.parametrize("user_id", ["abc", "0", "-1", "99999999999", "360117868360536096768",
                                     "-57656469119319668686848", "²", "١٢", "1.5"])
def test_bad_user_ids_are_404_on_the_api_and_the_pages(ctx, user_id):
    """Found by the fuzz run: ids past 64 bits were a 500 (OverflowError in the driver)."""
    quoted = urllib.parse.quote(user_id)
    for method, path in (("get", f"/api/v1/users/{quoted}/tokens/"),
                         ("delete", f"/api/v1/users/{quoted}/tokens/1/"),
                         ("post", f"/api/v1/users/{quoted}/tokens/revoke/"),
                         ("get", f"/admin/users/{quoted}/")):
        res = getattr(ctx.testapp, method)(path, headers=ctx.admin.headers, status=404)
        assert "Traceback" not in res.text


def test_a_token_of_another_user_is_404(ctx):
    theirs = _listed(ctx, ctx.admin.id).json[0]["id"]
    ctx.testapp.delete(f"/api/v1/users/{ctx.user.id}/tokens/{theirs}/",
                       headers=ctx.admin.headers, status=404)
    _listed(ctx, ctx.admin.id)  # the admin's own token still works


@pytest.mark.parametrize("body", [{"keep_personal_tokens": "maybe"},
                                  {"keep_personal_tokens": None}, [1]])
def test_revoke_all_refuses_a_bad_body(ctx, body):
    res = ctx.testapp.post(f"/api/v1/users/{ctx.user.id}/tokens/revoke/",
                           json.dumps(body), content_type="application/json",
                           headers=ctx.admin.headers, status=400)
    assert res.json["detail"]
    assert len(_listed(ctx).json) == 3


def test_revoke_all_without_a_body_revokes_personal_tokens_too(ctx, dbsession):
    res = ctx.testapp.post(f"/api/v1/users/{ctx.user.id}/tokens/revoke/",
                           headers=ctx.admin.headers, status=200)
    assert res.json == {"revoked": 3, "keep_personal_tokens": False}
    assert _state(ctx.testapp, ctx.tokens) == REFUSED
    dbsession.expire_all()
    [event] = dbsession.scalars(select(AuditEvent).where(
        AuditEvent.action == "token.revoke_all")).all()
    assert (event.actor_name, event.detail["cause"], event.detail["count"]) == (
        "root", "admin", 3)


def test_only_admins_with_two_factor(ctx, staff):
    for headers in (staff.headers, {"Authorization": f"Bearer {ctx.tokens['access']}"}):
        _listed(ctx, headers=headers, status=403)
        ctx.testapp.post_json(f"/api/v1/users/{ctx.user.id}/tokens/revoke/", {},
                              headers=headers, status=403)
    no_mfa = ctx.factory.token(ctx.admin, mfa=False)
    assert "two-factor" in _listed(ctx, headers=no_mfa, status=403).json["detail"]
    ctx.testapp.get(f"/api/v1/users/{ctx.user.id}/tokens/", status=401)
    assert len(_listed(ctx).json) == 3


# --- the admin page ---------------------------------------------------------------------

def test_admin_page_lists_and_revokes_tokens(ctx):
    admins = ctx.web_login(_browser(ctx.app), ctx.admin)
    page = admins.get(f"/admin/users/{ctx.user.id}/")
    kinds = sorted(td.text for td in page.html.select("#user-token-list .token-kind"))
    assert kinds == ["access", "personal", "refresh"]
    for secret in ctx.tokens.values():
        assert secret not in page.text
    personal = next(row for row in _listed(ctx).json if row["kind"] == "personal")
    form = next(f for f in page.forms.values() if f.action.endswith("/revoke-token")
                and f["token_id"].value == str(personal["id"]))
    assert "is revoked" in form.submit(status=303).follow().text
    assert _state(ctx.testapp, ctx.tokens) == {"access": 200, "refresh": 200,
                                               "personal": 401}
    # A token id that is not this user's live token: a readable 404 page, nothing revoked.
    form["token_id"].force_value(str(personal["id"]))
    res = form.submit(status=404)
    assert "no such token" in res.text and "Traceback" not in res.text
    theirs = _listed(ctx, ctx.admin.id).json[0]["id"]
    form["token_id"].force_value(str(theirs))
    form.submit(status=404)
    form["token_id"].force_value("99999999999")
    form.submit(status=404)
    _listed(ctx, ctx.admin.id)


# --- rotation races ---------------------------------------------------------------------

def _post_json(base, path, body, headers=None):
    url = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    try:
        conn.request("POST", path, body=json.dumps(body), headers={
            "Content-Type": "application/json", **(headers or {})})
        res = conn.getresponse()
        return res.status, json.loads(res.read() or b"null")
    finally:
        conn.close()


@pytest.mark.parametrize("parallel", [2, 8, 16])
def test_one_refresh_token_rotates_once_in_parallel(live_server, testapp, factory, parallel):
    user = factory.user("racer")
    refresh = _sign_in_tokens(testapp, factory, user)["refresh"]
    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        results = list(pool.map(lambda _: _post_json(
            live_server, "/api/v1/auth/token/refresh/", {"refresh": refresh}),
            range(parallel)))
    assert sorted(status for status, _ in results) == [200] + [401] * (parallel - 1), results


@pytest.mark.parametrize("chains", [1, 4])
def test_rotation_racing_a_revocation_leaves_nothing_alive(live_server, app, testapp, factory,
                                                           admin, web_login, chains):
    """Refresh chains rotating as fast as they can while an admin sets a new password:
    every chain ends refused and no token of the user is left alive."""
    user = factory.user("racer")
    starts = [_sign_in_tokens(testapp, factory, user)["refresh"] for _ in range(chains)]
    ctx = Ctx(app=app, admin=admin, user=user, web_login=web_login)
    form = _admin_form(ctx, "reset-password-form")
    form["password"] = "set by the admin"

    def chain(refresh):
        for rotations in range(200):
            status, body = _post_json(live_server, "/api/v1/auth/token/refresh/",
                                      {"refresh": refresh})
            if status != 200:
                return status, rotations
            refresh = body["refresh"]
        return 200, rotations

    with concurrent.futures.ThreadPoolExecutor(chains + 1) as pool:
        running = [pool.submit(chain, start) for start in starts]
        time.sleep(0.2)
        form.submit(status=303)
        ends = [future.result() for future in running]
    assert all(status == 401 for status, _ in ends), ends
    factory.session.expire_all()
    live = factory.session.scalars(select(ApiToken.id).where(
        ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))).all()
    assert live == []

