"""The accounts side of the web UI: sign-in with TOTP, recovery codes, enrolment, first-run
setup, the account page and the administration of users, through the real WSGI stack."""

import re

import pyotp
import pytest
import webtest
from sqlalchemy import func, select

from collector.accounts import services, tokens, views
from collector.accounts.models import ApiToken, AuthFailure, RecoveryCode, User
from collector.cli import _first_run_hint

ENV = {"HTTP_HOST": "localhost", "REMOTE_ADDR": "127.0.0.1"}


def _password_step(testapp, user, password=None, next_path=None, status=303):
    page = testapp.get("/login" + (f"?next={next_path}" if next_path else ""))
    form = page.forms["login-form"]
    form["username"] = user.username
    form["password"] = password or user.password
    return form.submit(status=status)


def _code_step(testapp, code, status=303, field="code"):
    page = testapp.get("/verify")
    form = page.forms["recovery-form" if field == "recovery_code" else "verify-form"]
    form[field] = code
    return form.submit(status=status)


def _csrf(testapp, path="/account/"):
    page = testapp.get(path)
    return page.forms[0]["csrf_token"].value if page.forms else \
        re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


def _post(testapp, path, data=None, status=303, page="/account/"):
    return testapp.post(path, {"csrf_token": _csrf(testapp, page), **(data or {})},
                        status=status)


def _reload(dbsession, row):
    dbsession.expire_all()
    return dbsession.get(type(row), row.id)


def _failures(dbsession):
    dbsession.expire_all()
    return dbsession.scalar(select(func.count()).select_from(AuthFailure))


def _new_app(app, **environ):
    return webtest.TestApp(app, extra_environ={**ENV, **environ})


# --- the two-step sign-in ----------------------------------------------------------------

def test_password_then_code_signs_in(testapp, staff, factory):
    res = _password_step(testapp, staff)
    assert res.location.endswith("/verify")
    res = _code_step(testapp, factory.otp(staff))
    assert res.location == "http://localhost/tickets/"
    page = testapp.get("/account/")
    assert staff.username in page.text
    assert _reload(factory.session, staff).last_login is not None


def test_pending_session_grants_nothing(testapp, admin, factory):
    _password_step(testapp, admin)
    assert "session" in testapp.cookies
    # Signed in by password only: every staff page sends back to sign-in.
    for path in ("/account/", "/admin/users/", "/tickets/"):
        res = testapp.get(path, status="*")
        assert res.status_int in {303, 401, 403, 404}, path
        assert res.status_int != 200
    res = testapp.get("/account/", status=303)
    assert "/login?next=" in res.location
    assert testapp.get("/api/v1/auth/tokens/", status=401)


def test_next_is_followed_only_when_local(testapp, staff, factory, web_login):
    _password_step(testapp, staff, next_path="/account/")
    assert _code_step(testapp, factory.otp(staff)).location == "http://localhost/account/"


@pytest.mark.parametrize("value, expected", [
    ("/account/", "/account/"),
    ("/tickets/?q=1", "/tickets/?q=1"),
    ("//evil.example/", "/tickets/"),
    ("https://evil.example/", "/tickets/"),
    ("/\\evil.example", "/tickets/"),
    ("", "/tickets/"),
    (None, "/tickets/"),
])
def test_safe_next(value, expected):
    assert views.safe_next(value) == expected


def test_same_code_is_refused_twice(testapp, staff, factory, app):
    code = factory.otp(staff)
    _password_step(testapp, staff)
    _code_step(testapp, code)
    other = _new_app(app)
    _password_step(other, staff)
    res = _code_step(other, code, status=401)
    assert "wrong or was already used" in res.text
    other.get("/account/", status=303)


def test_wrong_code_is_refused_and_counted(testapp, staff, factory):
    _password_step(testapp, staff)
    res = _code_step(testapp, "000000" if factory.otp(staff) != "000000" else "111111",
                     status=401)
    assert "wrong or was already used" in res.text
    assert _failures(factory.session) == 1
    testapp.get("/account/", status=303)
    # Still pending: the right code works afterwards.
    _code_step(testapp, factory.otp(staff))


def test_wrong_password_and_unknown_or_disabled_user(testapp, staff, factory):
    res = _password_step(testapp, staff, password="wrong password", status=401)
    assert "Wrong username or password" in res.text
    ghost = User(username="ghost")
    ghost.password = "whatever it is"
    assert "Wrong username or password" in _password_step(testapp, ghost, status=401).text
    services.set_active(factory.session, staff, False)
    factory.session.commit()
    _password_step(testapp, staff, status=401)
    assert _failures(factory.session) == 3


def test_throttle_per_user(testapp, staff, factory):
    for _ in range(services.THROTTLE_PER_USER_ADDRESS):
        _password_step(testapp, staff, password="wrong password", status=401)
    res = _password_step(testapp, staff, status=429)
    assert "too many failed sign-in attempts" in res.text
    assert 0 < int(res.headers["Retry-After"]) <= 900


def test_throttle_counts_wrong_codes(testapp, staff, factory):
    _password_step(testapp, staff)
    for _ in range(services.THROTTLE_PER_USER_ADDRESS):
        _code_step(testapp, "12345", status=401)
    res = _code_step(testapp, factory.otp(staff), status=429)
    assert "too many failed sign-in attempts" in res.text
    testapp.get("/account/", status=303)


def test_throttle_per_address(app, staff, factory):
    attacker = _new_app(app, REMOTE_ADDR="192.0.2.7")
    for number in range(services.THROTTLE_PER_ADDRESS):
        ghost = User(username=f"guess{number}")
        ghost.password = "not the password"
        _password_step(attacker, ghost, status=401)
    assert "too many failed" in _password_step(attacker, staff, status=429).text
    # Another address is not affected.
    _password_step(_new_app(app, REMOTE_ADDR="192.0.2.8"), staff)


def test_pending_sign_in_expires(testapp, staff, factory, monkeypatch):
    _password_step(testapp, staff)
    monkeypatch.setattr(views, "PENDING_LIFETIME", -1)
    res = testapp.get("/verify", status=303)
    assert res.location == "http://localhost/login"
    assert "has expired" in res.follow().text


def test_recovery_code_works_once(testapp, staff, factory, app):
    codes = services.generate_recovery_codes(factory.session, staff)
    factory.session.commit()
    _password_step(testapp, staff, next_path="/account/")
    res = _code_step(testapp, codes[3].upper(), field="recovery_code")
    page = res.follow()
    assert "recovery code; 9 left" in page.text
    other = _new_app(app)
    _password_step(other, staff)
    _code_step(other, codes[3], field="recovery_code", status=401)
    _code_step(other, codes[4], field="recovery_code")


def test_logout(testapp, staff, web_login):
    web_login(testapp, staff)
    res = _post(testapp, "/logout")
    assert res.location == "http://localhost/login"
    assert "You are signed out" in res.follow().text
    testapp.get("/account/", status=303)


def test_signed_in_user_skips_login_form(testapp, staff, web_login):
    web_login(testapp, staff)
    assert testapp.get("/login?next=/account/", status=303).location.endswith("/account/")
    res = testapp.get("/verify", status=303)
    assert res.location.endswith("/tickets/")
    assert "expired" not in testapp.get("/account/").text


# --- enrolment ---------------------------------------------------------------------------

def test_enrolment_of_a_user_without_totp(testapp, factory):
    user = factory.user("newbie", totp=False)
    res = _password_step(testapp, user)
    assert res.location.endswith("/enrol")
    # Nothing else until enrolment is done.
    testapp.get("/account/", status=303)
    assert testapp.get("/verify", status=303).location.endswith("/enrol")
    page = testapp.get("/enrol")
    assert page.html.select_one("#totp-qr svg") is not None
    secret = page.html.select_one("#totp-secret").text.strip()
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)
    assert "style=" not in page.html.select_one("#totp-qr").decode()
    # The candidate secret stays the same while enrolment is pending.
    assert testapp.get("/enrol").html.select_one("#totp-secret").text.strip() == secret
    assert _reload(factory.session, user).totp_secret is None

    form = page.forms["enrol-form"]
    wrong = "123456" if pyotp.TOTP(secret).now() != "123456" else "654321"
    form["code"] = wrong
    assert "does not match" in form.submit(status=400).text
    testapp.get("/account/", status=303)

    form = testapp.get("/enrol").forms["enrol-form"]
    form["code"] = pyotp.TOTP(secret).now()
    res = form.submit(status=200)
    codes = [li.text.strip() for li in res.html.select("#recovery-codes li")]
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(re.fullmatch(r"[0-9a-f]{4}(-[0-9a-f]{4}){3}", code) for code in codes)
    assert res.headers["Cache-Control"] == "no-store"
    assert res.html.select_one("#recovery-continue")["href"].endswith("/tickets/")

    user = _reload(factory.session, user)
    assert user.totp_secret == secret
    stored = factory.session.scalars(select(RecoveryCode.code_hash).where(
        RecoveryCode.user_id == user.id)).all()
    assert len(stored) == 10 and not set(stored) & {c.replace("-", "") for c in codes}
    # Signed in now, and the codes are not shown again.
    page = testapp.get("/account/")
    assert "10 of 10 recovery codes left" in page.text
    assert codes[0] not in page.text
    testapp.get("/enrol", status=303)


def test_admin_resets_two_factor_and_user_enrols_again(testapp, admin, staff, factory, app,
                                                       web_login):
    services.generate_recovery_codes(factory.session, staff)
    factory.session.commit()
    web_login(testapp, admin)
    res = _post(testapp, f"/admin/users/{staff.id}/reset-2fa", page="/admin/users/")
    assert "Two-factor authentication of staff is reset" in res.follow().text
    user = _reload(factory.session, staff)
    assert user.totp_secret is None and user.totp_last_step == -1
    assert services.count_recovery_codes(factory.session, user) == 0
    other = _new_app(app)
    assert _password_step(other, staff).location.endswith("/enrol")
    assert other.get("/enrol").html.select_one("#totp-secret") is not None


# --- first run ---------------------------------------------------------------------------

def _setup_form(testapp, code, username="first", password="long enough password",
                confirm=None, status=303):
    form = testapp.get("/setup").forms["setup-form"]
    form["setup_code"] = code
    form["username"] = username
    form["email"] = "first@example.com"
    form["password"] = password
    form["password_confirm"] = confirm or password
    return form.submit(status=status)


def test_first_run_setup(testapp, factory, settings, data_dir):
    assert testapp.get("/login", status=303).location.endswith("/setup")
    res = _setup_form(testapp, "no code yet", status=400)
    assert "restart `collector serve`" in res.text
    code = services.make_setup_code(settings["data_dir"])
    assert "wrong setup code" in _setup_form(testapp, "0000-0000-0000", status=401).text
    _setup_form(testapp, code, confirm="something else", status=400)
    assert "at least 8" in _setup_form(testapp, code, password="short", status=400).text
    assert services.check_setup_code(settings["data_dir"], code)  # still usable
    assert factory.session.scalar(select(func.count()).select_from(User)) == 0

    res = _setup_form(testapp, code.upper())
    assert res.location.endswith("/enrol")
    user = factory.session.scalars(select(User)).one()
    assert user.username == "first" and user.is_admin and user.totp_secret is None
    assert not (data_dir / "setup-code").exists()
    assert testapp.get("/enrol").html.select_one("#totp-secret") is not None
    # Once a user exists, there is no setup page.
    testapp.get("/setup", status=404)
    testapp.post("/setup", {"csrf_token": _csrf(testapp, "/login")}, status=404)


def test_setup_refused_when_users_exist(testapp, staff, settings):
    code = services.make_setup_code(settings["data_dir"])
    testapp.get("/setup", status=404)
    res = testapp.get("/login")
    testapp.post("/setup", {"csrf_token": res.forms["login-form"]["csrf_token"].value,
                            "setup_code": code, "username": "intruder",
                            "password": "long enough password",
                            "password_confirm": "long enough password"}, status=404)


def test_setup_code_file(data_dir):
    code = services.make_setup_code(data_dir)
    path = data_dir / "setup-code"
    assert path.stat().st_mode & 0o777 == 0o600
    assert code.replace("-", "") not in path.read_text()
    assert services.check_setup_code(data_dir, code)
    assert not services.check_setup_code(data_dir, code[:-1] + ("0" if code[-1] != "0" else "1"))
    again = services.make_setup_code(data_dir)
    assert again != code and not services.check_setup_code(data_dir, code)
    services.clear_setup_code(data_dir)
    with pytest.raises(services.BadRequest):
        services.check_setup_code(data_dir, again)


def test_setup_code_is_claimed_once(data_dir):
    services.make_setup_code(data_dir)
    claimed = services.claim_setup_code(data_dir)
    with pytest.raises(services.Conflict):
        services.claim_setup_code(data_dir)
    services.release_setup_code(claimed, used=False)
    assert (data_dir / "setup-code").exists()
    services.release_setup_code(services.claim_setup_code(data_dir), used=True)
    assert not [p for p in data_dir.iterdir() if p.name.startswith("setup-code")]


@pytest.mark.commits  # the command line opens the database itself
def test_serve_prints_a_working_setup_code(app, capsys, data_dir, factory):
    settings = app.registry.settings
    _first_run_hint(settings, "development.ini", "127.0.0.1:6543")
    out = capsys.readouterr().out
    assert "http://127.0.0.1:6543/setup" in out
    assert "create-user admin --admin" in out
    code = re.search(r"setup code\n\s+(\S+)", out).group(1)
    assert services.check_setup_code(settings["data_dir"], code)
    # Once a user exists: no code, and the old one is gone.
    factory.user("someone")
    _first_run_hint(settings, "development.ini", "127.0.0.1:6543")
    assert capsys.readouterr().out == ""
    assert not (data_dir / "setup-code").exists()


# --- the account page --------------------------------------------------------------------

def test_change_password_needs_the_current_one(testapp, staff, factory, web_login):
    web_login(testapp, staff)
    form = testapp.get("/account/").forms["password-form"]
    form["current_password"] = "not my password"
    form["new_password"] = form["new_password_confirm"] = "a new long password"
    res = form.submit(status=401)
    assert "current password is wrong" in res.html.select_one("#password-error").text
    form = res.forms["password-form"]
    form["current_password"] = staff.password
    form["new_password"] = form["new_password_confirm"] = "short"
    assert "at least 8 characters" in form.submit(status=400).text
    form["new_password"] = "a new long password"
    form["new_password_confirm"] = "a different one"
    assert "differ" in form.submit(status=400).text
    assert services.check_password(_reload(factory.session, staff), staff.password)

    form["new_password"] = form["new_password_confirm"] = "a new long password"
    assert "password is changed" in form.submit(status=303).follow().text
    user = _reload(factory.session, staff)
    assert services.check_password(user, "a new long password")
    assert not services.check_password(user, staff.password)


def test_new_password_or_2fa_reset_ends_older_sessions(testapp, app, admin, staff, factory,
                                                       web_login):
    laptop = web_login(testapp, staff)
    phone = web_login(_new_app(app), staff)
    form = laptop.get("/account/").forms["password-form"]
    form["current_password"] = staff.password
    form["new_password"] = form["new_password_confirm"] = "a new long password"
    form.submit(status=303)
    laptop.get("/account/", status=200)  # the session that changed it is made anew
    assert phone.get("/account/", status=303).location.startswith("http://localhost/login")

    admins = web_login(_new_app(app), admin)
    _post(admins, f"/admin/users/{staff.id}/reset-2fa", page="/admin/users/")
    assert laptop.get("/account/", status=303).location.startswith("http://localhost/login")


def test_regenerate_recovery_codes(testapp, staff, factory, web_login):
    old = services.generate_recovery_codes(factory.session, staff)
    factory.session.commit()
    web_login(testapp, staff)
    assert "10 of 10 recovery codes left" in testapp.get("/account/").text
    res = testapp.get("/account/").forms["recovery-codes-form"].submit(status=200)
    codes = [li.text.strip() for li in res.html.select("#recovery-codes li")]
    assert len(codes) == 10 and not set(codes) & set(old)
    assert res.headers["Cache-Control"] == "no-store"
    assert not services.use_recovery_code(factory.session, staff, old[0])
    assert services.use_recovery_code(factory.session, staff, codes[0])


def test_personal_tokens_create_use_revoke(testapp, staff, factory, web_login):
    web_login(testapp, staff)
    form = testapp.get("/account/").forms["token-form"]
    form["name"] = "help-desk bot"
    form["lifetime_days"] = "30"
    res = form.submit(status=200)
    secret = res.html.select_one("#new-token-secret").text.strip()
    assert res.headers["Cache-Control"] == "no-store"
    row = factory.session.scalars(select(ApiToken).where(ApiToken.name == "help-desk bot")).one()
    assert row.mfa and row.expires_at is not None and row.last_used_at is None

    page = testapp.get("/account/")
    assert secret not in page.text
    assert page.html.select_one(f"#token-{row.id} .last-used").text.strip() == "never"

    bearer = {"Authorization": f"Bearer {secret}"}
    api = _new_app(testapp.app)
    api.get("/api/v1/auth/tokens/", headers=bearer, status=200)
    used = _reload(factory.session, row).last_used_at
    assert used is not None
    api.get("/api/v1/auth/tokens/", headers=bearer, status=200)
    assert _reload(factory.session, row).last_used_at == used  # at most once a minute
    page = testapp.get("/account/")
    assert page.html.select_one(f"#token-{row.id} .last-used").text.strip() != "never"

    form = next(f for f in page.forms.values() if f.action.endswith("/account/revoke-token")
                and f["token_id"].value == str(row.id))
    assert "is revoked" in form.submit(status=303).follow().text
    api.get("/api/v1/auth/tokens/", headers=bearer, status=401)
    assert f"token-{row.id}" not in testapp.get("/account/").text


def test_token_form_errors_and_foreign_tokens(testapp, staff, admin, factory, web_login):
    web_login(testapp, staff)
    form = testapp.get("/account/").forms["token-form"]
    form["name"] = "bot"
    form["lifetime_days"] = "forever"
    assert "lifetime" in form.submit(status=400).html.select_one("#token-error").text
    theirs = factory.session.scalars(select(ApiToken).where(
        ApiToken.user_id == admin.id)).first()
    res = _post(testapp, "/account/revoke-token", {"token_id": str(theirs.id)}, status=404)
    assert "no such token" in res.text
    assert _reload(factory.session, theirs).revoked_at is None


@pytest.mark.parametrize("token_id", ["99999999999", "²", "١٢", "-3", ""])
def test_revoke_token_ids_out_of_range_are_404(testapp, staff, web_login, token_id):
    """The account page's revoke form takes the same ids as the admin's: a readable 404
    page, never an integer overflow in the database (PostgreSQL's INTEGER is 32 bits)."""
    web_login(testapp, staff)
    page = testapp.get("/account/")
    form = next(f for f in page.forms.values() if f.action.endswith("/account/revoke-token"))
    form["token_id"].force_value(token_id)
    res = form.submit(status=404)
    assert "no such token" in res.text and "Traceback" not in res.text
    testapp.get("/api/v1/auth/tokens/", headers=staff.headers, status=200)


def test_note_token_use_resolution(staff, factory):
    import datetime as dt

    token = factory.session.scalars(select(ApiToken).where(
        ApiToken.user_id == staff.id)).first()
    start = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    tokens.note_token_use(token, start)
    tokens.note_token_use(token, start + dt.timedelta(seconds=59))
    assert token.last_used_at == start
    tokens.note_token_use(token, start + dt.timedelta(seconds=60))
    assert token.last_used_at == start + dt.timedelta(seconds=60)


# --- administration of users -------------------------------------------------------------

def test_admin_pages_refused_to_others(testapp, app, staff, admin, factory, web_login):
    res = testapp.get("/admin/users/", status=303)
    assert res.location.endswith("/login?next=%2Fadmin%2Fusers%2F")
    web_login(testapp, staff)
    testapp.get("/admin/users/", status=403)
    testapp.get(f"/admin/users/{admin.id}/", status=403)
    _post(testapp, "/admin/users/", {"username": "x", "password": "long enough password"},
          status=403)
    _post(testapp, f"/admin/users/{admin.id}/active", {"active": "0"}, status=403)
    assert _reload(factory.session, admin).is_active

    api = _new_app(app)
    res = api.get("/admin/users/", headers=factory.token(admin, mfa=False), status=403)
    assert "two-factor" in res.text
    api.get("/admin/users/", headers=factory.token(admin, mfa=True), status=200)


def test_admin_home_and_lists(testapp, admin, staff, web_login):
    web_login(testapp, admin)
    assert testapp.get("/admin/", status=303).location.endswith("/admin/users/")
    page = testapp.get("/admin/users/")
    assert page.html.select_one(f"#user-{staff.id} a").text == "staff"
    page = testapp.get(f"/admin/users/{staff.id}/")
    assert page.html.select_one("h1").text.strip() == "staff"
    assert page.html.select_one("#user-role").text == "staff"
    assert page.forms["active-form"].action.endswith(f"/admin/users/{staff.id}/active")
    testapp.get("/admin/users/9999/", status=404)
    testapp.get("/admin/users/nope/", status=404)


def test_admin_creates_user_who_enrols_at_first_sign_in(testapp, app, admin, factory,
                                                        web_login):
    web_login(testapp, admin)
    form = testapp.get("/admin/users/").forms["create-user-form"]
    form["username"] = "carol"
    form["email"] = "carol@example.com"
    form["password"] = "carol's password"
    form["is_admin"] = "1"
    res = form.submit(status=303)
    carol = factory.session.scalars(select(User).where(User.username == "carol")).one()
    assert res.location.endswith(f"/admin/users/{carol.id}/")
    assert carol.is_admin and carol.totp_secret is None and carol.email == "carol@example.com"
    form = testapp.get("/admin/users/").forms["create-user-form"]
    form["username"] = "carol"
    form["password"] = "another password"
    assert "already exists" in form.submit(status=409).text
    form["username"] = "dave"
    form["password"] = "short"
    assert "at least 8" in form.submit(status=400).text
    carol.password = "carol's password"
    assert _password_step(_new_app(app), carol).location.endswith("/enrol")


def test_admin_disables_promotes_and_resets_password(testapp, app, admin, staff, factory,
                                                     web_login):
    web_login(testapp, admin)
    page = f"/admin/users/{staff.id}/"
    _post(testapp, f"{page}active", {"active": "0"}, page=page)
    assert not _reload(factory.session, staff).is_active
    _password_step(_new_app(app), staff, status=401)
    _post(testapp, f"{page}active", {"active": "1"}, page=page)
    assert _reload(factory.session, staff).is_active
    _post(testapp, f"{page}admin", {"is_admin": "1"}, page=page)
    assert _reload(factory.session, staff).is_admin
    _post(testapp, f"{page}admin", {"is_admin": "0"}, page=page)
    assert not _reload(factory.session, staff).is_admin
    res = _post(testapp, f"{page}password", {"password": "short"}, page=page, status=400)
    assert "at least 8" in res.text
    _post(testapp, f"{page}password", {"password": "set by the admin"}, page=page)
    _password_step(_new_app(app), staff, password="set by the admin")


def test_last_active_admin_cannot_be_disabled_or_demoted(testapp, admin, factory, web_login):
    web_login(testapp, admin)
    page = f"/admin/users/{admin.id}/"
    res = _post(testapp, f"{page}active", {"active": "0"}, page=page, status=409)
    assert "last active admin" in res.html.select_one("#user-error").text
    res = _post(testapp, f"{page}admin", {"is_admin": "0"}, page=page, status=409)
    assert "last active admin" in res.text
    user = _reload(factory.session, admin)
    assert user.is_active and user.is_admin
    # With another active admin, an admin may step down.
    factory.user("second", admin=True)
    _post(testapp, f"{page}admin", {"is_admin": "0"}, page=page)
    assert not _reload(factory.session, admin).is_admin


def test_a_disabled_admin_does_not_count(admin, factory):
    other = factory.user("second", admin=True)
    services.set_active(factory.session, other, False)
    with pytest.raises(services.Conflict):
        services.set_admin(factory.session, admin, False)


# --- CSRF and the session cookie ---------------------------------------------------------

@pytest.mark.parametrize("path", ["/login", "/logout", "/verify", "/setup"])
def test_post_without_csrf_token_is_refused(testapp, staff, path):
    testapp.get("/login")
    res = testapp.post(path, {"username": staff.username, "password": staff.password},
                       status=400)
    assert "The form has expired" in res.text


def test_session_cookie_flags(app, staff):
    plain = _new_app(app).get("/login").headers["Set-Cookie"]
    assert "HttpOnly" in plain and "SameSite=Lax" in plain and "secure" not in plain.lower()
    secure = _new_app(app, **{"wsgi.url_scheme": "https"}).get("/login").headers["Set-Cookie"]
    assert "HttpOnly" in secure and "SameSite=Lax" in secure and "secure" in secure.lower()
