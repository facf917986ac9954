"""``next=`` after sign-in never leaves the site: every way of spelling another host (or a
script URL) lands on a local page, through the real sign-in pages (password, then TOTP or
enrolment), and a legitimate local ``next=`` still works."""

import urllib.parse

import pyotp
import pytest

from collector.accounts import views

# Spellings browsers (or careless code) read as another site or as script.
HOSTILE = [
    "//evil.example/",
    "///evil.example/",
    "https://evil.example/",
    "http:evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "\\/evil.example",
    "%2F%2Fevil.example",
    "/%2F%2Fevil.example",
    "/%5Cevil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "/\r\nLocation: https://evil.example/",
    "/\x00/evil.example",
    " //evil.example/",
    "/ /evil.example",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(document.domain)",
    "data:text/html,<script>alert(1)</script>",
    "/\u3002evil.example",
    "/\uff0f/evil.example",
    "evil.example",
    "@evil.example",
    "/" + "a" * 5000,
]
# One of each family, for the other ways in (the parser is the same ``safe_next``).
SOME = ["//evil.example/", "https://evil.example/", "/\\evil.example", "/%2F%2Fevil.example",
        "/\t/evil.example", "javascript:alert(1)"]


def _local(location):
    """The redirect's target, checked to be on this site; returns its path + query."""
    parts = urllib.parse.urlsplit(location)
    assert (parts.scheme, parts.netloc) == ("http", "localhost"), location
    assert not parts.path.startswith("//") and "\\" not in location, location
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _sign_in(testapp, factory, user, next_value):
    page = testapp.get("/login", params={"next": next_value})
    form = page.forms["login-form"]
    # What the page put back in the form is already the safe value.
    assert _local("http://localhost" + form["next"].value)
    form["username"], form["password"] = user.username, user.password
    res = form.submit(status=303)
    assert res.location == "http://localhost/verify"
    form = testapp.get("/verify").forms["verify-form"]
    form["code"] = factory.otp(user)
    return form.submit(status=303)


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_next_lands_on_the_ticket_list(testapp, staff, factory, value):
    res = _sign_in(testapp, factory, staff, value)
    assert _local(res.location) == "/tickets/"
    assert "evil" not in res.headers["Location"]


@pytest.mark.parametrize("value", SOME)
def test_hostile_next_posted_directly_is_not_followed(testapp, staff, factory, value):
    # A forged form (its own hidden ``next``), not the one our page rendered.
    form = testapp.get("/login").forms["login-form"]
    res = testapp.post("/login", {"csrf_token": form["csrf_token"].value, "next": value,
                                  "username": staff.username, "password": staff.password},
                       status=303)
    form = res.follow().forms["verify-form"]
    form["code"] = factory.otp(staff)
    assert _local(form.submit(status=303).location) == "/tickets/"


@pytest.mark.parametrize("value", SOME)
def test_hostile_next_when_already_signed_in(testapp, staff, web_login, value):
    web_login(testapp, staff)
    res = testapp.get("/login", params={"next": value}, status=303)
    assert _local(res.location) == "/tickets/"


@pytest.mark.parametrize("value", [
    "/platforms/vm6/",
    "/platforms/vm6/tickets/1234/?tab=archives",
    "/platforms/vm6/tickets/1234/archives/7/files/view/var/log/app.log?line=2",
    "/account/",
])
def test_local_next_is_followed(testapp, staff, factory, value):
    res = _sign_in(testapp, factory, staff, value)
    assert _local(res.location) == value


def test_next_survives_enrolment(testapp, factory):
    """A user without two-factor yet goes password → enrolment → recovery codes → next."""
    user = factory.user("newbie", totp=False)
    page = testapp.get("/login", params={"next": "//evil.example/"})
    form = page.forms["login-form"]
    form["username"], form["password"] = user.username, user.password
    assert form.submit(status=303).location == "http://localhost/enrol"
    page = testapp.get("/enrol")
    secret = page.html.find(id="totp-secret").get_text(strip=True).replace(" ", "")
    form = page.forms["enrol-form"]
    form["code"] = pyotp.TOTP(secret).now()
    page = form.submit(status=200)
    link = page.html.find(id="recovery-continue")["href"]
    assert _local(link) == "/tickets/"


def test_redirect_to_sign_in_keeps_the_page_and_comes_back(testapp, staff, factory):
    """The forbidden view sends a signed-out visitor to /login?next=<the page>, which works."""
    res = testapp.get("/account/?x=1", status=303)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(res.location).query)
    assert query["next"] == ["/account/?x=1"]
    res = _sign_in(testapp, factory, staff, query["next"][0])
    assert _local(res.location) == "/account/?x=1"


@pytest.mark.parametrize("value", HOSTILE + [None, "", 42])
def test_safe_next_refuses_every_hostile_spelling(value):
    assert views.safe_next(value) == views.DEFAULT_NEXT
