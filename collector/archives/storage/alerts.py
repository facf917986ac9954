"""Low space: the one rule of when the archive storage is "low", and its alert.

**The rule.** Storage is *low* while its free space is below ``STORAGE_ALERT_FREE`` — a
size, or a share of the total (``10%``, the code's default; ``STORAGE_WARN_PERCENT``, the
older name, sets it as the disk use at which storage is low: 90 is 10%) — and *full* once
only ``STORAGE_RESERVE`` is left (uploads get 507). ``level`` answers it for
``/api/v1/check/storage/``, the staff pages' gauge and banner and ``/metrics``; ``check``
alerts on it. ``0`` turns "low" off everywhere.

**The alert.** Once per crossing of the threshold, whoever notices it. The state lives in
one row (``storage_alert_state``), flipped by an UPDATE conditional on its old value: of
several processes (or a restarted one) only the one whose UPDATE changed the row records
the ``storage.low`` audit event, and with it — in the same transaction, through the audit
log — the ``storage.low`` webhook events. The alert clears once free space is back above the
threshold plus ``RECOVER_MARGIN`` (so a disk hovering at the line does not alert on every
pass), recording ``storage.ok``. The check runs in the server's worker thread, in
``collector deliver`` and ``collector purge`` — never in a request.
"""

import logging

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from collector.archives.models import StorageAlertState
from collector.audit.services import record
from collector.db import utcnow
from collector.settings import Share

log = logging.getLogger(__name__)

RECOVER_MARGIN = 0.10
STATE_ID = 1


def low_threshold(settings, total):
    """The free space, in bytes, below which storage of ``total`` bytes is low; 0: never."""
    setting = settings["storage.alert_free"]
    if isinstance(setting, Share):
        return int(total * setting / 100)
    return int(setting or 0)


def is_low(usage, settings):
    """Whether the free space of ``usage`` (a backend's ``usage()``) is below the rule's
    threshold."""
    threshold = low_threshold(settings, usage["total"])
    return bool(threshold) and usage["free"] < threshold


def level(usage, settings):
    """``"full"`` when no more than the reserve is free, ``"low"`` below the threshold,
    else ``"ok"``."""
    if usage["free"] <= settings["storage.reserve"]:
        return "full"
    return "low" if is_low(usage, settings) else "ok"


def check(engine, backend, settings, now=None):
    """Compare the free space with the threshold; returns ``"low"`` or ``"ok"`` when this
    call changed the state (and recorded it), else None."""
    if not settings["storage.alert_free"]:
        return None
    usage = backend.usage()
    free, threshold = usage["free"], low_threshold(settings, usage["total"])
    if not threshold:
        return None
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
