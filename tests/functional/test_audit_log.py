"""Reading the audit log: the admin API and page, a ticket's history, the JSON export."""

import datetime as dt
import json

import pytest
from sqlalchemy import update

from collector.audit.models import AuditEvent
from collector.cli import main

INI = """[app:main]
use = egg:logs-collector
secret_key = cli-test-secret-0123456789
allowed_hosts = localhost
data_dir = {data_dir}
db_url = {db_url}
"""
UTC = dt.UTC


@pytest.fixture
def ticket(factory):
    return factory.ticket(factory.platform("vm6"), 77, attempts=3)


def _refused_upload(testapp, app, ticket):
    app.registry.settings["upload.max_size"] = 10
    testapp.post("/api/v1/archives/", b"x" * 100, headers={
        "Upload-Token": ticket.token, "Content-Type": "application/octet-stream",
        "User-Agent": "curl/8.5"}, status=413)
    app.registry.settings["upload.max_size"] = 1 << 20


def _upload(testapp, ticket, body=b"log\n"):
    return testapp.post("/api/v1/archives/", body, headers={
        "Upload-Token": ticket.token, "Content-Type": "application/octet-stream"},
        status=201).json


def _set_times(dbsession, action, when):
    dbsession.execute(update(AuditEvent).where(AuditEvent.action == action)
                      .values(time=when))
    dbsession.commit()


# --- the API -------------------------------------------------------------------------------

def test_admin_reads_the_log_with_filters(testapp, app, admin, ticket, dbsession):
    _refused_upload(testapp, app, ticket)
    archive = _upload(testapp, ticket)
    res = testapp.get("/api/v1/audit/", headers=admin.headers, status=200)
    assert int(res.headers["X-Total-Count"]) == len(res.json) >= 4
    assert {"id", "time", "actor", "action", "ticket", "archive", "client_address",
            "outcome", "reason"} <= set(res.json[0])
    # Newest first.
    assert [e["id"] for e in res.json] == sorted((e["id"] for e in res.json), reverse=True)

    [refused] = testapp.get("/api/v1/audit/?action=upload.refused",
                            headers=admin.headers).json
    assert (refused["ticket"], refused["outcome"], refused["reason"], refused["archive"],
            refused["client_address"], refused["user_agent"]) == (
        77, "refused", "too_large", None, "127.0.0.1", "curl/8.5")
    [finished] = testapp.get("/api/v1/audit/?action=upload.finished&ticket=77",
                             headers=admin.headers).json
    assert finished["archive"] == archive["id"]
    uploads = testapp.get("/api/v1/audit/?action=upload.", headers=admin.headers).json
    assert {e["action"] for e in uploads} == {"upload.refused", "upload.finished"}
    assert testapp.get("/api/v1/audit/?ticket=78", headers=admin.headers).json == []
    by_root = testapp.get("/api/v1/audit/?actor=root", headers=admin.headers).json
    assert by_root and {e["actor"] for e in by_root} == {"root"}

    page = testapp.get("/api/v1/audit/?limit=1&offset=1", headers=admin.headers)
    assert len(page.json) == 1 and page.json[0]["id"] == res.json[1]["id"]
    assert 'rel="next"' in page.headers["Link"]


def test_time_filters(testapp, admin, ticket, dbsession):
    _set_times(dbsession, "ticket.create", dt.datetime(2026, 1, 10, 12, tzinfo=UTC))
    _set_times(dbsession, "platform.create", dt.datetime(2026, 1, 5, tzinfo=UTC))
    since = testapp.get("/api/v1/audit/?since=2026-01-10&until=2026-01-11",
                        headers=admin.headers).json
    assert [e["action"] for e in since] == ["ticket.create"]
    assert since[0]["time"] == "2026-01-10T12:00:00Z"
    before = testapp.get("/api/v1/audit/?until=2026-01-10T12:00:00Z",
                         headers=admin.headers).json
    assert [e["action"] for e in before] == ["platform.create"]
    testapp.get("/api/v1/audit/?since=yesterday", headers=admin.headers, status=400)
    testapp.get("/api/v1/audit/?ticket=abc", headers=admin.headers, status=400)


def test_only_admins_with_two_factor_read_the_log(testapp, staff, admin, factory):
    assert testapp.get("/api/v1/audit/", headers=staff.headers, status=403).json["detail"]
    no_mfa = factory.token(admin, mfa=False)
    testapp.get("/api/v1/audit/", headers=no_mfa, status=403)
    testapp.get("/api/v1/audit/", status=(401, 403))


def test_the_log_is_in_the_openapi_document(testapp):
    document = testapp.get("/api/v1/openapi.json").json
    operation = document["paths"]["/api/v1/audit/"]["get"]
    assert {p["name"] for p in operation["parameters"] if "name" in p} >= {
        "ticket", "actor", "action", "since", "until"}
    assert "AuditEvent" in document["components"]["schemas"]


# --- the pages -----------------------------------------------------------------------------

def test_admin_page_lists_and_filters(testapp, app, admin, ticket, web_login):
    _refused_upload(testapp, app, ticket)
    web_login(testapp, admin)
    page = testapp.get("/admin/audit")
    assert page.html.select_one("#nav-audit") is not None
    actions = [span.text for span in page.html.select("#audit-log .action")]
    assert "upload.refused" in actions and "signin.success" in actions
    page = testapp.get("/admin/audit", {"action": "upload.refused", "ticket": "77"})
    rows = page.html.select("#audit-log tbody tr")
    assert len(rows) == 1
    assert rows[0].select_one(".reason").text == "too_large"
    # The address is behind the row's disclosure.
    assert rows[0].select_one("details .detail-address dd").text == "127.0.0.1"
    page = testapp.get("/admin/audit", {"since": "not a time"}, status=400)
    assert "since must be" in page.html.select_one("#audit-error").text


def test_staff_cannot_open_the_admin_page(testapp, staff, web_login):
    web_login(testapp, staff)
    testapp.get("/admin/audit", status=403)


def test_ticket_page_shows_its_own_history(testapp, app, staff, ticket, factory, web_login):
    other = factory.ticket(ticket.platform, 78)
    _refused_upload(testapp, app, ticket)
    _upload(testapp, ticket)
    _upload(testapp, other)
    web_login(testapp, staff)
    page = testapp.get("/platforms/vm6/tickets/77/")
    rows = page.html.select("#history tbody tr")
    actions = [row.select_one(".action").text for row in rows]
    assert actions == ["upload.finished", "upload.refused", "ticket.create"]
    refused = rows[1]
    assert refused.select_one(".reason").text == "too_large"
    assert "curl/8.5" in refused.text
    assert ticket.token[:6] in refused.select_one(".detail").text
    assert ticket.token not in page.html.select_one("#ticket-history").text


# --- the export ----------------------------------------------------------------------------

@pytest.fixture
def ini(tmp_path, settings):
    path = tmp_path / "audit.ini"
    path.write_text(INI.format(data_dir=settings["data_dir"],
                               db_url=settings["db_url"].replace("%", "%%")))
    return str(path)


@pytest.mark.commits  # the command line opens the database itself
def test_export_writes_json_lines_of_the_range(ini, capsys, ticket, dbsession, app):
    _set_times(dbsession, "platform.create", dt.datetime(2026, 1, 5, tzinfo=UTC))
    _set_times(dbsession, "ticket.create", dt.datetime(2026, 1, 10, tzinfo=UTC))
    main(["-c", ini, "audit", "export", "--since", "2026-01-01"])
    lines = capsys.readouterr().out.splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["action"] for e in events] == ["platform.create", "ticket.create"]
    assert events[1]["ticket"] == 77 and events[1]["time"] == "2026-01-10T00:00:00Z"
    main(["-c", ini, "audit", "export", "--since", "2026-01-06", "--until", "2026-02-01"])
    assert [json.loads(line)["action"] for line in capsys.readouterr().out.splitlines()] == [
        "ticket.create"]
    with pytest.raises(SystemExit, match="--since must be"):
        main(["-c", ini, "audit", "export", "--since", "soon"])
