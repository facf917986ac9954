"""Help-desk webhooks: what is sent, when, how it is signed, and the admin's rules.

An event is an outbox row (``WebhookDelivery``) per active webhook of the ticket's
platform, written by ``enqueue`` where the audit log records the event — so it commits
with the change it describes, and the event of a refused or failed upload is written with
that audit event after the request's own transaction has rolled back. Nothing is sent in
a request: ``deliver_pending`` (the server's worker thread, or ``collector deliver``)
claims due rows, POSTs them outside any transaction with a short timeout, and records
each attempt. A failed attempt is retried with exponential backoff until the retry period
(a day by default) has passed since the event; then the delivery is ``failed``.
"""

import datetime as dt
import hashlib
import hmac
import http.client
import json
import logging
import secrets
import time
import urllib.parse
import uuid

from sqlalchemy import func, insert, or_, select, update

from collector.audit.services import record
from collector.db import as_integer, utcnow
from collector.errors import BadRequest, Conflict, NotFound
from collector.tickets.models import Platform, Ticket
from collector.tickets.services import require_platform
from collector.webhooks.models import Webhook, WebhookAttempt, WebhookDelivery

log = logging.getLogger(__name__)

# Audit actions that are webhook events, and the event's name.
EVENTS = {
    "upload.finished": "archive.uploaded",
    "upload.refused": "upload.failed",
    "upload.failed": "upload.failed",
    "ticket.resolve": "ticket.resolved",
    "storage.low": "storage.low",
}
# The events a receiver can get, each once (the deliveries' filter offers them).
EVENT_NAMES = tuple(sorted(set(EVENTS.values())))
# A tus client that lost an answer and asks again gets a 409; that is not a failed upload.
QUIET_REASONS = {"conflict"}
SIGNATURE_HEADER = "X-Collector-Signature"
USER_AGENT = "logs-collector-webhooks"
# A claim outlives the longest attempt; a claim older than this belongs to a dead worker.
CLAIM_MARGIN = 60


def _iso(value):
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


# --- writing events ----------------------------------------------------------------------

def enqueue(db, values):
    """Outbox rows for the audit event ``values`` if it is a webhook event.

    ``db`` is the request's session (an ``ok`` event: the rows commit with the change) or
    the connection the audit log writes a refused or failed event on. Returns the number
    of rows written.
    """
    event = EVENTS.get(values["action"])
    if event is None or values.get("reason") in QUIET_REASONS:
        return 0
    platform = None
    if values.get("ticket_id") is not None:
        row = db.execute(select(Platform.id, Platform.name).join(
            Ticket, Ticket.platform_id == Platform.id)
            .where(Ticket.id == values["ticket_id"])).one_or_none()
        if row is None:
            return 0
        platform = row
        hooks = db.execute(select(Webhook.id).where(
            Webhook.platform_id == platform.id, Webhook.active)).scalars().all()
    elif event == "storage.low":
        # Not about one platform: every receiver once, however many platforms name it.
        first = {}
        for hook_id, url in db.execute(select(Webhook.id, Webhook.url)
                                       .where(Webhook.active).order_by(Webhook.id)):
            first.setdefault(url, hook_id)
        hooks = list(first.values())
    else:
        return 0
    if not hooks:
        return 0
    event_id = str(uuid.uuid4())
    payload = payload_of(event, event_id, values, platform.name if platform else None)
    rows = [{"webhook_id": hook_id, "event_id": event_id, "event": event, "payload": payload,
             "state": "pending", "attempts": 0, "next_attempt_at": values["time"],
             "last_error": "", "time_create": values["time"]} for hook_id in hooks]
    # The session's ORM insert marks it changed for the transaction manager.
    statement = insert(WebhookDelivery) if hasattr(db, "add") else \
        insert(WebhookDelivery.__table__)
    db.execute(statement, rows)
    return len(rows)


def payload_of(event, event_id, values, platform):
    """The JSON body of an event, from its audit event's fields."""
    detail = dict(values.get("detail") or {})
    body = {"id": event_id, "event": event, "time": _iso(values["time"]),
            "platform": platform, "ticket": values.get("ticket_number"),
            "actor": values.get("actor_name") or None}
    if event == "archive.uploaded":
        body["archive"] = {"id": values.get("archive_id"), "name": detail.get("name"),
                           "size": detail.get("size"), "sha256": detail.get("sha256"),
                           "protocol": detail.get("protocol")}
    elif event == "upload.failed":
        body.update(outcome=values.get("outcome"), reason=values.get("reason"),
                    status=detail.get("status"), detail=detail.get("message", ""),
                    client_address=values.get("client_address", ""))
    elif event == "storage.low":
        body["storage"] = {key: detail.get(key) for key in ("free", "total", "threshold")}
    return body


# --- signing -----------------------------------------------------------------------------

def signature(secret, timestamp, body):
    """Hex HMAC-SHA256 of ``"<timestamp>.<body>"`` under the webhook's secret."""
    message = str(int(timestamp)).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signed_headers(secret, timestamp, body, event, event_id):
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Collector-Event": event,
        "X-Collector-Delivery": event_id,
        SIGNATURE_HEADER: f"t={int(timestamp)},v1={signature(secret, timestamp, body)}",
    }


# --- delivering --------------------------------------------------------------------------

def backoff(attempts, base, cap):
    """Seconds before the next try after ``attempts`` failed ones: base, 2×base, 4×base …,
    at most ``cap``."""
    return min(base * 2 ** max(attempts - 1, 0), cap)


def claim(engine, worker, now, limit, lease):
    """Take up to ``limit`` due deliveries for ``worker``; no two workers get one row.

    PostgreSQL locks the candidates with ``FOR UPDATE SKIP LOCKED`` (another worker skips
    them instead of waiting); on SQLite each row is taken by an UPDATE that is conditional
    on it still being free. Either way the claim is written, with a lease, and committed
    before anything is sent: no transaction stays open during an HTTP request.
    """
    # A disabled webhook's deliveries are held, not attempted: they go on when it is
    # enabled again (their retry period still counts from the event).
    active = select(Webhook.id).where(Webhook.active).scalar_subquery()
    free = (WebhookDelivery.state == "pending", WebhookDelivery.next_attempt_at <= now,
            or_(WebhookDelivery.claimed_until.is_(None), WebhookDelivery.claimed_until < now),
            WebhookDelivery.webhook_id.in_(active))
    table = WebhookDelivery.__table__
    until = now + dt.timedelta(seconds=lease)
    candidates = (select(table.c.id).where(*free)
                  .order_by(table.c.next_attempt_at, table.c.id).limit(limit))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            ids = connection.execute(candidates.with_for_update(skip_locked=True)).scalars().all()
            if ids:
                connection.execute(update(table).where(table.c.id.in_(ids))
                                   .values(claimed_by=worker, claimed_until=until))
            return ids
        ids = connection.execute(candidates).scalars().all()
    taken = []
    for delivery_id in ids:
        with engine.begin() as connection:
            result = connection.execute(update(table).where(
                table.c.id == delivery_id, *free)
                .values(claimed_by=worker, claimed_until=until))
            if result.rowcount == 1:
                taken.append(delivery_id)
    return taken


def release(engine, worker, ids):
    """Give back ``worker``'s claims of ``ids`` (not sent): free for any worker now."""
    table = WebhookDelivery.__table__
    with engine.begin() as connection:
        connection.execute(update(table).where(table.c.id.in_(ids), table.c.claimed_by == worker)
                           .values(claimed_by=None, claimed_until=None))


def post(url, body, headers, timeout):
    """POST ``body``; ``(status, error)``: status None when no answer came."""
    parts = urllib.parse.urlsplit(url)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection = kind(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        text = response.read(2000).decode("utf-8", "replace")
        if 200 <= response.status < 300:
            return response.status, ""
        return response.status, f"HTTP {response.status} {response.reason}: {text}"[:500]
    except (OSError, http.client.HTTPException) as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500]
    finally:
        connection.close()


def deliver_pending(engine, settings, now=None, clock=None, metrics=None, limit=20,
                    worker=None, stopping=None):
    """One pass: claim due deliveries and send each once. Returns ``[(id, outcome)]``,
    outcome ``delivered``, ``retry`` or ``failed``.

    ``now`` (a datetime) or ``clock`` (a function giving one) replaces the wall clock, so
    tests can step through the backoff without sleeping. ``stopping`` (a function): once
    it says true, the pass ends after the delivery being made and gives back the claims
    it has not used, so that another worker (or the next start) sends them at once
    instead of after the lease.
    """
    clock = clock or ((lambda: now) if now is not None else utcnow)
    worker = worker or uuid.uuid4().hex
    timeout = settings["webhooks.timeout"]
    ids = claim(engine, worker, clock(), limit, timeout * 2 + CLAIM_MARGIN)
    outcomes = []
    for index, delivery_id in enumerate(ids):
        if stopping is not None and stopping():
            release(engine, worker, ids[index:])
            break
        outcome = _deliver_one(engine, settings, delivery_id, worker, clock, timeout)
        if outcome is not None:
            outcomes.append((delivery_id, outcome))
            if metrics is not None:
                metrics.webhook_attempt(outcome)
    return outcomes


def _deliver_one(engine, settings, delivery_id, worker, clock, timeout):
    table, hooks = WebhookDelivery.__table__, Webhook.__table__
    with engine.connect() as connection:
        row = connection.execute(
            select(table.c.event, table.c.event_id, table.c.payload, table.c.attempts,
                   table.c.time_create, hooks.c.url, hooks.c.secret, hooks.c.active)
            .join(hooks, hooks.c.id == table.c.webhook_id)
            .where(table.c.id == delivery_id, table.c.claimed_by == worker)).one_or_none()
    if row is None:  # deleted meanwhile, or the claim expired and another worker has it
        return None
    body = json.dumps(row.payload, separators=(",", ":"), ensure_ascii=False).encode()
    started = clock()
    headers = signed_headers(row.secret, started.timestamp(), body, row.event, row.event_id)
    began = time.monotonic()
    if row.active:
        status, error = post(row.url, body, headers, timeout)
    else:  # disabled between the claim and now
        status, error = None, "webhook disabled"
    duration = int((time.monotonic() - began) * 1000)
    ended = clock()
    attempts = row.attempts + 1
    ok = status is not None and 200 <= status < 300
    values = {"attempts": attempts, "last_status": status, "last_error": error,
              "claimed_by": None, "claimed_until": None}
    if ok:
        outcome = "delivered"
        values.update(state="delivered", delivered_at=ended)
    else:
        delay = backoff(attempts, settings["webhooks.backoff"], settings["webhooks.backoff_max"])
        next_at = ended + dt.timedelta(seconds=delay)
        deadline = row.time_create + dt.timedelta(hours=settings["webhooks.retry_hours"])
        if next_at > deadline:
            outcome = "failed"
            values["state"] = "failed"
        else:
            outcome = "retry"
            values["next_attempt_at"] = next_at
    with engine.begin() as connection:
        connection.execute(insert(WebhookAttempt.__table__).values(
            delivery_id=delivery_id, time=started, status=status, error=error,
            duration_ms=duration))
        connection.execute(update(table).where(table.c.id == delivery_id,
                                               table.c.claimed_by == worker).values(**values))
    if not ok:
        log.info("webhook delivery %s to %s: %s (%s)", delivery_id, row.url, error, outcome)
    return outcome


def pending_count(connection):
    return connection.execute(select(func.count()).select_from(WebhookDelivery.__table__)
                              .where(WebhookDelivery.__table__.c.state == "pending")
                              ).scalar_one()


# --- administration ----------------------------------------------------------------------

def check_url(url):
    url = (url or "").strip()
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 2000:
        raise BadRequest("url must be an http:// or https:// URL (at most 2000 characters)")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise BadRequest("url has an invalid port") from None
    return url


def check_secret(secret):
    secret = (secret or "").strip()
    if not secret:
        return secrets.token_urlsafe(32)
    if not 16 <= len(secret) <= 200:
        raise BadRequest("secret must be 16 to 200 characters (or empty: one is made)")
    return secret


def secret_hint(secret):
    """What the admin page shows of a secret once it has been shown in full: its last four
    characters, enough to tell two apart, only when that leaves at least 28 unknown (a
    16-character secret of the admin's own choice shows none)."""
    return "…" + secret[-4:] if len(secret) >= 32 else "…"


def list_webhooks(dbsession):
    return dbsession.scalars(select(Webhook).order_by(Webhook.id)).all()


def get_webhook(dbsession, webhook_id):
    webhook_id = as_integer(webhook_id)
    return None if webhook_id is None else dbsession.get(Webhook, webhook_id)


def create_webhook(dbsession, platform, url, secret="", active=True):
    hook = Webhook(platform_id=platform.id, url=check_url(url), secret=check_secret(secret),
                   active=active)
    dbsession.add(hook)
    dbsession.flush()
    record(dbsession, "webhook.create", detail={"webhook": hook.id, "platform": platform.name,
                                                "url": hook.url})
    return hook


def update_webhook(dbsession, hook, **fields):
    if "url" in fields:
        fields["url"] = check_url(fields["url"])
    if "secret" in fields:
        fields["secret"] = check_secret(fields["secret"])
    changed = sorted(key for key, value in fields.items() if getattr(hook, key) != value)
    for key, value in fields.items():
        setattr(hook, key, value)
    dbsession.flush()
    if changed:
        record(dbsession, "webhook.edit", detail={"webhook": hook.id, "fields": changed})
    return hook


def delete_webhook(dbsession, hook):
    record(dbsession, "webhook.delete", detail={"webhook": hook.id, "url": hook.url})
    dbsession.delete(hook)
    dbsession.flush()


def require_webhook(dbsession, webhook_id):
    hook = get_webhook(dbsession, webhook_id)
    if hook is None:
        raise NotFound(f"webhook {webhook_id} does not exist")
    return hook


def redeliver(dbsession, delivery_id):
    """Send a delivered or failed event again (the admin's "redeliver"): a new delivery of
    the same event to the same webhook, due now, with a retry period of its own. The event
    id stays the same, so a receiver that did get it once can tell."""
    delivery_id = as_integer(delivery_id, minimum=1)
    old = dbsession.get(WebhookDelivery, delivery_id) if delivery_id is not None else None
    if old is None:
        raise NotFound("that webhook delivery does not exist")
    if old.state == "pending":
        raise Conflict(f"delivery {old.id} is still pending: it is retried on its own")
    if not old.webhook.active:
        raise Conflict(f"webhook {old.webhook_id} is disabled: enable it first")
    again = WebhookDelivery(webhook_id=old.webhook_id, event_id=old.event_id,
                            event=old.event, payload=old.payload)
    dbsession.add(again)
    dbsession.flush()
    record(dbsession, "webhook.redeliver", detail={"webhook": old.webhook_id,
                                                   "delivery": again.id, "of": old.id,
                                                   "event": old.event})
    return again


def list_deliveries(dbsession, filters, limit, offset):
    """Deliveries, newest first, with their attempts; filters ``webhook``, ``state``,
    ``event``."""
    where = []
    if filters.get("webhook") is not None:
        where.append(WebhookDelivery.webhook_id == filters["webhook"])
    if filters.get("state"):
        where.append(WebhookDelivery.state == filters["state"])
    if filters.get("event"):
        where.append(WebhookDelivery.event == filters["event"])
    total = dbsession.scalar(select(func.count()).select_from(WebhookDelivery).where(*where))
    rows = dbsession.scalars(select(WebhookDelivery).where(*where)
                             .order_by(WebhookDelivery.id.desc()).limit(limit)
                             .offset(offset)).all()
    return rows, total


def delivery_json(row):
    def iso(value):
        return _iso(value) if value else None

    return {"id": row.id, "webhook": row.webhook_id, "event": row.event,
            "event_id": row.event_id, "state": row.state, "attempts": row.attempts,
            "next_attempt_at": iso(row.next_attempt_at) if row.state == "pending" else None,
            "last_status": row.last_status, "last_error": row.last_error,
            "delivered_at": iso(row.delivered_at), "time_create": iso(row.time_create),
            "payload": row.payload,
            "attempt_log": [{"time": iso(a.time), "status": a.status, "error": a.error,
                             "duration_ms": a.duration_ms} for a in row.attempt_rows]}


def webhook_json(row):
    return {"id": row.id, "platform": row.platform.name, "url": row.url, "secret": row.secret,
            "active": row.active, "time_create": _iso(row.time_create)}


# --- commands: what the API and the admin page both do -------------------------------------

def add_webhook(dbsession, platform, url, secret="", active=True):
    """A webhook for the platform named ``platform`` (404 when there is none)."""
    return create_webhook(dbsession, require_platform(dbsession, platform), url, secret,
                          active)


def change_webhook(dbsession, hook, **fields):
    """Change the given fields; ``platform`` is a platform's name."""
    if "platform" in fields:
        fields["platform_id"] = require_platform(dbsession, fields.pop("platform")).id
    hook = update_webhook(dbsession, hook, **fields)
    dbsession.refresh(hook)
    return hook
