"""Reading an installation of the original logs-collector (Django), read-only.

Only SQLAlchemy Core, with the tables declared here (the columns the importer reads, not
reflected): a database whose tables lack any of them is refused with the list of what is
missing, before anything is imported. SQLite files are opened with ``mode=ro`` (and never
through ``collector.db.make_engine``, whose pragmas would switch the file to WAL);
PostgreSQL sessions are ``default_transaction_read_only``.
"""

import datetime as dt
import urllib.parse
from pathlib import Path

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    inspect,
    select,
)
from sqlalchemy.exc import SQLAlchemyError

from collector.settings import as_db_url


class SourceError(Exception):
    """The old installation cannot be read as a whole: nothing is imported."""


_meta = MetaData()

USERS = Table(
    "account_user", _meta,
    Column("id", BigInteger), Column("password", String), Column("last_login", DateTime),
    Column("is_superuser", Boolean), Column("username", String), Column("email", String),
    Column("is_staff", Boolean), Column("is_active", Boolean),
    Column("date_joined", DateTime))

PLATFORMS = Table(
    "collector_platform", _meta,
    Column("id", BigInteger), Column("name", String), Column("pretty_name", String))

TICKETS = Table(
    "collector_ticket", _meta,
    Column("id", BigInteger), Column("number", BigInteger), Column("resolved", Boolean),
    Column("note", Text), Column("token", String), Column("attempts", Integer),
    Column("time_create", DateTime), Column("time_update", DateTime),
    Column("platform_name", String), Column("user_id", BigInteger))

ARCHIVES = Table(
    "collector_archive", _meta,
    Column("id", BigInteger), Column("file", String), Column("size", BigInteger),
    Column("md5", String), Column("time_create", DateTime), Column("time_update", DateTime),
    Column("ticket_number", BigInteger))

# django_otp's TOTP devices; an installation without django_otp simply has none.
TOTP_DEVICES = Table(
    "otp_totp_totpdevice", _meta,
    Column("id", BigInteger), Column("name", String), Column("confirmed", Boolean),
    Column("key", String), Column("step", Integer), Column("t0", BigInteger),
    Column("digits", Integer), Column("last_t", BigInteger), Column("user_id", BigInteger))

# django_otp's backup codes: a static device per user, its single-use tokens (kept in
# clear by django_otp); they become our recovery codes (only their sha256 is kept here).
STATIC_DEVICES = Table(
    "otp_static_staticdevice", _meta,
    Column("id", BigInteger), Column("confirmed", Boolean), Column("user_id", BigInteger))
STATIC_TOKENS = Table(
    "otp_static_statictoken", _meta,
    Column("id", BigInteger), Column("token", String), Column("device_id", BigInteger))

REQUIRED = (USERS, PLATFORMS, TICKETS, ARCHIVES)
OPTIONAL = (TOTP_DEVICES, STATIC_DEVICES, STATIC_TOKENS)


def source_url(value):
    """An SQLAlchemy URL for ``--db``: a SQLite file path, ``sqlite:///path`` or a
    PostgreSQL URL (``postgresql://``, ``postgres://``, the original's ``psql://``)."""
    value = str(value).strip()
    if value.startswith(("postgresql", "postgres://", "psql://")):
        return as_db_url(value)
    if value.startswith("sqlite:///"):
        value = value[len("sqlite:///"):]
    elif "://" in value:
        # The scheme only: the rest of a URL may hold a password.
        raise SourceError(f"--db: not a SQLite file or PostgreSQL URL: "
                          f"{value.partition('://')[0]}://…")
    path = Path(value).expanduser().resolve()
    if not path.is_file():
        raise SourceError(f"--db: no SQLite database file at {path}")
    # mode=ro: SQLite opens the file read-only (no journal, no WAL switch, no -shm).
    return f"sqlite:///file:{urllib.parse.quote(str(path))}?mode=ro&uri=true"


def _first_line(exc):
    """The driver's message, first line (psycopg adds a hint on the next): one line."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


def open_source(value):
    """A read-only engine on the old database, its tables checked; raises SourceError."""
    url = source_url(value)
    if url.startswith("sqlite"):
        engine = create_engine(url)
    else:
        engine = create_engine(url, connect_args={
            "options": "-c default_transaction_read_only=on"})
    try:
        check_tables(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


def check_tables(engine):
    """Every table the importer reads has the columns it reads; else a SourceError that
    names each missing table and column."""
    try:
        inspector = inspect(engine)
        present = set(inspector.get_table_names())
        missing = []
        for table in REQUIRED + OPTIONAL:
            if table.name not in present:
                if table in REQUIRED:
                    missing.append(f"table {table.name}")
                continue
            columns = {column["name"] for column in inspector.get_columns(table.name)}
            lacking = [c.name for c in table.columns if c.name not in columns]
            if lacking:
                missing.append(f"{table.name}: column(s) {', '.join(lacking)}")
    except SQLAlchemyError as exc:
        raise SourceError(f"cannot read the old database: {exc.__class__.__name__}: "
                          f"{_first_line(exc)}") from None
    if missing:
        raise SourceError("this does not look like a logs-collector database (missing "
                          + "; ".join(missing) + ")")
    return present


def _utc(value):
    """Django keeps naive UTC (SQLite) or aware times (PostgreSQL): aware UTC either way."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


class Source:
    """The rows of the old installation, as plain dicts, in a stable order."""

    def __init__(self, engine):
        self.engine = engine
        self.tables = check_tables(engine)

    def _rows(self, query):
        try:
            with self.engine.connect() as connection:
                return [dict(row._mapping) for row in connection.execute(query)]
        except SQLAlchemyError as exc:
            raise SourceError(f"cannot read the old database: {_first_line(exc)}") \
                from None

    def users(self):
        rows = self._rows(select(USERS).order_by(USERS.c.id))
        for row in rows:
            row["last_login"] = _utc(row["last_login"])
            row["date_joined"] = _utc(row["date_joined"])
        return rows

    def totp_devices(self):
        """Confirmed TOTP devices by old user id; the one named ``default`` (the device
        django-two-factor-auth asks for) first."""
        if TOTP_DEVICES.name not in self.tables:
            return {}
        devices = {}
        query = select(TOTP_DEVICES).where(TOTP_DEVICES.c.confirmed.is_(True)).order_by(
            (TOTP_DEVICES.c.name != "default"), TOTP_DEVICES.c.id)
        for row in self._rows(query):
            devices.setdefault(row["user_id"], row)
        return devices

    def backup_codes(self):
        """The unused backup codes of confirmed static devices, by old user id."""
        if not {STATIC_DEVICES.name, STATIC_TOKENS.name} <= self.tables:
            return {}
        query = (select(STATIC_DEVICES.c.user_id, STATIC_TOKENS.c.token)
                 .join(STATIC_DEVICES, STATIC_TOKENS.c.device_id == STATIC_DEVICES.c.id)
                 .where(STATIC_DEVICES.c.confirmed.is_(True))
                 .order_by(STATIC_TOKENS.c.id))
        codes = {}
        for row in self._rows(query):
            codes.setdefault(row["user_id"], []).append(row["token"])
        return codes

    def platforms(self):
        return self._rows(select(PLATFORMS).order_by(PLATFORMS.c.id))

    def tickets(self):
        rows = self._rows(select(TICKETS).order_by(TICKETS.c.id))
        for row in rows:
            row["time_create"] = _utc(row["time_create"])
            row["time_update"] = _utc(row["time_update"])
        return rows

    def archives(self):
        rows = self._rows(select(ARCHIVES).order_by(ARCHIVES.c.id))
        for row in rows:
            row["time_create"] = _utc(row["time_create"])
            row["time_update"] = _utc(row["time_update"])
        return rows
