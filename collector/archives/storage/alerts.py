"""Low-space alerts: once per crossing of ``STORAGE_ALERT_FREE``, whoever notices it.

The state lives in one row (``storage_alert_state``), flipped by an UPDATE conditional on
its old value: of several processes (or a restarted one) only the one whose UPDATE
changed the row records the ``storage.low`` audit event, and with it — in the same
transaction, through the audit log — the ``storage.low`` webhook events. The alert clears
once free space is back above the threshold plus ``RECOVER_MARGIN`` (so a disk hovering
at the line does not alert on every pass), recording ``storage.ok``. The check runs in the
server's worker thread, in ``collector deliver`` and ``collector purge`` — never in a
request. The banner of the staff pages compares the free space the page reads anyway.
"""

import logging

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from collector.archives.models import StorageAlertState
from collector.db import utcnow

log = logging.getLogger(__name__)

RECOVER_MARGIN = 0.10
STATE_ID = 1


def is_low(free, settings):
    threshold = settings["storage.alert_free"]
    return bool(threshold) and free < threshold


def check(engine, backend, settings, now=None):
    """Compare the free space with the threshold; returns ``"low"`` or ``"ok"`` when this
    call changed the state (and recorded it), else None."""
    threshold = settings["storage.alert_free"]
    if not threshold:
        return None
    usage = backend.usage()
    free = usage["free"]
    if free < threshold:
        before, after, action = False, True, "storage.low"
    elif free >= threshold * (1 + RECOVER_MARGIN):
        before, after, action = True, False, "storage.ok"
    else:
        return None
    table = StorageAlertState.__table__
    with engine.connect() as connection:
        current = connection.execute(
            select(table.c.low).where(table.c.id == STATE_ID)).scalar_one_or_none()
    if current is None:
        _make_row(engine)
    elif current == after:
        return None  # already announced: a read, no write, on every quiet pass
    from collector.audit.services import record

    with Session(engine) as session, session.begin():
        result = session.execute(
            update(table).where(table.c.id == STATE_ID, table.c.low == before)
            .values(low=after, free=free, changed_at=now or utcnow()))
        if result.rowcount != 1:
            return None  # another process saw it first
        record(session, action, detail={"free": free, "total": usage["total"],
                                        "threshold": threshold})
    log.warning("storage: %s free, threshold %s: %s", free, threshold, action)
    return "low" if after else "ok"


def _make_row(engine):
    """The state row (the migration inserts it; a wiped table gets it back)."""
    table = StorageAlertState.__table__
    try:
        with engine.begin() as connection:
            connection.execute(insert(table).values(id=STATE_ID, low=False, free=0))
    except IntegrityError:  # another process made it first
        pass
