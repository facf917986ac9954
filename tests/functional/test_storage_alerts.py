"""Low-space alerts: once per crossing (persisted, whichever process sees it), the staff
banner, the audit event and the storage.low webhook; `collector deliver` runs the check."""

import json
import threading

import pytest
from sqlalchemy import select
from webhook_receiver import SECRET, Receiver, verify_as_the_readme_says

from collector.archives.storage import LocalArchiveStorage, alerts
from collector.audit.models import AuditEvent
from collector.cli import main
from collector.webhooks.models import WebhookDelivery
from collector.webhooks.worker import Worker

THRESHOLD = 10_000


@pytest.fixture
def disk(monkeypatch, app):
    """Free space under the test's control, read the way the app reads it."""
    state = {"total": 100_000, "free": 50_000}
    monkeypatch.setattr(LocalArchiveStorage, "usage", lambda self: {
        "total": state["total"], "used": state["total"] - state["free"],
        "free": state["free"]})
    app.registry.settings["storage.alert_free"] = THRESHOLD
    return state


@pytest.fixture
def help_desk():
    receiver = Receiver()
    yield receiver
    receiver.close()


def actions(dbsession):
    dbsession.expire_all()
    return [e.action for e in dbsession.scalars(
        select(AuditEvent).where(AuditEvent.action.startswith("storage."))
        .order_by(AuditEvent.id))]


def check(app, engine):
    return alerts.check(engine, app.registry["archive_storage"], app.registry.settings)


def test_once_per_crossing_with_hysteresis(app, engine, disk, dbsession):
    assert check(app, engine) is None
    disk["free"] = THRESHOLD - 1
    assert check(app, engine) == "low"
    # Every later look, by this process or a "restarted" one, says nothing new.
    assert check(app, engine) is None
    assert Worker(engine, app.registry["archive_storage"], app.registry.settings).run_once() == []
    assert actions(dbsession) == ["storage.low"]
    # Just above the threshold is not yet a recovery (10 % margin).
    disk["free"] = THRESHOLD + 500
    assert check(app, engine) is None
    disk["free"] = THRESHOLD * 2
    assert check(app, engine) == "ok"
    disk["free"] = 10
    assert check(app, engine) == "low"
    assert actions(dbsession) == ["storage.low", "storage.ok", "storage.low"]
    low = dbsession.scalars(select(AuditEvent).where(AuditEvent.action == "storage.low")).first()
    assert low.detail == {"free": THRESHOLD - 1, "total": 100_000, "threshold": THRESHOLD}


@pytest.mark.commits  # the processes are threads with transactions of their own
@pytest.mark.sqlite  # concurrent claims, per engine
def test_several_processes_alert_once(app, engine, disk, dbsession):
    disk["free"] = 1
    results, barrier = [], threading.Barrier(4)

    def look():
        barrier.wait()
        results.append(check(app, engine))

    threads = [threading.Thread(target=look) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count("low") == 1 and results.count(None) == 3
    assert actions(dbsession) == ["storage.low"]


def test_off_without_a_threshold(app, engine, disk, dbsession, testapp, staff):
    app.registry.settings["storage.alert_free"] = 0
    disk["free"] = 0
    assert check(app, engine) is None
    assert actions(dbsession) == []
    assert "storage-low-banner" not in testapp.get("/tickets/", headers=staff.headers).text


def test_banner_on_staff_pages(app, disk, testapp, staff):
    assert "storage-low-banner" not in testapp.get("/tickets/", headers=staff.headers).text
    disk["free"] = THRESHOLD // 2
    page = testapp.get("/tickets/", headers=staff.headers).text
    assert 'id="storage-low-banner"' in page and "tell an admin" in page
    # Not on the customer's page.
    assert "storage-low-banner" not in testapp.get("/upload").text


def test_storage_low_webhook_goes_to_every_receiver_once(app, engine, disk, factory, admin,
                                                         testapp, help_desk, dbsession):
    for name in ("vm6", "dci"):
        factory.platform(name)
        # The same help desk for both platforms: it hears of the disk once.
        testapp.post_json("/api/v1/webhooks/", {"platform": name, "url": help_desk.url,
                                                "secret": SECRET},
                          headers=admin.headers, status=201)
    disk["free"] = 123
    assert check(app, engine) == "low"
    dbsession.expire_all()
    [row] = dbsession.scalars(select(WebhookDelivery)).all()
    assert row.event == "storage.low" and row.payload["ticket"] is None
    worker = Worker(engine, app.registry["archive_storage"], app.registry.settings)
    assert worker.run_once() == [(row.id, "delivered")]
    headers, body = help_desk.received[0]
    assert headers["X-Collector-Event"] == "storage.low"
    assert json.loads(body)["storage"] == {"free": 123, "total": 100_000,
                                           "threshold": THRESHOLD}
    timestamp = int(headers["X-Collector-Signature"].split(",")[0][2:])
    assert verify_as_the_readme_says(headers, body, SECRET, timestamp)


@pytest.mark.commits  # the command line opens the database itself
def test_deliver_command_checks_space_and_delivers(tmp_path, settings, app, engine, disk,
                                                   factory, admin, testapp, help_desk,
                                                   capsys, dbsession):
    factory.platform("vm6")
    testapp.post_json("/api/v1/webhooks/", {"platform": "vm6", "url": help_desk.url,
                                            "secret": SECRET}, headers=admin.headers,
                      status=201)
    ini = tmp_path / "test.ini"
    ini.write_text(f"""[app:main]
use = egg:logs-collector
debug = true
secret_key = cli-test-secret-0123456789
data_dir = {settings["data_dir"]}
db_url = {settings["db_url"].replace("%", "%%")}
storage.alert_free = {THRESHOLD}
""")
    disk["free"] = 5
    main(["-c", str(ini), "deliver"])
    assert "delivered" in capsys.readouterr().out
    assert actions(dbsession) == ["storage.low"]
    assert json.loads(help_desk.received[0][1])["event"] == "storage.low"
    main(["-c", str(ini), "deliver"])
    assert capsys.readouterr().out == ""
    assert len(help_desk.received) == 1
