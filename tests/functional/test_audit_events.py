"""A row in the audit log for every kind of event, through the real WSGI stack."""

import base64
import datetime as dt
import hashlib
import re

import pyotp
import pytest
import webtest
from sqlalchemy import select

from collector.audit.models import AuditEvent
from collector.tickets.models import Ticket

UA = {"User-Agent": "audit-test/1.0"}


def _events(dbsession, action=None, **where):
    dbsession.expire_all()
    query = select(AuditEvent).order_by(AuditEvent.id)
    if action:
        query = query.where(AuditEvent.action == action)
    for key, value in where.items():
        query = query.where(getattr(AuditEvent, key) == value)
    return dbsession.scalars(query).all()


def _one(dbsession, action, **where):
    events = _events(dbsession, action, **where)
    assert len(events) == 1, [(e.action, e.outcome, e.reason) for e in _events(dbsession)]
    return events[0]


def _csrf(testapp, path):
    page = testapp.get(path)
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


# --- sign-in, 2FA, tokens, users -----------------------------------------------------------

def test_web_sign_in_success_and_failure(testapp, staff, web_login, dbsession):
    form = testapp.get("/login").forms["login-form"]
    form["username"], form["password"] = "staff", "wrong password!"
    form.submit(status=401, headers=UA)
    failure = _one(dbsession, "signin.failure")
    assert (failure.outcome, failure.client_address, failure.user_agent,
            failure.detail["username"]) == ("refused", "127.0.0.1", "audit-test/1.0", "staff")
    web_login(testapp, staff)
    success = _one(dbsession, "signin.success")
    assert (success.actor_name, success.actor_id, success.outcome, success.detail) == (
        "staff", staff.id, "ok", {"via": "web"})


def test_api_sign_in_success_and_failure(testapp, factory, dbsession):
    user = factory.user("bot")
    testapp.post_json("/api/v1/auth/token/", {"username": "bot", "password": "nope nope",
                                              "otp": "000000"}, status=401)
    assert _one(dbsession, "signin.failure").outcome == "refused"
    testapp.post_json("/api/v1/auth/token/", {"username": "bot", "password": user.password,
                                              "otp": factory.otp(user)}, status=200)
    assert _one(dbsession, "signin.success").detail == {"via": "api"}


def test_two_factor_reset_and_enrolment(testapp, admin, factory, web_login, dbsession):
    user = factory.user("newbie")
    web_login(testapp, admin)
    testapp.post(f"/admin/users/{user.id}/reset-2fa",
                 {"csrf_token": _csrf(testapp, f"/admin/users/{user.id}/")}, status=303)
    reset = _one(dbsession, "2fa.reset")
    assert (reset.actor_name, reset.detail["user"]) == ("root", "newbie")

    browser = webtest.TestApp(testapp.app, extra_environ={"HTTP_HOST": "localhost",
                                                          "REMOTE_ADDR": "192.0.2.5"})
    form = browser.get("/login").forms["login-form"]
    form["username"], form["password"] = "newbie", user.password
    form.submit(status=303)
    page = browser.get("/enrol")
    secret = page.html.select_one("#totp-secret").text.strip()
    form = page.forms["enrol-form"]
    form["code"] = pyotp.TOTP(secret).now()
    form.submit(status=200)
    enrol = _one(dbsession, "2fa.enrol")
    assert (enrol.actor_name, enrol.client_address) == ("newbie", "192.0.2.5")


def test_api_token_create_and_revoke(testapp, staff, dbsession):
    res = testapp.post_json("/api/v1/auth/tokens/", {"name": "help desk"},
                            headers=staff.headers, status=201)
    created = _one(dbsession, "token.create", actor_name="staff",
                   client_address="127.0.0.1")
    assert created.detail["name"] == "help desk"
    testapp.delete(f"/api/v1/auth/tokens/{res.json['id']}/", headers=staff.headers,
                   status=204)
    revoked = _one(dbsession, "token.revoke")
    assert (revoked.actor_name, revoked.detail["token_id"]) == ("staff", res.json["id"])


def test_user_changes(testapp, admin, web_login, dbsession):
    web_login(testapp, admin)
    testapp.post("/admin/users/", {"csrf_token": _csrf(testapp, "/admin/users/"),
                                   "username": "carol", "password": "a long password 1"},
                 status=303)
    created = _one(dbsession, "user.create", actor_name="root")
    assert created.detail["user"] == "carol"
    user_id = created.detail["user_id"]
    page = f"/admin/users/{user_id}/"
    testapp.post(page + "active", {"csrf_token": _csrf(testapp, page), "active": "0"},
                 status=303)
    testapp.post(page + "admin", {"csrf_token": _csrf(testapp, page), "is_admin": "1"},
                 status=303)
    testapp.post(page + "password", {"csrf_token": _csrf(testapp, page),
                                     "password": "another long password"}, status=303)
    assert _one(dbsession, "user.disable").detail["user"] == "carol"
    assert _one(dbsession, "user.admin").detail["admin"] is True
    assert _one(dbsession, "user.password").actor_name == "root"


# --- platforms and tickets -----------------------------------------------------------------

def test_platform_create_edit_delete(testapp, admin, dbsession):
    testapp.post_json("/api/v1/platforms/", {"name": "vm7", "pretty_name": "VM 7"},
                      headers=admin.headers, status=201)
    testapp.patch_json("/api/v1/platforms/vm7/", {"pretty_name": "VM seven"},
                       headers=admin.headers, status=200)
    testapp.delete("/api/v1/platforms/vm7/", headers=admin.headers, status=204)
    assert _one(dbsession, "platform.create").actor_name == "root"
    assert _one(dbsession, "platform.edit").detail == {"platform": "vm7",
                                                       "fields": ["pretty_name"]}
    assert _one(dbsession, "platform.delete").detail == {"platform": "vm7"}


def test_ticket_create_edit_resolve_rotate_delete(testapp, staff, factory, dbsession):
    factory.platform("vm6")
    res = testapp.post_json("/api/v1/tickets/", {"number": 555, "platform": "vm6"},
                            headers=staff.headers, status=201)
    ticket_id, old_token = res.json["id"], res.json["token"]
    testapp.patch_json("/api/v1/tickets/555/", {"note": "customer X"},
                       headers=staff.headers, status=200)
    testapp.patch_json("/api/v1/tickets/555/", {"resolved": True},
                       headers=staff.headers, status=200)
    testapp.post("/api/v1/tickets/555/token/", headers=staff.headers, status=200)
    testapp.delete("/api/v1/tickets/555/", headers=staff.headers, status=204)
    for action in ("ticket.create", "ticket.edit", "ticket.resolve", "ticket.token_rotate",
                   "ticket.delete"):
        event = _one(dbsession, action)
        assert (event.ticket_id, event.ticket_number, event.actor_name) == (
            ticket_id, 555, "staff"), action
    assert _one(dbsession, "ticket.edit").detail == {"fields": ["note"]}
    assert _one(dbsession, "ticket.token_rotate").detail == {"token": old_token[:6] + "…"}


# --- uploads, downloads, deletion -----------------------------------------------------------

@pytest.fixture
def ticket(factory):
    return factory.ticket(factory.platform("vm6"), 77, attempts=3)


def _attempts(dbsession, ticket):
    dbsession.expire_all()
    return dbsession.get(Ticket, ticket.id).attempts


def test_simple_upload_download_and_delete(testapp, ticket, admin, dbsession):
    body = b"log line\n" * 1000
    res = testapp.post("/api/v1/archives/", upload_files=[("file", "app.log", body)],
                       headers={"Upload-Token": ticket.token, **UA}, status=201)
    archive_id = res.json["id"]
    finished = _one(dbsession, "upload.finished")
    assert (finished.ticket_number, finished.archive_id, finished.client_address,
            finished.user_agent, finished.outcome, finished.actor_id) == (
        77, archive_id, "127.0.0.1", "audit-test/1.0", "ok", None)
    assert finished.detail["size"] == len(body)
    assert finished.detail["sha256"] == hashlib.sha256(body).hexdigest()

    testapp.get(f"/api/v1/archives/{archive_id}/download", headers=admin.headers, status=200)
    testapp.head(f"/api/v1/archives/{archive_id}/download", headers=admin.headers, status=200)
    download = _one(dbsession, "archive.download")
    assert (download.actor_name, download.archive_id, download.ticket_number) == (
        "root", archive_id, 77)
    testapp.delete(f"/api/v1/archives/{archive_id}/", headers=admin.headers, status=204)
    deleted = _one(dbsession, "archive.delete")
    assert (deleted.archive_id, deleted.detail["sha256"]) == (
        archive_id, hashlib.sha256(body).hexdigest())


@pytest.mark.sqlite  # SQLite's write lock: the event is written after the rollback
@pytest.mark.commits
def test_refused_upload_survives_the_rollback(testapp, app, ticket, dbsession, data_dir):
    app.registry.settings["upload.max_size"] = 1000
    testapp.post("/api/v1/archives/", b"x" * 5000,
                 headers={"Upload-Token": ticket.token, "Content-Type": "application/gzip",
                          **UA}, status=413)
    event = _one(dbsession, "upload.refused")
    assert (event.outcome, event.reason, event.ticket_id, event.ticket_number,
            event.client_address, event.user_agent) == (
        "refused", "too_large", ticket.id, 77, "127.0.0.1", "audit-test/1.0")
    assert event.detail["size"] == 5000 and event.detail["status"] == 413
    assert event.detail["token"] == ticket.token[:6] + "…"
    # The request itself left nothing: no archive, no attempt spent.
    assert _events(dbsession, "upload.finished") == []
    assert _attempts(dbsession, ticket) == 3


def _refuse(testapp, token, status):
    testapp.post("/api/v1/archives/", b"data", headers={
        "Upload-Token": token, "Content-Type": "application/octet-stream"}, status=status)


def test_refusal_reasons(testapp, app, factory, ticket, dbsession):
    _refuse(testapp, "not-a-token", 403)
    resolved = factory.ticket(factory.platform("vm8"), 78, attempts=3)
    resolved.resolved = True
    expired = factory.ticket(factory.session.get(type(resolved.platform), resolved.platform_id),
                             79, expires_at=dt.datetime.now(dt.UTC)
                             - dt.timedelta(days=1))
    empty = factory.ticket(resolved.platform, 80, attempts=0)
    factory.session.commit()
    _refuse(testapp, resolved.token, 423)
    _refuse(testapp, expired.token, 423)
    _refuse(testapp, empty.token, 423)
    app.registry.settings["storage.reserve"] = 1 << 62
    _refuse(testapp, ticket.token, 507)
    reasons = {(e.ticket_number, e.reason) for e in _events(dbsession, "upload.refused")
               + _events(dbsession, "upload.failed")}
    assert reasons == {(None, "token_unknown"), (78, "ticket_resolved"), (79, "token_expired"),
                       (80, "no_attempts"), (77, "no_space")}


def _b64(text):
    return base64.b64encode(text.encode()).decode()


def test_tus_started_finished_terminated_and_refused_chunk(testapp, ticket, dbsession):
    tus = {"Tus-Resumable": "1.0.0", "Upload-Token": ticket.token}
    chunk = {**tus, "Content-Type": "application/offset+octet-stream"}
    res = testapp.post("/api/v1/uploads/", headers={
        **tus, "Upload-Length": "10", "Upload-Metadata": f"filename {_b64('a.log')}"},
        status=201)
    url = res.headers["Location"]
    started = _one(dbsession, "upload.started")
    assert (started.ticket_number, started.detail["size"], started.detail["name"]) == (
        77, 10, "a.log")
    # A chunk at the wrong offset is refused, and recorded with its upload.
    testapp.patch(url, b"12345", headers={**chunk, "Upload-Offset": "3"}, status=409)
    refused = _one(dbsession, "upload.refused")
    assert (refused.reason, refused.ticket_number, refused.detail["upload"]) == (
        "conflict", 77, started.detail["upload"])
    testapp.patch(url, b"0123456789", headers={**chunk, "Upload-Offset": "0"}, status=204)
    finished = _one(dbsession, "upload.finished")
    assert finished.detail["sha256"] == hashlib.sha256(b"0123456789").hexdigest()
    assert finished.detail["protocol"] == "tus"

    res = testapp.post("/api/v1/uploads/", headers={**tus, "Upload-Length": "10"},
                       status=201)
    testapp.delete(res.headers["Location"], headers=tus, status=204)
    terminated = _one(dbsession, "upload.terminated")
    assert (terminated.ticket_number, terminated.detail["received"]) == (77, 0)


def test_expired_tus_upload_is_recorded_as_client_gone(testapp, app, ticket, dbsession):
    from collector.archives import maintenance

    tus = {"Tus-Resumable": "1.0.0", "Upload-Token": ticket.token}
    testapp.post("/api/v1/uploads/", headers={**tus, "Upload-Length": "10"}, status=201)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=400)
    removed = maintenance.purge_expired_uploads(dbsession, app.registry["upload_stores"],
                                                now=later)
    assert len(removed) == 1
    gone = _one(dbsession, "upload.failed")
    assert (gone.outcome, gone.reason, gone.ticket_number) == ("failed", "client_gone", 77)


@pytest.mark.commits  # the member index is built by a thread of the app's own
def test_looking_inside_an_archive_is_recorded(testapp, ticket, staff, admin, dbsession):
    import sample_archives as samples

    from collector.archives.inspect import store

    res = testapp.post("/api/v1/archives/", upload_files=[
        ("file", "logs.tar.gz", samples.tar({"app.log": b"one\ntwo refused\n"}, "gz",
                                            links=False))],
        headers={"Upload-Token": ticket.token}, status=201)
    archive = f"/api/v1/archives/{res.json['id']}/"
    if testapp.get(archive + "members/", headers=staff.headers,
                   status=(200, 503)).status_int == 503:
        store.wait_for_builders()
    testapp.get(archive + "members/app.log", headers=staff.headers, status=200)
    testapp.get(archive + "lines/app.log?count=1", headers=staff.headers, status=200)
    testapp.get(archive + "search?q=refused", headers=staff.headers, status=200)
    testapp.get("/api/v1/tickets/77/search?q=refused", headers=staff.headers, status=200)
    member = _one(dbsession, "archive.download_member")
    assert (member.actor_name, member.archive_id, member.detail["path"]) == (
        "staff", res.json["id"], "app.log")
    assert _one(dbsession, "archive.view").detail == {"path": "app.log", "start": 1}
    assert _one(dbsession, "archive.search").detail == {"q": "refused", "regex": False}
    assert _one(dbsession, "ticket.search").ticket_number == 77
