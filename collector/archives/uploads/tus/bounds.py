"""What a ticket may hold unfinished, and for how long.

What a ticket holds unfinished is bounded (``UPLOAD_UNFINISHED_MAX`` uploads,
``UPLOAD_UNFINISHED_MAX_BYTES`` bytes; ``check_room``): partial uploads spend no attempt,
so without it one token could fill the disk with them, unseen by staff. The count is taken
under the ticket's row (``lock_ticket``), so parallel requests, on any instance, are
counted one after another.
"""

import datetime as dt

from sqlalchemy import false, func, select, update

from collector.archives.models import TusUpload
from collector.db import utcnow
from collector.errors import Conflict, Locked, PayloadTooLarge
from collector.tickets import services as tickets
from collector.tickets.models import Ticket

# Uploads whose bytes are kept for a ticket outside its archives: plain ones not yet an
# archive, and partial ones, finished or not, until a final upload joins them.
HOLDING = TusUpload.finished_at.is_(None) | (TusUpload.concat == "partial")


def expiry(settings, ticket, now=None):
    """An unfinished upload may rest TUS_EXPIRY_DAYS after its last chunk, never past the
    token's own expiry."""
    rest = dt.timedelta(days=settings["upload.tus_expiry_days"])
    return min((now or utcnow()) + rest, ticket.expires_at)


def is_expired(upload, now=None):
    return upload.expires_at <= (now or utcnow())


def lock_ticket(dbsession, ticket, attempt):
    """Take the ticket's row until the transaction ends, if it can still take uploads
    (423 otherwise); with ``attempt``, spend one of its attempts in the same UPDATE.

    PostgreSQL: the UPDATE's row lock makes a parallel request on the same ticket wait
    for this one's commit, and its next statement then sees this one's rows (READ
    COMMITTED). SQLite: the UPDATE takes the database's write lock, the same effect.
    """
    if attempt:
        tickets.consume_attempt(dbsession, ticket)
        return
    now = utcnow()
    taken = dbsession.execute(
        update(Ticket)
        .where(Ticket.id == ticket.id, Ticket.resolved == false(), Ticket.expires_at > now)
        .values(time_update=Ticket.time_update)
        .execution_options(synchronize_session=False)).rowcount
    if taken != 1:
        dbsession.refresh(ticket)
        raise Locked(tickets.token_refusal(ticket, now, need_attempt=False)
                     or "upload token can no longer be used")


def held_by(dbsession, ticket_id, except_id=None):
    """(uploads, bytes) a ticket holds unfinished: each upload's Upload-Length, or for
    one whose length is deferred, the bytes it has received."""
    query = select(func.count(), func.coalesce(func.sum(
        func.coalesce(TusUpload.length, TusUpload.offset)), 0)).where(
        TusUpload.ticket_id == ticket_id, HOLDING)
    if except_id is not None:
        query = query.where(TusUpload.id != except_id)
    count, size = dbsession.execute(query).one()
    return count, int(size)


def check_room(dbsession, settings, ticket_id, *, new, size, except_id=None):
    """409 when ``new`` more uploads, 413 when ``size`` more bytes, would take the
    ticket past its bounds. The caller holds the ticket's row (``lock_ticket``)."""
    most, most_bytes = settings["upload.unfinished_max"], settings["upload.unfinished_max_bytes"]
    count, held = held_by(dbsession, ticket_id, except_id)
    if new and count + new > most:
        raise Conflict(f"this ticket already holds {count} unfinished uploads, the most "
                       f"allowed ({most}); finish, join or terminate one first")
    if held + size > most_bytes:
        raise PayloadTooLarge(
            f"this ticket's unfinished uploads would hold {held + size} bytes, more than "
            f"the {most_bytes} allowed per ticket ({held} already); finish, join or "
            "terminate one first")
