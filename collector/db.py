"""Database: declarative Base, the engine, and ``request.dbsession`` joined to ``request.tm``."""

import datetime as dt

import pyramid_tm
import zope.sqlalchemy
from sqlalchemy import DateTime, MetaData, create_engine, event
from sqlalchemy.orm import DeclarativeBase, sessionmaker
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow():
    return dt.datetime.now(dt.timezone.utc)


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime")
            value = value.astimezone(dt.timezone.utc)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value


def make_engine(url, **kwargs):
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {"timeout": 30, "check_same_thread": False})
        engine = create_engine(url, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            # WAL lets readers run beside the one writer; foreign keys are off by default.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    # A server restart must not cost a failed request per pooled connection.
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    return create_engine(url, **kwargs)


def get_tm_session(session_factory, transaction_manager):
    session = session_factory()
    zope.sqlalchemy.register(session, transaction_manager=transaction_manager)
    return session


# Bodies above this are never retried: pyramid_retry would copy them to make them seekable.
RETRY_BODY_LIMIT = 64 * 1024


def retry_attempts(request):
    """pyramid_retry's activate hook: one attempt for uploads, the default otherwise."""
    length = request.content_length or 0
    if length > RETRY_BODY_LIMIT or "Upload-Token" in request.headers:
        return 1
    return None


def includeme(config):
    settings = config.get_settings()
    settings["tm.manager_hook"] = pyramid_tm.explicit_manager
    settings["retry.activate_hook"] = retry_attempts
    config.include("pyramid_tm")
    config.include("pyramid_retry")

    # One pooled connection per waitress thread (and a spare), so none is opened per request.
    engine = settings.get("collector.engine") or make_engine(
        settings["db_url"], pool_size=settings["waitress.threads"] + 2)
    session_factory = sessionmaker(bind=engine, expire_on_commit=False)
    config.registry["dbsession_factory"] = session_factory
    config.registry["db_engine"] = engine

    def dbsession(request):
        # Tests may hand in their own session through the environ.
        session = request.environ.get("app.dbsession")
        if session is None:
            session = get_tm_session(session_factory, request.tm)
            request.add_finished_callback(lambda _request: session.close())
        return session

    config.add_request_method(dbsession, reify=True)
