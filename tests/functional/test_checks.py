"""/api/v1/check/…: health, storage, token state; and the service index."""

import datetime as dt

import pytest


def test_health_ok(testapp):
    res = testapp.get("/api/v1/check/health/")
    assert res.json == {"status": "ok", "database": "ok", "storage": "ok"}
    assert testapp.get("/api/v1/check/health").json["status"] == "ok"


def test_health_503_when_storage_not_writable(testapp, data_dir):
    (data_dir / "tmp").chmod(0o500)
    try:
        import os

        if os.geteuid() == 0:  # root writes anyway: make the dir vanish instead
            (data_dir / "tmp").chmod(0o700)
            (data_dir / "tmp").rmdir()
        res = testapp.get("/api/v1/check/health/", status=503)
    finally:
        (data_dir / "tmp").mkdir(exist_ok=True)
        (data_dir / "tmp").chmod(0o700)
    assert res.json["storage"] == "not writable" and res.headers["Retry-After"]


def test_health_503_when_database_is_down(testapp, app, monkeypatch):
    from sqlalchemy.engine import Connection
    from sqlalchemy.exc import OperationalError

    def down(self, *args, **kwargs):
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr(Connection, "execute", down)
    res = testapp.get("/api/v1/check/health/", status=503)
    assert res.json["database"] == "unavailable"


def test_storage(testapp, staff):
    testapp.get("/api/v1/check/storage/", status=401)
    body = testapp.get("/api/v1/check/storage/", headers=staff.headers).json
    assert {"total", "used", "free", "used_percent", "status"} <= set(body)
    assert body["total"] >= body["free"] > 0 and body["status"] in {"ok", "low", "full"}


def test_token_state(testapp, factory, dbsession):
    ticket = factory.ticket(factory.platform("vm6"), 9, attempts=2)
    state = testapp.get(f"/api/v1/check/token/{ticket.token}").json
    assert state["token"] == ticket.token and state["attempts"] == 2
    assert state["ticket"] == 9
    assert state["resolved"] is False and state["valid"] is True and state["expires_at"]
    ticket.expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    dbsession.merge(ticket)
    dbsession.commit()
    state = testapp.get(f"/api/v1/check/token/{ticket.token}").json
    assert state["valid"] is False and "expired" in state["detail"]
    assert testapp.get("/api/v1/check/token/unknown", status=404).json["detail"]


def test_index_and_unknown_paths(testapp):
    index = testapp.get("/api/v1/").json
    assert index["openapi"].endswith("/api/v1/openapi.json")
    assert index["docs"] == "http://localhost/api/v1/docs"
    page = testapp.get("/nothing/here", status=404)
    assert page.content_type == "text/html" and "There is no page at this address" in page
    assert testapp.get("/api/v1/nothing", status=404).json["detail"]


def test_allowed_hosts(settings, engine):
    import webtest

    from collector import main

    app = webtest.TestApp(main({}, **settings, allowed_hosts="logs.example.com"))
    app.get("/api/v1/check/health/", extra_environ={"HTTP_HOST": "logs.example.com"})
    res = app.get("/api/v1/check/health/", extra_environ={"HTTP_HOST": "evil.example"},
                  status=400)
    assert "ALLOWED_HOSTS" in res.json["detail"]


@pytest.mark.parametrize("storage_kind", ["s3"])
def test_storage_check_on_s3_is_the_quota_and_the_bytes_stored(testapp, staff, factory, app):
    """With S3 the free space is the configured quota minus what the app stores; when
    an upload would not fit it is refused with 507 before a byte is sent."""
    backend = app.registry["archive_storage"]
    app.registry.settings["storage.reserve"] = 0
    backend.quota = 5000
    ticket = factory.ticket(factory.platform("vm6"), 3, attempts=5)
    testapp.post("/api/v1/archives/", upload_files=[("file", "a", b"x" * 3000)],
                 headers={"Upload-Token": ticket.token}, status=201)
    # Counted at once by this process (the listing is otherwise cached for 5 s).
    state = testapp.get("/api/v1/check/storage/", headers=staff.headers).json
    assert (state["total"], state["used"], state["free"]) == (5000, 3000, 2000)
    assert state["used_percent"] == 60.0
    res = testapp.post("/api/v1/archives/", b"y" * 2500, status=507, headers={
        "Upload-Token": ticket.token, "Content-Type": "application/octet-stream"})
    assert "space" in res.json["detail"]
    assert testapp.get("/api/v1/check/health/").json["storage"] == "ok"
