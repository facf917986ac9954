"""Throttles against guessing (passwords, one-time codes, setup codes, upload tokens),
counted in the database so they hold across threads and instances — and race-free.

Counting the failures first and judging the request afterwards lets parallel requests
through: each one counts the same few failures before any of them is written (measured
before this module: 11 of 60 parallel wrong passwords were judged against a limit of 5).
Here a request takes a *slot* before it is judged, with one conditional UPDATE
(``count < limit``) on its key's row. PostgreSQL locks the row and re-checks the condition
for a concurrent UPDATE, SQLite has a single writer: at most ``limit`` slots are taken per
window, however many requests arrive at once. A request that turns out fine gives its slot
back; every other outcome — a wrong answer, an error, a crash — leaves it counted.

Windows are fixed: a key's window starts at its first slot and lasts ``WINDOW``; the first
slot taken after that starts a new one. Rows of ended windows are deleted as new keys come.
"""

import datetime as dt

from sqlalchemy import bindparam, case, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from collector.accounts.models import ThrottleCounter as T
from collector.db import UTCDateTime

WINDOW = dt.timedelta(minutes=15)


def engine_of(db):
    """The engine behind a session or a connection, for a transaction of our own."""
    bind = db.get_bind() if hasattr(db, "get_bind") else db
    return getattr(bind, "engine", bind)


# Built once: the token check runs them on every request, and building a statement costs
# more than running it (measured: 3.4 ms of a 5 ms token check built per call).
_NOW = bindparam("now", type_=UTCDateTime)
_SINCE = bindparam("since", type_=UTCDateTime)
_ENDED = T.window_start <= _SINCE
_COUNT_ONE = dict(count=case((_ENDED, 1), else_=T.count + 1),
                  window_start=case((_ENDED, _NOW), else_=T.window_start))
_CLAIM = (update(T).where(T.key == bindparam("k"),
                          or_(_ENDED, T.count < bindparam("limit")))
          .values(**_COUNT_ONE))
_COUNT = update(T).where(T.key == bindparam("k")).values(**_COUNT_ONE)
_INSERT = {
    name: (dialect.insert(T).values(key=bindparam("k"), window_start=_NOW, count=1)
           .on_conflict_do_nothing(index_elements=["key"]).returning(T.key))
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))}
_FORGET = delete(T).where(_ENDED)
_GIVE_BACK = (update(T).where(T.key.in_(bindparam("keys", expanding=True)), T.count > 0,
                              T.window_start > _SINCE)
              .values(count=T.count - 1).execution_options(synchronize_session=False))
_USED = select(T.count, T.window_start).where(T.key == bindparam("k"))
_START = select(T.window_start).where(T.key == bindparam("k"))


def no_flush_wait(connection):
    """Let the caller's transaction commit without waiting for PostgreSQL to flush its WAL
    to disk (``synchronous_commit`` off for this transaction only; SQLite: nothing to do).

    For the counters of a check asked on every request from one address (the upload-token
    check): each transaction updates the address's one row, which stays locked until the
    commit returns, so with a flush per commit those checks ran one disk flush at a time
    (~220 req/s on a busy disk). A crash of the database may forget the counts of its last
    fraction of a second; the rows stay consistent, and a guesser cannot crash it at will."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")


def _claim(connection, key, limit, now, window):
    params = {"k": key, "now": now, "since": now - window}
    if limit is None:
        return connection.execute(_COUNT, params).rowcount == 1
    return connection.execute(_CLAIM, {**params, "limit": limit}).rowcount == 1


def _insert_first(connection, key, now, window):
    """The key's row with its first slot; False when another request made it meanwhile."""
    # RETURNING, not rowcount: psycopg reports -1 for an INSERT … ON CONFLICT.
    statement = _INSERT[connection.dialect.name]
    if connection.execute(statement, {"k": key, "now": now}).first() is not None:
        # A new key: a good moment to forget the rows of ended windows.
        connection.execute(_FORGET, {"since": now - window})
        return True
    return False


def take(connection, key, limit, now, window=WINDOW):
    """Take one slot of ``key`` in the caller's transaction: None when taken, else the
    seconds until the key's window ends. ``limit`` None counts without a bound."""
    if _claim(connection, key, limit, now, window) or _insert_first(connection, key, now,
                                                                    window):
        return None
    # Made by a concurrent request between the UPDATE and the INSERT: judge it again.
    if _claim(connection, key, limit, now, window):
        return None
    start = connection.execute(_START, {"k": key}).scalar_one()
    return max(1, int((start + window - now).total_seconds()))


def give_back(db, keys, now, window=WINDOW):
    """Return the slots of a request that turned out fine (``db``: session or connection)."""
    db.execute(_GIVE_BACK, {"keys": list(keys), "since": now - window})


def full(db, key, limit, now, window=WINDOW):
    """Without taking a slot: None while ``key`` has slots left in its window, else the
    seconds until the window ends (a read, no row lock)."""
    row = db.execute(_USED, {"k": key}).one_or_none()
    if row is None or row.window_start <= now - window or row.count < limit:
        return None
    return max(1, int((row.window_start + window - now).total_seconds()))


def used(db, key, now, window=WINDOW):
    """Slots of ``key`` taken in its current window."""
    row = db.execute(_USED, {"k": key}).one_or_none()
    return row.count if row is not None and row.window_start > now - window else 0


def full_keys(db, prefix, limit, now, window=WINDOW):
    """``(key, count, window end)`` of every key under ``prefix`` at or over ``limit``."""
    rows = db.execute(select(T.key, T.count, T.window_start).where(
        T.key.startswith(prefix, autoescape=True), T.count >= limit,
        T.window_start > now - window).order_by(T.key))
    return [(row.key, row.count, row.window_start + window) for row in rows]
