"""A refused upload token is a credential: it reaches no audit row, no webhook payload
and no log line, whatever the refusal and whichever upload route refused it. The audit
log, the metrics and the webhooks read the refusal's stable reason code."""

import datetime as dt
import json
import logging
import secrets

import pytest
from sqlalchemy import select
from webhook_receiver import SECRET, Receiver

from collector.audit.models import AuditEvent
from collector.tickets import services as tickets
from collector.webhooks import services as webhooks
from collector.webhooks.models import WebhookDelivery

TUS = {"Tus-Resumable": "1.0.0"}
RAW = {"Content-Type": "application/octet-stream"}


@pytest.fixture
def help_desk():
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture
def world(testapp, factory, admin, help_desk):
    """A platform with a webhook, and one ticket per way its token can be refused."""
    vm6 = factory.platform("vm6")
    testapp.post_json("/api/v1/webhooks/", {"platform": "vm6", "url": help_desk.url,
                                            "secret": SECRET},
                      headers=admin.headers, status=201)
    yesterday = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    resolved = factory.ticket(vm6, 11, attempts=3)
    resolved.resolved = True
    factory.session.commit()
    return {
        "token_unknown": secrets.token_urlsafe(32),
        "ticket_resolved": resolved.token,
        "token_expired": factory.ticket(vm6, 12, expires_at=yesterday).token,
        "no_attempts": factory.ticket(vm6, 13, attempts=0).token,
    }


# Each upload route that checks a token, and the status a refused token gets there.
def _single_post(testapp, token, status):
    testapp.post("/api/v1/archives/", b"log line\n", headers={**RAW, "Upload-Token": token},
                 status=status)


def _multipart_post(testapp, token, status):
    testapp.post("/api/v1/archives/", upload_files=[("file", "app.log", b"log line\n")],
                 headers={"Upload-Token": token}, status=status)


def _named_put(testapp, token, status):
    testapp.put("/api/v1/archives/app.log", b"log line\n",
                headers={**RAW, "Upload-Token": token}, status=(status, 404))


def _tus_creation(testapp, token, status):
    testapp.post("/api/v1/uploads/", headers={**TUS, "Upload-Token": token,
                                              "Upload-Length": "9"}, status=status)


def _token_check(testapp, token, status):
    testapp.get(f"/api/v1/check/token/{token}", status=(200, 404))


ROUTES = [_single_post, _multipart_post, _named_put, _tus_creation, _token_check]
STATUS = {"token_unknown": 403, "ticket_resolved": 423, "token_expired": 423,
          "no_attempts": 423}


def _everything_kept(dbsession):
    """Every audit row and webhook outbox row, as text."""
    dbsession.expire_all()
    audit = [json.dumps({c.name: getattr(row, c.name) for c in AuditEvent.__table__.columns},
                        default=str)
             for row in dbsession.scalars(select(AuditEvent))]
    outbox = [json.dumps(row.payload) + row.last_error
              for row in dbsession.scalars(select(WebhookDelivery))]
    return audit, outbox


def test_no_refused_token_is_kept_sent_or_logged(testapp, app, engine, world, help_desk,
                                                 dbsession, caplog):
    caplog.set_level(logging.DEBUG)
    for kind, token in world.items():
        for route in ROUTES:
            route(testapp, token, STATUS[kind])
    # A tus upload that holds its attempt, then its ticket is resolved under it: the
    # chunk is refused with the ticket's reason.
    open_ticket = tickets.get_ticket(dbsession, 11)
    open_ticket.resolved = False
    dbsession.commit()
    token = world["ticket_resolved"]
    location = testapp.post("/api/v1/uploads/", headers={
        **TUS, "Upload-Token": token, "Upload-Length": "9"}, status=201).headers["Location"]
    open_ticket.resolved = True
    dbsession.commit()
    testapp.patch(location, b"log line\n", headers={
        **TUS, "Upload-Token": token, "Upload-Offset": "0",
        "Content-Type": "application/offset+octet-stream"}, status=423)
    # Every refusal reached the help desk too.
    assert webhooks.deliver_pending(engine, app.registry.settings,
                                    now=dt.datetime.now(dt.UTC)
                                    + dt.timedelta(minutes=1))

    audit, outbox = _everything_kept(dbsession)
    sent = [body.decode() for _, body in help_desk.received]
    logged = [record.getMessage() for record in caplog.records]
    assert audit and outbox and sent and logged
    for kind, token in world.items():
        assert not [row for row in audit if token in row], kind
        assert not [row for row in outbox if token in row], kind
        assert not [body for body in sent if token in body], kind
        assert not [line for line in logged if token in line], kind

    # The reasons are the codes, and each refusal names its ticket by number only.
    dbsession.expire_all()
    refused = dbsession.scalars(select(AuditEvent).where(
        AuditEvent.action == "upload.refused")).all()
    assert {(event.ticket_number, event.reason) for event in refused} == {
        (None, "token_unknown"), (11, "ticket_resolved"), (12, "token_expired"),
        (13, "no_attempts")}
    assert all(event.detail["token"].endswith("…") and len(event.detail["token"]) == 7
               for event in refused)
    payloads = [json.loads(body) for body in sent]
    assert {(p["ticket"], p["reason"]) for p in payloads} == {
        (11, "ticket_resolved"), (12, "token_expired"), (13, "no_attempts")}


@pytest.mark.parametrize("kind", sorted(STATUS))
def test_the_customer_is_told_why_without_the_token(testapp, world, kind):
    token = world[kind]
    detail = testapp.post("/api/v1/archives/", b"x", headers={**RAW, "Upload-Token": token},
                          status=STATUS[kind]).json["detail"]
    state = testapp.get(f"/api/v1/check/token/{token}", status=(200, 404)).json
    assert token not in detail and token not in state["detail"]
    expected = {"token_unknown": "not valid", "ticket_resolved": "already resolved",
                "token_expired": "expired at", "no_attempts": "no upload attempts left"}
    assert expected[kind] in detail
    if kind != "token_unknown":
        assert (state["valid"], state["reason"]) == (False, kind)
