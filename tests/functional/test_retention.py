"""Retention rules with a fake clock, per-platform overrides, legal hold (API, pages,
ticket delete), and `collector purge` applying them."""

import datetime as dt

import pytest
import webtest
from s3server import on_both_storages
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from collector.archives.models import Archive
from collector.archives.storage import LocalArchiveStorage
from collector.audit.models import AuditEvent
from collector.cli import main
from collector.retention import services as retention
from collector.tickets.models import Ticket

NOW = dt.datetime(2027, 3, 1, 9, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


def upload(testapp, ticket, body):
    return testapp.post("/api/v1/archives/", upload_files=[("file", "app.log", body)],
                        headers={"Upload-Token": ticket.token}, status=201).json["id"]


def backdate(engine, archive_id, uploaded, resolved=None, ticket=None):
    with engine.begin() as connection:
        connection.execute(update(Archive).where(Archive.id == archive_id)
                           .values(time_create=uploaded))
        if ticket is not None:
            connection.execute(update(Ticket).where(Ticket.id == ticket.id)
                               .values(resolved=resolved is not None, resolved_at=resolved))


def events(dbsession, action):
    dbsession.expire_all()
    return dbsession.scalars(select(AuditEvent).where(AuditEvent.action == action)
                             .order_by(AuditEvent.id)).all()


@pytest.fixture
def world(testapp, app, engine, factory, admin):
    """Archives of every case, dated against NOW; the server keeps 30 days after
    resolution and 90 days at most."""
    settings = app.registry.settings
    settings["retention.resolved_days"], settings["retention.max_days"] = 30, 90
    vm6, forever = factory.platform("vm6"), factory.platform("keep")
    testapp.patch_json("/api/v1/platforms/keep/", {"retention_resolved_days": 0,
                                                   "retention_max_days": 0},
                       headers=admin.headers, status=200)
    cases = {}
    for name, platform, uploaded, resolved in (
            ("resolved_long_ago", vm6, NOW - 50 * DAY, NOW - 31 * DAY),
            ("resolved_lately", vm6, NOW - 50 * DAY, NOW - 29 * DAY),
            ("open_but_old", vm6, NOW - 91 * DAY, None),
            ("open_and_young", vm6, NOW - 89 * DAY, None),
            ("held", vm6, NOW - 400 * DAY, NOW - 300 * DAY),
            ("kept_by_platform", forever, NOW - 400 * DAY, NOW - 300 * DAY)):
        ticket = factory.ticket(platform)
        archive_id = upload(testapp, ticket, name.encode() * 10)
        backdate(engine, archive_id, uploaded, resolved, ticket)
        cases[name] = (ticket, archive_id)
    testapp.patch_json(f"/api/v1/tickets/{cases['held'][0].number}/", {"legal_hold": True},
                       headers=admin.headers, status=200)
    return cases


def test_rules_with_a_fake_clock(world, app, engine, data_dir, dbsession):
    storage = LocalArchiveStorage(data_dir)
    settings = app.registry.settings
    with Session(engine, expire_on_commit=False) as session:
        listed = retention.apply(session, storage, settings, NOW, dry_run=True)
    assert {(d.archive.id, d.rule) for d in listed} == {
        (world["resolved_long_ago"][1], "resolved"), (world["open_but_old"][1], "max_age")}
    assert len(list(storage.keys())) == 6  # a dry run removes nothing
    # Two days earlier nothing was due yet.
    with Session(engine, expire_on_commit=False) as session:
        assert retention.apply(session, storage, settings, NOW - 2 * DAY, dry_run=True) == []
    with Session(engine, expire_on_commit=False) as session:
        removed = retention.apply(session, storage, settings, NOW)
        lines = [retention.describe(d) for d in removed]
    assert len(removed) == 2 and "after ticket" in " ".join(lines)
    dbsession.expire_all()
    left = set(dbsession.scalars(select(Archive.id)))
    assert left == {world[name][1] for name in ("resolved_lately", "open_and_young", "held",
                                                "kept_by_platform")}
    assert len(list(storage.keys())) == 4
    deleted = events(dbsession, "archive.delete")
    assert {(e.archive_id, e.reason, e.detail["rule"]) for e in deleted} == {
        (world["resolved_long_ago"][1], "retention", "resolved"),
        (world["open_but_old"][1], "retention", "max_age")}
    # A year later only the hold and the platform that keeps forever still protect theirs.
    with Session(engine, expire_on_commit=False) as session:
        later = retention.apply(session, storage, settings, NOW + 365 * DAY)
    assert {d.archive.id for d in later} == {world["resolved_lately"][1],
                                             world["open_and_young"][1]}


def test_lifting_the_hold_makes_its_archives_due(world, testapp, app, engine, admin,
                                                 data_dir, dbsession):
    ticket, archive_id = world["held"]
    testapp.patch_json(f"/api/v1/tickets/{ticket.number}/", {"legal_hold": False},
                       headers=admin.headers, status=200)
    with Session(engine, expire_on_commit=False) as session:
        due = retention.due_archives(session, app.registry.settings, NOW)
        assert archive_id in {d.archive.id for d in due}
    assert [e.action for e in events(dbsession, "ticket.hold")] == ["ticket.hold"]
    assert events(dbsession, "ticket.release")[0].ticket_id == ticket.id


def test_platform_override_through_the_api(testapp, factory, admin, staff):
    factory.platform("vm6")
    res = testapp.patch_json("/api/v1/platforms/vm6/", {"retention_max_days": 10},
                             headers=admin.headers, status=200).json
    assert (res["retention_max_days"], res["retention_resolved_days"]) == (10, None)
    res = testapp.patch_json("/api/v1/platforms/vm6/", {"retention_max_days": None},
                             headers=admin.headers, status=200).json
    assert res["retention_max_days"] is None
    testapp.patch_json("/api/v1/platforms/vm6/", {"retention_max_days": -1},
                       headers=admin.headers, status=400)
    testapp.patch_json("/api/v1/platforms/vm6/", {"retention_max_days": 5},
                       headers=staff.headers, status=403)


def test_legal_hold_blocks_every_deletion(testapp, app, factory, admin, staff, web_login,
                                          dbsession):
    ticket = factory.ticket(factory.platform("vm6"), 555)
    archive_id = upload(testapp, ticket, b"evidence" * 10)
    # Staff may not place a hold; admins may.
    res = testapp.patch_json("/api/v1/tickets/555/", {"legal_hold": True},
                             headers=staff.headers, status=403)
    assert "admin" in res.json["detail"]
    assert testapp.patch_json("/api/v1/tickets/555/", {"legal_hold": True},
                              headers=admin.headers).json["legal_hold"] is True
    for path in ("/api/v1/tickets/555/", f"/api/v1/archives/{archive_id}/"):
        res = testapp.delete(path, headers=admin.headers, status=423)
        assert "legal hold" in res.json["detail"]
    # Other edits still work, and leave the hold as it is.
    assert testapp.patch_json("/api/v1/tickets/555/", {"note": "court case"},
                              headers=staff.headers).json["legal_hold"] is True

    pages = web_login(webtest.TestApp(app, extra_environ={"HTTP_HOST": "localhost"}), admin)
    url = "/platforms/vm6/tickets/555/"
    page = pages.get(url)
    assert 'id="legal-hold-badge"' in page.text and 'id="delete-ticket"' not in page.text
    token = page.forms["legal-hold-form"]["csrf_token"].value
    refused = pages.post(url + "delete", {"csrf_token": token}, status=423)
    assert "legal hold" in refused.text and "Traceback" not in refused.text
    pages.post(f"/platforms/vm6/tickets/555/archives/{archive_id}/delete",
               {"csrf_token": token}, status=423)
    page.forms["legal-hold-form"].submit(status=303)
    assert 'id="legal-hold-badge"' not in pages.get(url).text
    assert [e.action for e in events(dbsession, "ticket.release")] == ["ticket.release"]
    # Lifted: deletion works again.
    testapp.delete("/api/v1/tickets/555/", headers=admin.headers, status=204)

    staff_pages = web_login(webtest.TestApp(app, extra_environ={"HTTP_HOST": "localhost"}),
                            staff)
    other = factory.ticket(factory.platform("dci"), 556)
    assert "legal-hold-form" not in staff_pages.get("/platforms/dci/tickets/556/").text
    csrf = staff_pages.get("/platforms/dci/tickets/556/").forms["resolve-form"]["csrf_token"]
    staff_pages.post("/platforms/dci/tickets/556/hold", {"csrf_token": csrf.value, "hold": "1"},
                     status=403)
    dbsession.refresh(other)
    assert other.legal_hold is False


INI = """[app:main]
use = egg:logs-collector
debug = true
secret_key = cli-test-secret-0123456789
data_dir = {data_dir}
db_url = {db_url}
retention.max_days = 30
"""


@on_both_storages
@pytest.mark.commits  # the command line opens the database itself
def test_purge_command_applies_retention(tmp_path, settings, testapp, engine, factory,
                                         capsys, dbsession, stored):
    ini = tmp_path / "test.ini"
    storage = "".join(f"{key} = {settings[key]}\n" for key in (
        "storage.url", "storage.endpoint_url", "storage.region", "storage.quota")
        if key in settings)
    ini.write_text(INI.format(data_dir=settings["data_dir"],
                              db_url=settings["db_url"].replace("%", "%%")) + storage)
    ticket = factory.ticket(factory.platform("vm6"), 77)
    old = upload(testapp, ticket, b"old" * 10)
    young = upload(testapp, ticket, b"young" * 10)
    now = dt.datetime.now(dt.UTC)
    backdate(engine, old, now - 31 * DAY)
    main(["-c", str(ini), "purge", "--dry-run"])
    out = capsys.readouterr().out
    assert f"would remove archive {old} of ticket 77" in out and "older than 30" in out
    main(["-c", str(ini), "purge"])
    out = capsys.readouterr().out
    assert f"removed archive {old} of ticket 77" in out
    dbsession.expire_all()
    assert list(dbsession.scalars(select(Archive.id))) == [young]
    # Its bytes went with it (a file, or an object in the bucket).
    kept = dbsession.scalars(select(Archive.storage_key)).all()
    assert stored.keys() == kept
    [event] = events(dbsession, "archive.delete")
    assert (event.archive_id, event.reason, event.actor_id) == (old, "retention", None)


def test_platform_override_on_its_page(app, factory, admin, web_login, dbsession):
    platform = factory.platform("vm6")
    pages = web_login(webtest.TestApp(app, extra_environ={"HTTP_HOST": "localhost"}), admin)
    form = pages.get("/platforms/vm6/edit").forms["platform-form"]
    form["retention_resolved_days"] = "14"
    form.submit(status=303)
    dbsession.refresh(platform)
    assert (platform.retention_resolved_days, platform.retention_max_days) == (14, None)
    form = pages.get("/platforms/vm6/edit").forms["platform-form"]
    assert form["retention_resolved_days"].value == "14"
    form["retention_max_days"] = "soon"
    refused = form.submit(status=400)
    assert "retention_max_days" in refused.text or "not a number" in refused.text
    form = pages.get("/platforms/vm6/edit").forms["platform-form"]
    form["retention_resolved_days"] = ""
    form.submit(status=303)
    dbsession.refresh(platform)
    assert platform.retention_resolved_days is None


def test_an_archive_cannot_be_moved_off_a_held_ticket(testapp, factory, admin):
    platform = factory.platform("vm6")
    held = factory.ticket(platform, 1)
    factory.ticket(platform, 2)
    archive_id = upload(testapp, held, b"evidence")
    testapp.patch_json("/api/v1/tickets/1/", {"legal_hold": True}, headers=admin.headers)
    testapp.patch_json(f"/api/v1/archives/{archive_id}/", {"ticket": 2},
                       headers=admin.headers, status=423)
    # Renaming is not deleting: allowed.
    assert testapp.patch_json(f"/api/v1/archives/{archive_id}/", {"name": "renamed.log"},
                              headers=admin.headers, status=200).json["ticket"] == 1
