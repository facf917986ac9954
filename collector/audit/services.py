"""Recording and reading the audit log. ``record`` is the one way an event is written.

An event about a change (``outcome="ok"``) is added to the request's session, so it
commits with that change or not at all. An event about a refused or failed request is
written after that request's transaction has ended, in a short transaction of its own on
a separate connection: the request's rollback cannot take it along. Recording never
breaks the request: a failure to write is logged, not raised.
"""

import logging

from sqlalchemy import event, func, insert, select
from sqlalchemy.orm import Session

from collector.audit.models import AuditEvent
from collector.db import as_integer, utcnow

log = logging.getLogger(__name__)

OUTCOMES = ("ok", "refused", "failed")
# A token is a credential: the log keeps only enough of it to tell two apart.
TOKEN_HINT = 6


def token_hint(token):
    token = (token or "").strip()
    return token[:TOKEN_HINT] + "…" if token else ""


def _request_of(source):
    """``source`` is a request, a request's session (whose info carries the request), or a
    plain session (the console: no request)."""
    if isinstance(source, Session):
        return source.info.get("request"), source
    return source, None


def _who(request, actor, outcome):
    if actor is None and request is not None:
        # After a refusal the request's transaction may be over: only an identity
        # already known is used then (finding it would query the ended session).
        identity = (request.identity if outcome == "ok"
                    else request.__dict__.get("_collector_identity"))
        actor = identity.user if identity is not None else None
    if actor is None:
        return None, ""
    return actor.id, actor.username


def subscribe(listener):
    """Have ``listener(db, values)`` called for every event as it is written, on the same
    session or connection, so what it writes shares the event's fate (the webhooks' outbox
    subscribes). The audit log knows nothing of its listeners: they depend on it, not the
    other way round. Subscribing the same listener twice keeps one."""
    if listener not in _listeners:
        _listeners.append(listener)


_listeners = []


def record(source, action, *, outcome="ok", ticket=None, archive=None, actor=None,
           reason="", detail=None):
    """Record one event; see the module's docstring for when it is written.

    ``ticket`` is a Ticket or any row with its ``id`` and ``number`` (a refused upload's
    caller resolves the token itself); ``reason`` is a stable code, never a sentence.
    ``actor`` defaults to the signed-in user of the request. Nothing here may carry a
    credential: a token is named by ``token_hint`` only. Returns the event of an ``ok``
    outcome (added to the session, not flushed), else None.
    """
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown audit outcome {outcome!r}")
    try:
        request, dbsession = _request_of(source)
        # Asked first: reading the ticket's attributes below may begin a transaction.
        in_transaction = request is None and dbsession.in_transaction()
        actor_id, actor_name = _who(request, actor, outcome)
        values = dict(
            time=utcnow(), actor_id=actor_id, actor_name=actor_name[:150], action=action,
            ticket_id=ticket.id if ticket is not None else None,
            ticket_number=ticket.number if ticket is not None else None,
            archive_id=archive.id if archive is not None else None,
            client_address=(request.remote_addr or "")[:64] if request is not None else "",
            user_agent=(request.user_agent or "")[:300] if request is not None else "",
            outcome=outcome, reason=reason[:40], detail=dict(detail or {}))
    except Exception:  # never break the request over its audit event
        log.exception("audit: could not build the %s event", action)
        return
    if outcome == "ok":
        session = dbsession if dbsession is not None else request.dbsession
        row = AuditEvent(**values)
        session.add(row)
        # Its listeners' rows (the webhooks' outbox) commit with it, or not at all.
        _notify(session, values)
        return row
    if request is not None:
        engine = request.registry["db_engine"]
        # After the request's transaction (committed or rolled back) and its session.
        request.add_finished_callback(lambda _request: _write_apart(engine, values))
    elif in_transaction:
        # The console's own transaction (it may hold SQLite's write lock): after it ends.
        _after_transaction(dbsession, lambda: _write_apart(dbsession.get_bind(), values))
    else:
        _write_apart(dbsession.get_bind(), values)


def earlier_same(dbsession, event_id, *, action, actor_id, ticket_id, detail, within):
    """The ``ok`` event ``event_id`` if it records the very same thing — action, actor,
    ticket and detail — and is at most ``within`` old; else None.

    For a repetition a client says it is making (a page's automatic retry): it can only
    point at an event that already says what it does, so skipping its own event hides
    nothing. ``event_id`` comes from the client: anything else is None, never an error.
    """
    event_id = as_integer(event_id, minimum=1)
    if event_id is None or actor_id is None:
        return None
    row = dbsession.get(AuditEvent, event_id)
    if row is None or row.outcome != "ok" or (row.action, row.actor_id, row.ticket_id) != (
            action, actor_id, ticket_id) or row.detail != detail:
        return None
    return row if utcnow() - row.time <= within else None


def _after_transaction(dbsession, write):
    done = []

    def once(_session):
        if not done:
            done.append(True)
            write()

    event.listen(dbsession, "after_commit", once, once=True)
    event.listen(dbsession, "after_rollback", once, once=True)


def _write_apart(engine, values):
    try:
        with engine.begin() as connection:
            connection.execute(insert(AuditEvent).values(**values))
            # Its listeners' rows share its fate: kept though the request rolled back.
            _notify(connection, values)
    except Exception:
        log.exception("audit: could not write the %s event", values["action"])


def _notify(db, values):
    for listener in _listeners:
        try:
            listener(db, values)
        except Exception:  # never break the request over a listener (a webhook, say)
            log.exception("audit: a listener failed on the %s event", values["action"])


# --- reading -----------------------------------------------------------------------------

def conditions(filters):
    """WHERE clauses from the filters ``ticket`` (number), ``actor`` (name), ``action``
    (exact, or a prefix ending in ``.``), ``since`` and ``until``."""
    clauses = []
    if filters.get("ticket") is not None:
        clauses.append(AuditEvent.ticket_number == filters["ticket"])
    if filters.get("actor"):
        clauses.append(AuditEvent.actor_name == filters["actor"])
    action = filters.get("action")
    if action:
        if action.endswith("."):
            clauses.append(AuditEvent.action.startswith(action, autoescape=True))
        else:
            clauses.append(AuditEvent.action == action)
    if filters.get("since"):
        clauses.append(AuditEvent.time >= filters["since"])
    if filters.get("until"):
        clauses.append(AuditEvent.time < filters["until"])
    return clauses


def list_events(dbsession, filters, limit, offset):
    """Events matching the filters, newest first, and their total count."""
    where = conditions(filters)
    total = dbsession.scalar(select(func.count()).select_from(AuditEvent).where(*where))
    rows = dbsession.scalars(select(AuditEvent).where(*where)
                             .order_by(AuditEvent.time.desc(), AuditEvent.id.desc())
                             .limit(limit).offset(offset)).all()
    return rows, total


def ticket_history(dbsession, ticket, limit=200):
    """A ticket's own events, newest first (by id: its number may have changed)."""
    return dbsession.scalars(select(AuditEvent).where(AuditEvent.ticket_id == ticket.id)
                             .order_by(AuditEvent.time.desc(), AuditEvent.id.desc())
                             .limit(limit)).all()


def iter_events(dbsession, filters, batch=1000):
    """Every matching event, oldest first, read in batches (the export)."""
    last_id = 0
    where = conditions(filters)
    while True:
        rows = dbsession.scalars(select(AuditEvent).where(*where, AuditEvent.id > last_id)
                               .order_by(AuditEvent.id).limit(batch)).all()
        if not rows:
            return
        yield from rows
        last_id = rows[-1].id


def as_json(row):
    def iso(value):
        return value.isoformat().replace("+00:00", "Z") if value else None

    return {"id": row.id, "time": iso(row.time), "actor": row.actor_name or None,
            "actor_id": row.actor_id, "action": row.action, "ticket": row.ticket_number,
            "ticket_id": row.ticket_id, "archive": row.archive_id,
            "client_address": row.client_address, "user_agent": row.user_agent,
            "outcome": row.outcome, "reason": row.reason, "detail": row.detail or {}}
