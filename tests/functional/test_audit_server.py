"""Under a real waitress server: the address an event records is the one waitress gives,
with X-Forwarded-For applied only for the trusted proxy."""

import threading
import urllib.error
import urllib.request

import pytest
import waitress.server
from sqlalchemy import select

from collector.audit.models import AuditEvent

# Commits: the app answers from a waitress server's threads.
pytestmark = pytest.mark.commits


@pytest.fixture
def serve(app):
    servers = []

    def start(**options):
        server = waitress.server.create_server(app, host="127.0.0.1", port=0, threads=2,
                                               ident="test", **options)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.effective_port}"

    yield start
    for server, thread in servers:
        server.task_dispatcher.shutdown(cancel_pending=True, timeout=10)

        def close_all(server=server):
            for channel in list(server._map.values()):
                if channel is not server.trigger:
                    channel.close()
            server.trigger.close()

        server.trigger.pull_trigger(close_all)
        thread.join(timeout=10)
        assert not thread.is_alive(), "the test server did not stop"


def _refused_upload(url, token):
    request = urllib.request.Request(
        f"{url}/api/v1/archives/", data=b"x" * 100, method="POST",
        headers={"Upload-Token": token, "Content-Type": "application/octet-stream",
                 "User-Agent": "uploader.sh/2", "X-Forwarded-For": "203.0.113.9"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    refused.value.close()
    assert refused.value.code == 423


def _addresses(dbsession):
    dbsession.expire_all()
    return dbsession.scalars(select(AuditEvent.client_address)
                             .where(AuditEvent.action == "upload.refused")
                             .order_by(AuditEvent.id)).all()


def test_forwarded_for_only_from_the_trusted_proxy(serve, factory, dbsession):
    ticket = factory.ticket(factory.platform("vm6"), 77, attempts=0)
    # No proxy is trusted: the header is the client's own claim and is ignored.
    _refused_upload(serve(), ticket.token)
    # 127.0.0.1 is the trusted proxy: its X-Forwarded-For names the client.
    _refused_upload(serve(trusted_proxy="127.0.0.1", trusted_proxy_headers="x-forwarded-for",
                          trusted_proxy_count=1), ticket.token)
    assert _addresses(dbsession) == ["127.0.0.1", "203.0.113.9"]
    event = dbsession.scalars(select(AuditEvent).where(
        AuditEvent.action == "upload.refused")).first()
    assert (event.reason, event.ticket_number, event.user_agent) == (
        "no_attempts", 77, "uploader.sh/2")
