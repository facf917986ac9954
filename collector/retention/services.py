"""Retention rules, applied by ``collector purge``.

Two rules, each a number of days (0: off), set for the server (``RETENTION_RESOLVED_DAYS``,
``RETENTION_MAX_DAYS``) and overridable per platform (``None`` there follows the server,
0 keeps forever):

- ``resolved``: an archive goes this many days after its ticket was resolved;
- ``max_age``: an archive goes this many days after it was uploaded, whatever its ticket.

A ticket under legal hold is exempt from both. Deleting is the same as a member of staff
deleting: one ``archive.delete`` audit event per archive (reason ``retention``, the rule
in its detail), the rows first, the files after the commit — a row never points to a
missing file; a crash in between leaves orphans, which the next purge removes.
"""

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import false, or_, select, true

from collector.archives.models import Archive
from collector.audit.services import record
from collector.tickets.models import Platform, Ticket


@dataclass
class Due:
    archive: Archive
    ticket: Ticket
    rule: str  # "resolved" or "max_age"
    days: int


def _pick(override, default):
    return default if override is None else override


def rules_of(platform, settings):
    """``(resolved days, max age days)`` of a platform: its overrides or the server's."""
    return (_pick(platform.retention_resolved_days, settings["retention.resolved_days"]),
            _pick(platform.retention_max_days, settings["retention.max_days"]))


def due_archives(dbsession, settings, now):
    """Every archive a rule deletes at ``now``, oldest first; held tickets are skipped."""
    found = []
    for platform in dbsession.scalars(select(Platform).order_by(Platform.id)):
        resolved_days, max_days = rules_of(platform, settings)
        clauses = []
        if resolved_days:
            clauses.append((Ticket.resolved == true())
                           & (Ticket.resolved_at <= now - dt.timedelta(days=resolved_days)))
        if max_days:
            clauses.append(Archive.time_create <= now - dt.timedelta(days=max_days))
        if not clauses:
            continue
        rows = dbsession.execute(
            select(Archive, Ticket).join(Ticket, Ticket.id == Archive.ticket_id)
            .where(Ticket.platform_id == platform.id, Ticket.legal_hold == false(),
                   or_(*clauses)).order_by(Archive.time_create, Archive.id)).all()
        for archive, ticket in rows:
            if max_days and archive.time_create <= now - dt.timedelta(days=max_days):
                found.append(Due(archive, ticket, "max_age", max_days))
            else:
                found.append(Due(archive, ticket, "resolved", resolved_days))
    return found


def describe(due):
    why = (f"older than {due.days} day(s)" if due.rule == "max_age"
           else f"{due.days} day(s) after ticket {due.ticket.number} was resolved")
    return (f"archive {due.archive.id} of ticket {due.ticket.number} "
            f"({due.archive.name}, {due.archive.size} bytes): {why}")


def apply(dbsession, storage, settings, now, dry_run=False):
    """Delete what is due (or only list it); returns the list of ``Due``.

    ``dbsession`` is a plain dbsession (``expire_on_commit=False``: the returned rows are
    read after the commit) with no transaction open; ``storage`` a
    ``LocalArchiveStorage`` whose files are removed after the commit.
    """
    with dbsession.begin():
        due = due_archives(dbsession, settings, now)
        if dry_run or not due:
            return due
        for item in due:
            record(dbsession, "archive.delete", ticket=item.ticket, archive=item.archive,
                   reason="retention",
                   detail={"rule": item.rule, "days": item.days, "size": item.archive.size,
                           "sha256": item.archive.sha256, "name": item.archive.name})
            dbsession.delete(item.archive)
        keys = [item.archive.storage_key for item in due]
    for key in keys:
        storage.delete(key)
    return due
