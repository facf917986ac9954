"""``record``: a change's event commits with it; a refusal's event outlives the rollback."""

import logging

import pytest
from pyramid.request import Request
from pyramid.scripting import prepare
from sqlalchemy import select

from collector.audit import services
from collector.audit.models import AuditEvent

FACTORY_ACTIONS = ("platform.create", "ticket.create", "user.create", "token.create")


@pytest.fixture
def request_env(app):
    request = Request.blank("/", remote_addr="192.0.2.7", headers={"User-Agent": "curl/8"})
    env = prepare(request=request, registry=app.registry)
    yield env["request"]
    env["closer"]()


def _events(dbsession):
    """The events these tests record (not those of the factory's own rows)."""
    dbsession.expire_all()
    return dbsession.scalars(select(AuditEvent).where(AuditEvent.action.notin_(FACTORY_ACTIONS))
                             .order_by(AuditEvent.id)).all()


def _finish(request):
    request._process_finished_callbacks()


@pytest.mark.parametrize("end", ["commit", "abort"])
def test_an_ok_event_commits_with_the_change_or_not_at_all(request_env, dbsession, end):
    request = request_env
    request.tm.begin()
    services.record(request.dbsession, "test.change", detail={"size": 3})
    getattr(request.tm, end)()
    _finish(request)
    events = _events(dbsession)
    if end == "abort":
        assert events == []
        return
    [event] = events
    assert (event.action, event.outcome, event.client_address, event.user_agent,
            event.detail) == ("test.change", "ok", "192.0.2.7", "curl/8", {"size": 3})


@pytest.mark.sqlite  # SQLite's write lock: the event is written after the transaction
@pytest.mark.commits
def test_a_refused_event_is_written_after_the_rollback(request_env, dbsession, factory):
    ticket = factory.ticket(factory.platform("vm6"), 42)
    request = request_env
    request.tm.begin()
    services.record(request.dbsession, "upload.refused", outcome="refused",
                    reason="token_expired", ticket=ticket,
                    detail={"token": services.token_hint(ticket.token)})
    # Nothing is written while the request's transaction is open.
    assert _events(dbsession) == []
    request.tm.abort()
    _finish(request)
    [event] = _events(dbsession)
    assert (event.outcome, event.reason, event.ticket_id, event.ticket_number) == (
        "refused", "token_expired", ticket.id, 42)
    # Only a hint of the token is kept.
    assert event.detail["token"] == ticket.token[:6] + "…"


def test_without_a_request_a_refusal_is_written_at_once(dbsession):
    services.record(dbsession, "cli.test", outcome="failed", reason="client_gone")
    [event] = _events(dbsession)
    assert (event.action, event.client_address, event.actor_name) == ("cli.test", "", "")


def test_a_failure_to_write_is_logged_not_raised(request_env, dbsession, caplog, monkeypatch):
    request = request_env

    def broken(*args, **kwargs):
        raise RuntimeError("database gone")

    monkeypatch.setattr(services, "insert", broken)
    request.tm.begin()
    services.record(request, "upload.failed", outcome="failed")
    request.tm.abort()
    with caplog.at_level(logging.ERROR, logger="collector.audit.services"):
        _finish(request)
    assert "could not write the upload.failed event" in caplog.text
    assert _events(dbsession) == []


def test_an_unknown_outcome_is_a_programming_error(dbsession):
    with pytest.raises(ValueError):
        services.record(dbsession, "x", outcome="maybe")


def test_the_upload_routes_include_every_upload_start_metrics_knows():
    from collector.archives.uploads.refusals import UPLOAD_REQUESTS
    from collector.metrics import UPLOAD_STARTS

    assert UPLOAD_STARTS <= UPLOAD_REQUESTS


@pytest.mark.parametrize("end", ["commit", "rollback"])
@pytest.mark.sqlite  # SQLite's write lock: the event is written after the transaction
@pytest.mark.commits
def test_a_console_refusal_waits_for_the_console_transaction(dbsession, factory, end):
    from collector.accounts.models import AuthFailure

    dbsession.add(AuthFailure(username="x", client_address=""))
    dbsession.flush()  # holds SQLite's write lock: writing apart now would wait for it
    services.record(dbsession, "signin.failure", outcome="refused")
    getattr(dbsession, end)()
    [event] = _events(dbsession)
    assert event.action == "signin.failure"
