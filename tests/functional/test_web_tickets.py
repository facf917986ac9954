"""The ticket and archive pages of the staff web UI, through the real WSGI stack.

Callers: anonymous, staff without two-factor (a bearer token minted without MFA), staff
with it, an admin, and a session signed in through the real /login + /verify pages.
"""

import datetime as dt
import os
import re
from pathlib import Path

import pytest
import webtest
from sqlalchemy import func, select

from collector.archives.models import Archive
from collector.tickets.models import Ticket

ENV = {"HTTP_HOST": "localhost", "REMOTE_ADDR": "127.0.0.1"}
UPLOADER = Path(__file__).resolve().parents[2] / "scripts" / "uploader.sh"


def client(app, headers=None):
    """A browser of its own (cookies, CSRF) that sends ``headers``' bearer token."""
    environ = dict(ENV)
    if headers:
        environ["HTTP_AUTHORIZATION"] = headers["Authorization"]
    return webtest.TestApp(app, extra_environ=environ)


def upload(testapp, ticket, body, name="logs.tar.gz"):
    return testapp.post("/api/v1/archives/", upload_files=[("file", name, body)],
                        headers={"Upload-Token": ticket.token}, status=201).json


def stored(dbsession, model, **where):
    dbsession.expire_all()
    query = select(func.count()).select_from(model)
    for key, value in where.items():
        query = query.where(getattr(model, key) == value)
    return dbsession.scalar(query)


def reload(dbsession, row):
    dbsession.expire_all()
    return dbsession.get(type(row), row.id)


def archive_path(data_dir, dbsession, archive_id):
    key = dbsession.get(Archive, archive_id).storage_key
    return Path(data_dir) / "archives" / key[:2] / key


@pytest.fixture
def people(app, factory, staff, admin):
    """Clients by role; the staff user behind them is ``staff``."""
    return {
        "anonymous": client(app),
        "staff-no-mfa": client(app, factory.token(staff, mfa=False)),
        "staff": client(app, staff.headers),
        "admin": client(app, admin.headers),
        "admin-no-mfa": client(app, factory.token(admin, mfa=False)),
    }


@pytest.fixture
def ticket(factory, staff):
    return factory.ticket(factory.platform("vm6"), 4242, user=staff, note="disk full")


def ticket_url(ticket, platform="vm6"):
    return f"/platforms/{platform}/tickets/{ticket.number}/"


# --- who may see what --------------------------------------------------------------------

PAGES = ["/tickets/", "/tickets/new", "/platforms/vm6/", "/tickets/4242",
         "/platforms/vm6/tickets/4242/", "/platforms/vm6/tickets/4242/edit",
         "/platforms/vm6/tickets/4242/delete"]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_by_role(people, ticket, path):
    response = people["anonymous"].get(path, status=303)
    assert response.headers["Location"].startswith("http://localhost/login?next=")
    for role in ("staff-no-mfa", "staff", "admin", "admin-no-mfa"):
        page = people[role].get(path, status=200)
        assert page.content_type == "text/html"
        assert re.search(r"<title>[^<]+ · Logs Collector</title>", page.text)
        # CSP: nothing inline
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page.text)
        assert " style=" not in page.text and "<style" not in page.text


def test_download_needs_two_factor(people, ticket, testapp):
    body = os.urandom(5000)
    archive = upload(testapp, ticket, body)
    url = f"{ticket_url(ticket)}archives/{archive['id']}/download"
    assert people["anonymous"].get(url, status=303).headers["Location"].startswith(
        "http://localhost/login?next=")
    for role in ("staff-no-mfa", "admin-no-mfa"):
        refused = people[role].get(url, status=403)
        assert "two-factor" in refused.text and refused.content_type == "text/html"
        page = people[role].get(ticket_url(ticket))
        assert f'id="download-{archive["id"]}"' not in page.text
        assert page.html.find(id="download-needs-mfa") is not None
    for role in ("staff", "admin"):
        assert people[role].get(url).body == body
        page = people[role].get(ticket_url(ticket))
        assert page.html.find(id=f"download-{archive['id']}")["href"] == f"http://localhost{url}"


def test_restricted_platform_is_hidden_from_non_members(app, factory, staff, admin):
    member = factory.user("member")
    secret = factory.platform("secret", restricted=True, members=[member])
    hidden = factory.ticket(secret, 777)
    factory.ticket(factory.platform("open"), 778)
    archive = upload(client(app), hidden, b"secret logs")
    outsider = client(app, staff.headers)

    listing = outsider.get("/tickets/")
    assert listing.html.find(id="ticket-777") is None
    assert listing.html.find(id="ticket-778") is not None
    assert "secret" not in [o["value"] for o in listing.html.select("#search-platform option")]
    assert outsider.get("/tickets/?q=777").html.find(id="ticket-777") is None
    assert outsider.get("/tickets/?platform=secret").html.find(id="tickets") is None
    for path in ("/platforms/secret/tickets/777/", "/tickets/777", "/platforms/secret/",
                 "/platforms/secret/tickets/777/edit",
                 f"/platforms/secret/tickets/777/archives/{archive['id']}/download",
                 f"/archives/{archive['id']}/download"):
        assert "no page at this address" in outsider.get(path, status=404).text
    assert "secret" not in outsider.get("/tickets/new").text

    for user in (member, admin):
        browser = client(app, factory.token(user))
        assert browser.get("/tickets/").html.find(id="ticket-777") is not None
        assert browser.get("/platforms/secret/tickets/777/").html.find(id="ticket-token")
        assert browser.get(f"/archives/{archive['id']}/download").body == b"secret logs"


def test_ticket_shortcut_is_the_canonical_page(people, ticket):
    page = people["staff"].get("/tickets/4242")
    assert page.html.find(id="edit-ticket")["href"] == (
        "http://localhost/platforms/vm6/tickets/4242/edit")
    people["staff"].get("/tickets/999999", status=404)
    people["staff"].get("/platforms/other/tickets/4242/", status=404)
    people["staff"].get("/platforms/vm6/tickets/4242/nothing-here", status=404)


# --- lists: search, filters, pagination --------------------------------------------------

def numbers_on(page):
    return [int(row["id"].removeprefix("ticket-")) for row in page.html.select("#tickets tbody tr")]


def test_search_by_number_comma_list_and_note(people, factory, staff):
    vm6 = factory.platform("vm6")
    for number in (100, 101, 102, 1100):
        factory.ticket(vm6, number, note=f"note of {number}")
    browser = people["staff"]
    assert numbers_on(browser.get("/tickets/?q=101")) == [101]
    assert sorted(numbers_on(browser.get("/tickets/?q=100,+102"))) == [100, 102]
    assert sorted(numbers_on(browser.get("/tickets/?q=100 1100"))) == [100, 1100]
    # Not a list of numbers: searched in numbers and notes.
    assert numbers_on(browser.get("/tickets/?q=of+1100")) == [1100]
    assert sorted(numbers_on(browser.get("/tickets/?q=10x"))) == []
    empty = browser.get("/tickets/?q=555")
    assert empty.html.find(id="no-tickets").text.strip() == "No ticket matches."
    # A number too big for the column is a search, not a database error.
    assert numbers_on(browser.get("/tickets/?q=" + "9" * 30)) == []
    form = browser.get("/tickets/").forms["ticket-search"]
    form["q"] = "102"
    assert numbers_on(form.submit()) == [102]


def test_filters_platform_resolved_and_mine(people, factory, staff, admin):
    vm6, esxi = factory.platform("vm6"), factory.platform("esxi")
    factory.ticket(vm6, 1, user=staff)
    factory.ticket(vm6, 2, user=admin)
    factory.ticket(esxi, 3, user=staff)
    done = factory.ticket(esxi, 4, user=admin)
    done.resolved = True
    factory.session.commit()
    browser = people["staff"]
    assert numbers_on(browser.get("/tickets/")) == [4, 3, 2, 1]  # newest first
    assert numbers_on(browser.get("/tickets/?platform=esxi")) == [4, 3]
    assert numbers_on(browser.get("/tickets/?resolved=true")) == [4]
    assert numbers_on(browser.get("/tickets/?resolved=false")) == [3, 2, 1]
    assert numbers_on(browser.get("/tickets/?mine=1")) == [3, 1]
    assert numbers_on(browser.get("/tickets/?mine=1&platform=vm6&resolved=false")) == [1]
    assert numbers_on(browser.get("/tickets/?resolved=maybe")) == [4, 3, 2, 1]
    # the per-platform list is the same page, for that platform only
    page = browser.get("/platforms/esxi/?resolved=false")
    assert numbers_on(page) == [3]
    assert page.html.find(id="search-platform") is None
    assert "ESXI" in page.html.title.text
    state = browser.get("/tickets/").html.select_one("#ticket-4 .badge")
    assert state.text == "resolved"


def test_states_are_shown_plainly(people, factory):
    vm6 = factory.platform("vm6")
    factory.ticket(vm6, 11)
    factory.ticket(vm6, 12, attempts=0)
    factory.ticket(vm6, 13, expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
    page = people["staff"].get("/tickets/")
    states = {n: page.html.select_one(f"#ticket-{n} .badge").text for n in (11, 12, 13)}
    assert states == {11: "accepting uploads", 12: "no attempts left", 13: "expired"}
    used_up = people["staff"].get("/tickets/12")
    assert "(used up)" in used_up.html.find(id="attempts-left").text
    assert "(expired)" in people["staff"].get("/tickets/13").html.find(id="expires-at").text


def test_pagination(people, factory):
    vm6 = factory.platform("vm6")
    for number in range(1, 31):
        factory.ticket(vm6, number, note="paged")
    browser = people["staff"]
    first = browser.get("/tickets/?q=paged")
    assert numbers_on(first) == list(range(30, 5, -1))
    assert first.html.find(id="prev-page") is None
    assert "1–25 of 30" in first.html.find(id="ticket-count").text
    second = first.click(linkid="next-page")
    assert numbers_on(second) == [5, 4, 3, 2, 1]
    assert "q=paged" in second.request.url and "page=2" in second.request.url
    assert second.html.find(id="next-page") is None
    assert numbers_on(second.click(linkid="prev-page")) == numbers_on(first)
    beyond = browser.get("/tickets/?page=9")
    assert beyond.html.find(id="no-tickets").text.strip() == "No tickets on this page."
    assert numbers_on(browser.get("/tickets/?page=nonsense")) == numbers_on(first)


# --- create and edit ---------------------------------------------------------------------

def test_create_ticket(people, factory, staff, dbsession):
    factory.platform("vm6")
    factory.platform("esxi")
    browser = people["staff-no-mfa"]
    form = browser.get("/tickets/new?platform=esxi").forms["ticket-form"]
    assert form["platform"].value == "esxi"
    form["number"] = "31337"
    form["attempts"] = "2"
    form["lifetime_days"] = "3"
    form["note"] = "customer X"
    response = form.submit(status=303)
    assert response.headers["Location"] == "http://localhost/platforms/esxi/tickets/31337/"
    page = response.follow()
    assert "Ticket 31337 created." in page.html.select_one(".alert-success").text
    row = dbsession.scalars(select(Ticket).where(Ticket.number == 31337)).one()
    assert (row.attempts, row.note, row.platform.name, row.user_id) == (
        2, "customer X", "esxi", staff.id)
    expected = dt.datetime.now(dt.UTC) + dt.timedelta(days=3)
    assert abs((row.expires_at - expected).total_seconds()) < 60
    assert page.html.find(id="ticket-token").text == row.token


def test_create_ticket_defaults(people, factory, dbsession, app):
    factory.platform("vm6")
    form = people["staff"].get("/tickets/new").forms["ticket-form"]
    form["number"] = "5"
    form["platform"] = "vm6"
    form.submit(status=303)
    row = dbsession.scalars(select(Ticket).where(Ticket.number == 5)).one()
    settings = app.registry.settings
    assert row.attempts == settings["ticket.attempts"]
    expected = dt.datetime.now(dt.UTC) + dt.timedelta(
        days=settings["ticket.lifetime_days"])
    assert abs((row.expires_at - expected).total_seconds()) < 60


@pytest.mark.parametrize("fields, field, message", [
    ({"number": "abc"}, "number", "is not a number"),
    ({"number": ""}, "number", "Required"),
    ({"number": "12.5"}, "number", "is not a number"),
    ({"attempts": "-1"}, "attempts", "less than minimum"),
    ({"lifetime_days": "0"}, "lifetime_days", "less than minimum"),
    ({"platform": ""}, "platform", "Required"),
])
def test_create_ticket_bad_input(people, factory, dbsession, fields, field, message):
    factory.platform("vm6")
    form = people["staff"].get("/tickets/new").forms["ticket-form"]
    form["number"], form["platform"] = "77", "vm6"
    for name, value in fields.items():
        form[name] = value
    page = form.submit(status=400)
    assert message in page.html.find(id=f"error-{field}").text
    assert "is-invalid" in page.html.find(attrs={"name": field})["class"]
    assert page.html.find(id="form-error")
    # the form keeps what was typed
    assert page.forms["ticket-form"]["number"].value == fields.get("number", "77")
    assert stored(dbsession, Ticket) == 0


def test_create_ticket_refusals(people, app, factory, dbsession, ticket):
    factory.platform("secret", restricted=True)
    form = people["staff"].get("/tickets/new").forms["ticket-form"]
    form["number"], form["platform"] = "4242", "vm6"
    page = form.submit(status=400)
    assert "ticket number 4242 is already in use" in page.html.find(id="form-error").text
    # a platform the user may not see: refused, whatever a crafted form says
    form = page.forms["ticket-form"]
    form["number"] = "4243"
    form["platform"].force_value("secret")
    assert "platform secret does not exist" in form.submit(status=400).text
    form["platform"].force_value("nope")
    assert "platform nope does not exist" in form.submit(status=400).text
    assert stored(dbsession, Ticket) == 1


def test_edit_ticket(people, factory, dbsession, ticket):
    factory.platform("esxi")
    before = ticket.expires_at
    form = people["staff-no-mfa"].get(ticket_url(ticket) + "edit").forms["ticket-form"]
    assert (form["number"].value, form["attempts"].value, form["note"].value) == (
        "4242", "5", "disk full")
    form["number"] = "4300"
    form["platform"] = "esxi"
    form["attempts"] = "9"
    form["lifetime_days"] = "30"
    form["note"] = ""
    response = form.submit(status=303)
    assert response.headers["Location"] == "http://localhost/platforms/esxi/tickets/4300/"
    row = reload(dbsession, ticket)
    assert (row.number, row.platform.name, row.attempts, row.note) == (4300, "esxi", 9, "")
    assert row.expires_at - before > dt.timedelta(days=20)
    # an empty lifetime keeps the expiry, empty attempts keep the attempts
    expires = row.expires_at
    form = people["staff"].get("/tickets/4300/edit").forms["ticket-form"]
    form["attempts"] = ""
    form.submit(status=303)
    again = reload(dbsession, ticket)
    assert (again.expires_at, again.attempts) == (expires, 9)


def test_edit_ticket_bad_input_changes_nothing(people, factory, dbsession, ticket):
    factory.ticket(factory.platform("esxi"), 5000)
    url = ticket_url(ticket) + "edit"
    form = people["staff"].get(url).forms["ticket-form"]
    form["note"] = "changed"
    form["attempts"] = "many"
    page = form.submit(status=400)
    assert "is not a number" in page.html.find(id="error-attempts").text
    form = page.forms["ticket-form"]
    form["attempts"] = "3"
    form["number"] = "5000"
    assert "ticket number 5000 is already in use" in form.submit(status=400).text
    row = reload(dbsession, ticket)
    assert (row.number, row.note, row.attempts) == (4242, "disk full", 5)


# --- the ticket page ---------------------------------------------------------------------

def test_ticket_page_tells_the_customer_how_to_upload(people, ticket, testapp):
    archive = upload(testapp, ticket, b"x" * 2048, "app logs.tgz")
    page = people["staff"].get(ticket_url(ticket))
    html = page.html
    token = ticket.token
    assert html.find(id="ticket-token").text == token
    assert html.find(id="copy-token")["data-copy"] == "#ticket-token"
    link = html.find(id="upload-link")
    assert link.text == link["href"] == f"http://localhost/upload#token={token}"
    assert html.find(id="uploader-command").text == (
        "curl -fsSLO http://localhost/uploader.sh && sh uploader.sh -u http://localhost "
        f"-t {token} -f logs.tar.gz")
    assert html.find(id="curl-command").text == (
        f"curl -f -H 'Upload-Token: {token}' -F 'file=@logs.tar.gz' "
        "http://localhost/api/v1/archives/")
    assert html.find(id="attempts-left").text.strip() == "4"
    assert html.find(id="ticket-state").text == "accepting uploads"
    assert html.find(id="ticket-note").text == "disk full"
    row = html.find(id=f"archive-{archive['id']}")
    assert row.select_one(".sha256").text == archive["sha256"]
    assert row.select_one(".md5").text == archive["md5"]
    assert "app logs.tgz" in row.text and "2 KiB" in row.text
    assert html.find(id=f"delete-{archive['id']}")
    assert html.find(id="archives")
    assert 'src="http://localhost/static/tickets.js' in page.text
    people["staff"].get("/static/tickets.js")


@pytest.mark.slow
def test_the_printed_command_uploads(staff, ticket, live_server, tmp_path, dbsession):
    """The page's uploader.sh line, run as printed: fetches the script, uploads, verifies."""
    import subprocess
    import urllib.request

    from bs4 import BeautifulSoup

    request = urllib.request.Request(f"{live_server}{ticket_url(ticket)}",
                                     headers=staff.headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        html = BeautifulSoup(response.read(), "html.parser")
    command = html.find(id="uploader-command").text
    assert command.startswith(f"curl -fsSLO {live_server}/uploader.sh && sh uploader.sh ")
    body = os.urandom(3000)
    (tmp_path / "logs.tar.gz").write_bytes(body)
    result = subprocess.run(["sh", "-c", command], cwd=tmp_path, capture_output=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "uploader.sh").read_bytes() == UPLOADER.read_bytes()
    assert stored(dbsession, Archive, ticket_id=ticket.id, size=len(body)) == 1


def test_uploader_script_is_served_to_anyone(testapp):
    response = testapp.get("/uploader.sh")
    assert response.content_type == "text/x-shellscript"
    assert response.body == UPLOADER.read_bytes()
    assert "-t, --token" in response.text


def test_uploader_script_missing_from_the_installation(testapp, monkeypatch, tmp_path):
    from collector.tickets import views

    monkeypatch.setattr(views, "UPLOADER", tmp_path / "absent.sh")
    page = testapp.get("/uploader.sh", status=404)
    assert "not part of this installation" in page.text


def test_resolve_and_reopen(people, ticket, dbsession, testapp):
    browser = people["staff-no-mfa"]
    form = browser.get(ticket_url(ticket)).forms["resolve-form"]
    assert form["resolved"].checked is False
    form["resolved"] = True
    page = form.submit(status=303).follow()
    assert "resolved" in page.html.select_one(".alert-success").text
    assert page.html.find(id="ticket-state").text == "resolved"
    assert reload(dbsession, ticket).resolved is True
    testapp.post("/api/v1/archives/", upload_files=[("file", "a", b"a")],
                 headers={"Upload-Token": ticket.token}, status=423)
    form = page.forms["resolve-form"]
    assert form["resolved"].checked is True
    form["resolved"] = False
    form.submit(status=303)
    assert reload(dbsession, ticket).resolved is False


def test_rotate_token(people, ticket, dbsession, testapp):
    old = ticket.token
    page = people["staff"].get(ticket_url(ticket))
    assert page.forms["rotate-form"].action.endswith("/rotate")
    assert page.html.find(id="rotate-form")["data-confirm"]
    page = page.forms["rotate-form"].submit(status=303).follow()
    new = reload(dbsession, ticket).token
    assert new != old and page.html.find(id="ticket-token").text == new
    testapp.post("/api/v1/archives/", upload_files=[("file", "a", b"a")],
                 headers={"Upload-Token": old}, status=403)
    upload(testapp, reload(dbsession, ticket), b"b")


def test_delete_ticket_removes_archives_and_files(people, ticket, testapp, dbsession, data_dir):
    first = upload(testapp, ticket, b"one")
    second = upload(testapp, ticket, b"two")
    paths = [archive_path(data_dir, dbsession, a["id"]) for a in (first, second)]
    assert all(p.exists() for p in paths)
    browser = people["staff"]
    confirm = browser.get(ticket_url(ticket) + "delete")
    assert "all its archives" in confirm.html.find(id="confirm-message").text
    page = browser.get(ticket_url(ticket))
    assert page.html.find(id="delete-ticket-form")["data-confirm"].startswith(
        "Delete ticket 4242 and its 2 archive(s)")
    response = page.forms["delete-ticket-form"].submit(status=303)
    assert response.headers["Location"] == "http://localhost/platforms/vm6/"
    assert "Ticket 4242 and its archives deleted." in response.follow().text
    assert stored(dbsession, Ticket) == 0 and stored(dbsession, Archive) == 0
    assert not any(p.exists() for p in paths)
    browser.get("/platforms/vm6/tickets/4242/", status=404)


def test_delete_ticket_keeps_files_when_the_transaction_fails(people, ticket, testapp,
                                                              dbsession, data_dir,
                                                              monkeypatch):
    archive = upload(testapp, ticket, b"kept")
    path = archive_path(data_dir, dbsession, archive["id"])
    page = people["staff"].get(ticket_url(ticket))
    from collector.tickets import services

    real = services.delete_ticket

    def failing(dbsession, storage, ticket):
        real(dbsession, storage, ticket)
        raise RuntimeError("database gone after the delete")

    monkeypatch.setattr(services, "delete_ticket", failing)
    page.forms["delete-ticket-form"].submit(status=500)
    assert stored(dbsession, Archive) == 1 and path.read_bytes() == b"kept"


# --- archives ----------------------------------------------------------------------------

def test_download_from_the_page(people, ticket, testapp):
    body = os.urandom(300_000)
    archive = upload(testapp, ticket, body, "Логи (1).tar.gz")
    browser = people["staff"]
    page = browser.get(ticket_url(ticket))
    response = page.click(linkid=f"download-{archive['id']}")
    assert response.body == body
    assert response.content_type == "application/octet-stream"
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="')
    assert "filename*=UTF-8''%D0%9B%D0%BE%D0%B3%D0%B8%20%281%29.tar.gz" in disposition
    url = f"/archives/{archive['id']}/download"
    part = browser.get(url, headers={"Range": "bytes=100-199"}, status=206)
    assert part.body == body[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(body)}"
    assert browser.get(url, headers={"Range": "bytes=-10"}, status=206).body == body[-10:]
    refused = browser.get(url, headers={"Range": f"bytes={len(body)}-"}, status=416)
    assert refused.content_type == "text/html"
    assert refused.headers["Content-Range"] == f"bytes */{len(body)}"
    head = browser.head(url)
    assert head.headers["Content-Length"] == str(len(body)) and head.body == b""


def test_archive_address_leads_to_its_ticket(people, ticket, testapp):
    archive = upload(testapp, ticket, b"abc")
    response = people["staff"].get(f"/archives/{archive['id']}", status=303)
    assert response.headers["Location"] == (
        f"http://localhost/platforms/vm6/tickets/4242/#archive-{archive['id']}")
    people["staff"].get("/archives/999999", status=404)


def test_delete_archive(people, ticket, testapp, dbsession, data_dir):
    kept = upload(testapp, ticket, b"kept")
    gone = upload(testapp, ticket, b"gone")
    path = archive_path(data_dir, dbsession, gone["id"])
    browser = people["staff-no-mfa"]
    page = browser.get(ticket_url(ticket))
    form = page.forms[f"delete-archive-{gone['id']}"]
    assert "Delete the archive logs.tar.gz?" in page.html.find(
        id=f"delete-archive-{gone['id']}")["data-confirm"]
    response = form.submit(status=303)
    assert response.headers["Location"] == "http://localhost/platforms/vm6/tickets/4242/#archives"
    page = response.follow()
    assert page.html.find(id=f"archive-{gone['id']}") is None
    assert page.html.find(id=f"archive-{kept['id']}") is not None
    assert not path.exists()
    assert stored(dbsession, Archive) == 1
    people["anonymous"].post(f"/archives/{kept['id']}/delete", status=403)
    # the confirmation page, for browsers without JavaScript
    confirm = browser.get(f"/archives/{kept['id']}/delete")
    assert confirm.html.select_one("#archive-details .sha256").text == kept["sha256"]
    confirm.forms["confirm-form"].submit(status=303)
    assert stored(dbsession, Archive) == 0


# --- CSRF --------------------------------------------------------------------------------

@pytest.mark.parametrize("action", ["resolve", "rotate", "delete", "edit"])
def test_posts_without_csrf_token_are_refused(people, ticket, dbsession, action):
    browser = people["staff"]
    browser.get(ticket_url(ticket))  # the session (and its CSRF token) exists
    token = ticket.token
    data = {"resolved": "1", "number": "1", "platform": "vm6"}
    refused = browser.post(ticket_url(ticket) + action, data, status=400)
    assert "form has expired" in refused.text
    browser.post(ticket_url(ticket) + action, {**data, "csrf_token": "wrong"}, status=400)
    row = reload(dbsession, ticket)
    assert (row.resolved, row.token, row.number) == (False, token, 4242)


def test_create_without_csrf_token_is_refused(people, factory, dbsession):
    factory.platform("vm6")
    people["staff"].get("/tickets/new")
    people["staff"].post("/tickets/new", {"number": "9", "platform": "vm6"}, status=400)
    assert stored(dbsession, Ticket) == 0


def test_archive_delete_without_csrf_token_is_refused(people, ticket, testapp, dbsession):
    archive = upload(testapp, ticket, b"abc")
    people["staff"].get(ticket_url(ticket))
    people["staff"].post(f"/archives/{archive['id']}/delete", status=400)
    assert stored(dbsession, Archive) == 1


# --- signed in through the real pages ----------------------------------------------------

def test_signed_in_session_creates_and_downloads(app, factory, web_login, dbsession):
    user = factory.user("alice")
    ticket = factory.ticket(factory.platform("vm6"), 8080)
    browser = web_login(client(app), user)
    archive = upload(browser, ticket, b"through the session")
    page = browser.get("/tickets/").click(href="/tickets/8080/")
    assert page.click(linkid=f"download-{archive['id']}").body == b"through the session"
    form = browser.get("/tickets/new").forms["ticket-form"]
    form["number"], form["platform"] = "8081", "vm6"
    form.submit(status=303)
    row = dbsession.scalars(select(Ticket).where(Ticket.number == 8081)).one()
    assert row.user_id == user.id
    assert numbers_on(browser.get("/tickets/?mine=1")) == [8081]


# --- small page details: named fields, hints that lead somewhere --------------------------

def test_no_platform_hint_links_to_the_platforms_page(people):
    for who, says in (("staff", "an administrator creates them on the"),
                      ("admin", "create one on the")):
        hint = people[who].get("/tickets/new").html.find(id="no-platform-hint")
        assert says in hint.get_text(" ", strip=True)
        assert hint.find("a")["href"] == "http://localhost/platforms/"
        assert hint.find("a").get_text() == "Platforms page"


def test_no_platform_hint_is_gone_once_there_is_one(people, factory):
    factory.platform("vm6")
    assert people["admin"].get("/tickets/new").html.find(id="no-platform-hint") is None


def test_legal_hold_reason_has_a_label(people, ticket):
    form = people["admin"].get(ticket_url(ticket)).html.find(id="legal-hold-form")
    field = form.find("input", attrs={"name": "reason"})
    label = form.find("label", attrs={"for": field["id"]})
    assert label.get_text(strip=True) == "Reason for the legal hold (optional)"
