"""Details of the sign-in and account forms, through the real WSGI stack: the password
rule said and checked where a password is chosen, and why a visitor is on the sign-in page
(without telling whether the page they asked for exists)."""

import pytest
import webtest

from collector.accounts import services, views

ENV = {"HTTP_HOST": "localhost", "REMOTE_ADDR": "127.0.0.1"}
RULE = f"At least {services.PASSWORD_MIN_LENGTH} characters."


def _browser(app, **environ):
    return webtest.TestApp(app, extra_environ={**ENV, **environ})


def _rule_of(page, field_id):
    """The field's minlength and the text it is described by."""
    field = page.html.find(id=field_id)
    described = page.html.find(id=field["aria-describedby"])
    return int(field["minlength"]), described.get_text(strip=True)


# --- the password rule -------------------------------------------------------------------

def test_every_new_password_field_says_and_checks_the_rule(app, admin, staff, web_login):
    admins = web_login(_browser(app), admin)
    expected = (services.PASSWORD_MIN_LENGTH, RULE)
    assert _rule_of(admins.get("/admin/users/"), "new-password") == expected
    assert _rule_of(admins.get(f"/admin/users/{staff.id}/"), "reset-password") == expected
    account = admins.get("/account/")
    assert _rule_of(account, "new_password") == expected
    # The "again" field checks the same length without a second copy of the sentence.
    again = account.html.find(id="new_password_confirm")
    assert int(again["minlength"]) == services.PASSWORD_MIN_LENGTH
    assert account.text.count(RULE) == 1


def test_the_setup_form_says_the_rule(testapp, settings):
    services.make_setup_code(settings["data_dir"])
    assert _rule_of(testapp.get("/setup"), "password") == (services.PASSWORD_MIN_LENGTH, RULE)


def test_the_server_refuses_one_character_less_with_the_same_number(app, admin, staff,
                                                                    web_login):
    admins = web_login(_browser(app), admin)
    form = admins.get("/admin/users/").forms["create-user-form"]
    form["username"] = "newcomer"
    form["password"] = "x" * (services.PASSWORD_MIN_LENGTH - 1)
    refused = form.submit(status=400)
    assert f"at least {services.PASSWORD_MIN_LENGTH} characters" in refused.text
    form = admins.get(f"/admin/users/{staff.id}/").forms["reset-password-form"]
    form["password"] = "x" * services.PASSWORD_MIN_LENGTH
    form.submit(status=303)


# --- why the sign-in page ----------------------------------------------------------------

def _arrival(browser, path):
    """Where an anonymous GET of ``path`` leads, and the notice the sign-in page shows."""
    response = browser.get(path, status=303)
    page = response.follow()
    notice = page.html.find(id="login-notice")
    return response.location, notice.get_text(strip=True) if notice else None


def test_a_staff_page_sends_a_visitor_to_sign_in_and_says_why(app, staff):
    location, notice = _arrival(_browser(app), "/tickets/?q=1")
    assert location == "http://localhost/login?next=%2Ftickets%2F%3Fq%3D1"
    assert notice == "Sign in to see that page."
    # Asked for directly, the sign-in page has nothing to explain.
    assert _browser(app).get("/login").html.find(id="login-notice") is None
    assert _browser(app).get("/", status=303).follow().html.find(id="login-notice") is None


def test_a_missing_ticket_looks_like_a_real_one(app, factory, staff):
    factory.ticket(factory.platform("vm6"), 4242)
    factory.session.commit()
    seen = {}
    for number in (4242, 4243):
        location, notice = _arrival(_browser(app), f"/platforms/vm6/tickets/{number}/")
        seen[number] = (location.replace(str(number), "N"), notice)
    assert seen[4242] == seen[4243]
    assert seen[4242][1] == "Sign in to see that page."


def test_an_ended_session_is_told_apart(app, staff, web_login, dbsession):
    browser = web_login(_browser(app), staff)
    browser.get("/tickets/", status=200)
    # A new password (set elsewhere) ends the sessions made before it.
    dbsession.expire_all()
    user = dbsession.get(type(staff), staff.id)
    services.set_password(user, "another long password")
    dbsession.commit()
    for path in ("/tickets/", "/platforms/vm6/tickets/999/"):
        assert _arrival(browser, path)[1] == \
            "Your session has ended: sign in again to see that page."
    # Straight to the sign-in page: no page was asked for.
    stale = web_login(_browser(app), staff, password="another long password")
    services.set_password(dbsession.get(type(staff), staff.id), "a third long password")
    dbsession.commit()
    notice = stale.get("/login").html.find(id="login-notice").get_text(strip=True)
    assert notice == "Your session has ended: please sign in again."


def test_a_cookie_that_does_not_verify_counts_as_ended(app, staff):
    browser = _browser(app)
    browser.set_cookie("session", "forged-or-from-another-key")
    assert _arrival(browser, "/tickets/")[1] == \
        "Your session has ended: sign in again to see that page."


def test_signing_out_is_not_an_ended_session(app, staff, web_login):
    browser = web_login(_browser(app), staff)
    form = browser.get("/tickets/").forms[0]
    assert form.action.endswith("/logout")
    form.submit(status=303)
    assert _arrival(browser, "/tickets/")[1] == "Sign in to see that page."


def test_a_wrong_password_shows_the_error_not_the_notice(app, staff):
    browser = _browser(app)
    page = browser.get("/tickets/", status=303).follow()
    form = page.forms["login-form"]
    form["username"], form["password"] = staff.username, "wrong password"
    refused = form.submit(status=401)
    assert refused.html.find(id="login-notice") is None
    assert refused.html.find(id="login-error") is not None
    assert refused.forms["login-form"]["next"].value == "/tickets/"


# --- recovery codes: copy and download in the browser -------------------------------------

def test_recovery_codes_have_copy_and_download_buttons(app, staff, web_login):
    browser = web_login(_browser(app), staff)
    shown = browser.get("/account/").forms["recovery-codes-form"].submit(status=200)
    codes = [code.get_text() for code in shown.html.select("#recovery-codes [data-copy-item]")]
    assert len(codes) == 10
    copy, download = shown.html.find(id="recovery-copy"), shown.html.find(id="recovery-download")
    for button in (copy, download):
        assert button.name == "button" and button["type"] == "button"
        assert button["data-status"] == "#recovery-status"
    assert copy["data-copy-from"] == download["data-download-from"] == "#recovery-codes"
    assert download["data-download-name"] == "logs-collector-recovery-codes-staff.txt"
    assert "recovery codes of staff" in download["data-download-heading"]
    assert shown.html.find(id="recovery-status")["aria-live"] == "polite"
    assert any(tag.get("src", "").split("?")[0].endswith("/static/copy.js")
               for tag in shown.html.find_all("script"))
    script = browser.get("/static/copy.js").text
    assert "new Blob(" in script and "navigator.clipboard" in script


@pytest.mark.parametrize("username, name", [
    ("staff", "logs-collector-recovery-codes-staff.txt"),
    ("Jean Dupont", "logs-collector-recovery-codes-Jean_Dupont.txt"),
    ("../../etc/passwd", "logs-collector-recovery-codes-_.._etc_passwd.txt"),
    ('a"b<c>', "logs-collector-recovery-codes-a_b_c_.txt"),
    ("...", "logs-collector-recovery-codes-user.txt"),
    ("ŝtefan", "logs-collector-recovery-codes-_tefan.txt"),
])
def test_the_file_name_keeps_only_safe_characters(username, name):
    assert views.recovery_file_name(username) == name


def test_account_tables_stack_with_a_label_on_every_cell(app, admin, staff, web_login):
    # ``staff`` has a personal token (its bearer headers): the user page lists it.
    admins = web_login(_browser(app), admin)
    for path, table_id in (("/admin/users/", "user-list"),
                           (f"/admin/users/{staff.id}/", "user-token-list")):
        table = admins.get(path).html.find(id=table_id)
        assert "stack-sm" in table["class"], path
        rows = table.select("tbody tr")
        assert rows, path
        for row in rows:
            labels = [td.get("data-label") for td in row.find_all("td")]
            # The last cell of a token's row is its Revoke button: no label needed.
            assert all(labels[:-1] if table_id == "user-token-list" else labels), path
    form = admins.get("/account/").forms["token-form"]
    form["name"] = "cli"
    made = form.submit(status=200)
    assert made.html.find(id="new-token-copy")["data-copy-from"] == "#new-token-secret"
    table = made.html.find(id="token-list")
    assert "stack-sm" in table["class"]
    assert [td.get("data-label") for td in table.select_one("tbody tr").find_all("td")] == [
        "Name", "Created", "Expires", "Last used", None]
