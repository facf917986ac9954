"""/livez and /readyz (collector/probes.py): public, cheap, any Host; readiness follows the
database, the storage and the server's drain. The drain itself, through a real server:
tests/reliability/test_shutdown.py."""

import threading

import webtest

from collector import main
from collector.probes import DRAINING


def test_livez_and_readyz_answer_anyone(testapp):
    live = testapp.get("/livez", status=200)
    assert live.json == {"status": "ok"} and live.headers["Cache-Control"] == "no-store"
    ready = testapp.get("/readyz", status=200)
    assert ready.json == {"status": "ok", "database": "ok", "storage": "ok"}
    for res in (live, ready):
        assert "Set-Cookie" not in res.headers  # no session was opened
    assert testapp.head("/readyz", status=200).body == b""
    testapp.post("/readyz", status=405)


def test_readyz_is_503_while_draining_and_livez_is_not(testapp):
    draining = threading.Event()
    draining.set()
    environ = {DRAINING: draining}
    res = testapp.get("/readyz", extra_environ=environ, status=503)
    assert res.json == {"status": "draining"} and res.headers["Retry-After"]
    assert testapp.get("/livez", extra_environ=environ, status=200).json["status"] == "ok"
    draining.clear()
    testapp.get("/readyz", extra_environ=environ, status=200)


def test_readyz_is_503_when_the_database_is_down_livez_is_not(testapp, monkeypatch):
    from sqlalchemy.engine import Connection
    from sqlalchemy.exc import OperationalError

    def down(self, *args, **kwargs):
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr(Connection, "execute", down)
    res = testapp.get("/readyz", status=503)
    assert res.json == {"status": "error", "database": "unavailable", "storage": "ok"}
    assert testapp.get("/livez", status=200).json == {"status": "ok"}


def test_probes_answer_any_host_the_rest_does_not(settings, engine):
    """A kubelet asks by the pod's address; ALLOWED_HOSTS still guards everything else."""
    app = webtest.TestApp(main({}, **settings, allowed_hosts="logs.example.com"))
    other = {"HTTP_HOST": "10.1.2.3:6543"}
    assert app.get("/livez", extra_environ=other).json["status"] == "ok"
    assert app.get("/readyz", extra_environ=other).json["status"] == "ok"
    app.get("/api/v1/check/health/", extra_environ=other, status=400)
    app.get("/livez/x", extra_environ=other, status=400)
