"""The platform pages of the staff web UI: the list with ticket counts, and for admins
creation, settings, restriction to members and deletion, through the real WSGI stack."""

import re

import pytest
import webtest
from sqlalchemy import func, select

from collector.tickets.models import Platform, PlatformMember

ENV = {"HTTP_HOST": "localhost", "REMOTE_ADDR": "127.0.0.1"}


def client(app, headers=None):
    environ = dict(ENV)
    if headers:
        environ["HTTP_AUTHORIZATION"] = headers["Authorization"]
    return webtest.TestApp(app, extra_environ=environ)


def count(dbsession, model):
    dbsession.expire_all()
    return dbsession.scalar(select(func.count()).select_from(model))


def platform_row(dbsession, name):
    dbsession.expire_all()
    return dbsession.scalars(select(Platform).where(Platform.name == name)).one_or_none()


def members_of(dbsession, name):
    from collector.accounts.models import User

    dbsession.expire_all()
    return sorted(dbsession.scalars(
        select(User.username).join(PlatformMember, PlatformMember.user_id == User.id)
        .join(Platform, Platform.id == PlatformMember.platform_id)
        .where(Platform.name == name)).all())


def csrf(page):
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


@pytest.fixture
def people(app, factory, staff, admin):
    return {
        "anonymous": client(app),
        "staff-no-mfa": client(app, factory.token(staff, mfa=False)),
        "staff": client(app, staff.headers),
        "admin-no-mfa": client(app, factory.token(admin, mfa=False)),
        "admin": client(app, admin.headers),
    }


# --- the list ----------------------------------------------------------------------------

def test_list_with_ticket_counts(people, factory):
    vm6, esxi = factory.platform("vm6"), factory.platform("esxi")
    factory.platform("empty")
    for number in (1, 2, 3):
        factory.ticket(vm6, number)
    done = factory.ticket(esxi, 4)
    done.resolved = True
    factory.session.commit()
    page = people["staff-no-mfa"].get("/platforms/")
    assert re.search(r"<title>Platforms · Logs Collector</title>", page.text)
    rows = {row["id"]: (row.select_one(".ticket-count").text, row.select_one(".open-count").text)
            for row in page.html.select("#platforms tbody tr")}
    assert rows == {"platform-vm6": ("3", "3"), "platform-esxi": ("1", "0"),
                    "platform-empty": ("0", "0")}
    link = page.html.select_one("#platform-vm6 a")
    assert link["href"] == "http://localhost/platforms/vm6/"
    # staff do not get the admin forms
    assert "create-platform-form" not in page.forms
    assert page.html.find(id="edit-platform-vm6") is None


def test_restricted_platform_only_for_members_and_admins(app, people, factory, staff, admin):
    member = factory.user("member")
    factory.platform("secret", restricted=True, members=[member])
    factory.platform("open")
    names = {
        who: [r["id"] for r in browser.get("/platforms/").html.select("#platforms tbody tr")]
        for who, browser in (("staff", people["staff"]),
                             ("member", client(app, factory.token(member))),
                             ("admin", people["admin"]))}
    assert names["staff"] == ["platform-open"]
    assert sorted(names["member"]) == sorted(names["admin"]) == [
        "platform-open", "platform-secret"]
    assert "no page at this address" in people["staff"].get("/platforms/secret/",
                                                             status=404).text


def test_pages_by_role(people, factory):
    factory.platform("vm6")
    for path in ("/platforms/", "/platforms/vm6/", "/platforms/vm6/edit",
                 "/platforms/vm6/delete"):
        location = people["anonymous"].get(path, status=303).headers["Location"]
        assert location.startswith("http://localhost/login?next=")
    for role in ("staff-no-mfa", "staff", "admin-no-mfa", "admin"):
        people[role].get("/platforms/")
        people[role].get("/platforms/vm6/")
    for path in ("/platforms/vm6/edit", "/platforms/vm6/delete"):
        assert "permission" in people["staff"].get(path, status=403).text
        assert "two-factor" in people["admin-no-mfa"].get(path, status=403).text
        page = people["admin"].get(path)
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page.text)
        assert " style=" not in page.text
    listing = people["admin"].get("/platforms/")
    assert "create-platform-form" in listing.forms
    assert listing.html.find(id="edit-platform-vm6")["href"] == (
        "http://localhost/platforms/vm6/edit")
    assert people["admin"].get("/platforms/vm6/").html.find(id="platform-settings")
    assert people["staff"].get("/platforms/vm6/").html.find(id="platform-settings") is None
    people["admin"].get("/platforms/nope/", status=404)


# --- create ------------------------------------------------------------------------------

def test_admin_creates_platforms(people, dbsession):
    form = people["admin"].get("/platforms/").forms["create-platform-form"]
    form["name"], form["pretty_name"] = "vm6", "VMmanager 6"
    response = form.submit(status=303)
    assert response.headers["Location"] == "http://localhost/platforms/vm6/"
    assert "Platform vm6 created." in response.follow().text
    row = platform_row(dbsession, "vm6")
    assert (row.pretty_name, row.restricted) == ("VMmanager 6", False)
    # a restricted one goes on to its settings, where members are added
    form = people["admin"].get("/platforms/").forms["create-platform-form"]
    form["name"], form["pretty_name"], form["restricted"] = "dci", "DCI", True
    response = form.submit(status=303)
    assert response.headers["Location"] == "http://localhost/platforms/dci/edit"
    assert platform_row(dbsession, "dci").restricted is True


@pytest.mark.parametrize("name, pretty, field, message", [
    ("Bad Name", "X", "name", "lower-case letters"),
    ("", "X", "name", "Required"),
    ("x" * 21, "X", "name", "lower-case letters"),
    ("ok", "", "pretty_name", "Required"),
    ("ok", "p" * 101, "pretty_name", "Longer than maximum"),
])
def test_create_bad_input(people, dbsession, name, pretty, field, message):
    form = people["admin"].get("/platforms/").forms["create-platform-form"]
    form["name"], form["pretty_name"] = name, pretty
    page = form.submit(status=400)
    assert message in page.html.find(id=f"error-{field}").text
    assert page.html.find(id="create-platform-error")
    assert page.forms["create-platform-form"]["pretty_name"].value == pretty
    assert count(dbsession, Platform) == 0


def test_create_duplicate(people, factory, dbsession):
    factory.platform("vm6")
    form = people["admin"].get("/platforms/").forms["create-platform-form"]
    form["name"], form["pretty_name"] = "vm6", "again"
    page = form.submit(status=400)
    assert "platform vm6 already exists" in page.html.find(id="create-platform-error").text
    assert platform_row(dbsession, "vm6").pretty_name == "VM6"


def test_create_needs_admin_with_two_factor(people, dbsession):
    for role in ("staff", "admin-no-mfa"):
        browser = people[role]
        token = csrf(browser.get("/platforms/"))
        browser.post("/platforms/", {"csrf_token": token, "name": "x", "pretty_name": "X"},
                     status=403)
    people["anonymous"].post("/platforms/", {"name": "x", "pretty_name": "X"}, status=403)
    assert count(dbsession, Platform) == 0


def test_create_without_csrf_token_is_refused(people, dbsession):
    people["admin"].get("/platforms/")
    refused = people["admin"].post("/platforms/", {"name": "x", "pretty_name": "X"},
                                   status=400)
    assert "form has expired" in refused.text
    assert count(dbsession, Platform) == 0


# --- settings and members ----------------------------------------------------------------

def test_rename_and_restrict(people, factory, dbsession):
    factory.platform("vm6")
    page = people["admin"].get("/platforms/vm6/edit")
    assert page.html.find(id="members-unused")
    form = page.forms["platform-form"]
    assert form["pretty_name"].value == "VM6"
    form["pretty_name"] = "VMmanager 6"
    form["restricted"] = True
    page = form.submit(status=303).follow()
    assert "Platform vm6 saved." in page.text
    row = platform_row(dbsession, "vm6")
    assert (row.name, row.pretty_name, row.restricted) == ("vm6", "VMmanager 6", True)
    # now hidden from staff who are not members
    assert people["staff"].get("/platforms/vm6/", status=404)
    form = page.forms["platform-form"]
    form["restricted"] = False
    form.submit(status=303)
    assert platform_row(dbsession, "vm6").restricted is False
    people["staff"].get("/platforms/vm6/")


def test_rename_bad_input(people, factory, dbsession):
    factory.platform("vm6")
    form = people["admin"].get("/platforms/vm6/edit").forms["platform-form"]
    form["pretty_name"] = ""
    form["restricted"] = True
    page = form.submit(status=400)
    assert "Required" in page.html.find(id="error-pretty_name").text
    row = platform_row(dbsession, "vm6")
    assert (row.pretty_name, row.restricted) == ("VM6", False)


def test_members_added_and_removed(app, people, factory, staff, dbsession):
    factory.ticket(factory.platform("secret", restricted=True), 99)
    outsider = people["staff"]
    outsider.get("/tickets/99", status=404)
    form = people["admin"].get("/platforms/secret/edit").forms["add-member-form"]
    form["username"] = "staff"
    page = form.submit(status=303).follow()
    assert "staff is now a member of secret." in page.text
    assert members_of(dbsession, "secret") == ["staff"]
    assert page.html.find(id="member-staff")
    outsider.get("/tickets/99")
    assert "ticket-99" in outsider.get("/tickets/").text
    # adding twice is harmless
    form = page.forms["add-member-form"]
    form["username"] = "staff"
    page = form.submit(status=303).follow()
    assert members_of(dbsession, "secret") == ["staff"]
    page = page.forms["remove-member-staff"].submit(status=303).follow()
    assert "staff is no longer a member of secret." in page.text
    assert members_of(dbsession, "secret") == []
    assert page.html.find(id="no-members")
    outsider.get("/tickets/99", status=404)


@pytest.mark.parametrize("username, message", [
    ("ghost", "there is no user named 'ghost'"), ("", "give the username")])
def test_unknown_member_is_refused(people, factory, dbsession, username, message):
    factory.platform("secret", restricted=True)
    form = people["admin"].get("/platforms/secret/edit").forms["add-member-form"]
    form["username"] = username
    page = form.submit(status=400)
    assert message in page.html.find(id="platform-error").text
    assert members_of(dbsession, "secret") == []


def test_member_changes_need_admin_with_two_factor(people, factory, staff, dbsession):
    factory.platform("secret", restricted=True)
    # A non-member does not even see the platform (404); an admin without two-factor
    # sees it but may not change it (403).
    for role, status in (("staff", 404), ("admin-no-mfa", 403)):
        browser = people[role]
        token = csrf(browser.get("/platforms/"))
        for action in ("add-member", "edit", "delete"):
            browser.post(f"/platforms/secret/{action}",
                         {"csrf_token": token, "username": "staff", "pretty_name": "x"},
                         status=status)
    assert members_of(dbsession, "secret") == []
    assert platform_row(dbsession, "secret").pretty_name == "SECRET"


# --- delete ------------------------------------------------------------------------------

def test_delete_empty_platform(people, factory, dbsession):
    factory.platform("old", restricted=True, members=[factory.user("someone")])
    confirm = people["admin"].get("/platforms/old/delete")
    response = confirm.forms["confirm-form"].submit(status=303)
    assert response.headers["Location"] == "http://localhost/platforms/"
    assert "Platform old deleted." in response.follow().text
    assert platform_row(dbsession, "old") is None
    assert count(dbsession, PlatformMember) == 0


def test_delete_platform_with_tickets_is_refused(people, factory, dbsession):
    factory.ticket(factory.platform("vm6"), 1)
    page = people["admin"].get("/platforms/vm6/edit")
    assert page.html.find(id="delete-platform").has_attr("disabled")
    assert page.html.find(id="delete-platform-form")["data-confirm"]
    refused = page.forms["delete-platform-form"].submit(status=400)
    assert "platform vm6 still has 1 ticket(s)" in refused.html.find(id="platform-error").text
    assert platform_row(dbsession, "vm6") is not None


def test_platform_delete_without_csrf_token_is_refused(people, factory, dbsession):
    factory.platform("vm6")
    people["admin"].get("/platforms/vm6/edit")
    people["admin"].post("/platforms/vm6/delete", status=400)
    assert platform_row(dbsession, "vm6") is not None


# --- signed in through the real pages ----------------------------------------------------

def test_signed_in_admin_manages_platforms(app, factory, web_login, dbsession):
    admin = factory.user("boss", admin=True)
    browser = web_login(client(app), admin)
    form = browser.get("/platforms/").forms["create-platform-form"]
    form["name"], form["pretty_name"], form["restricted"] = "sec", "Secret", True
    page = form.submit(status=303).follow()
    form = page.forms["add-member-form"]
    form["username"] = "boss"
    form.submit(status=303)
    assert members_of(dbsession, "sec") == ["boss"]
