"""Database: declarative Base, the engine, and ``request.dbsession`` joined to ``request.tm``."""

import datetime as dt
import select

import pyramid_tm
from pyramid_retry import mark_error_retryable
from sqlalchemy import DateTime, MetaData, create_engine, event, text
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator
from transaction._transaction import Status as ZopeStatus  # as zope.sqlalchemy does
from zope.sqlalchemy import mark_changed
from zope.sqlalchemy.datamanager import STATUS_ACTIVE, join_transaction

from collector.numbers import parse_int

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
    return dt.datetime.now(dt.UTC)


# Ids, numbers and counts are INTEGER columns: 32 bits on PostgreSQL, which raises
# "integer out of range" for a larger literal (SQLite overflows past 64 bits).
INTEGER_MIN, INTEGER_MAX = -(2 ** 31), 2 ** 31 - 1


def as_integer(value, minimum=INTEGER_MIN, maximum=INTEGER_MAX):
    """An id or number sent by a client as an int every backend can compare, or None
    when it is not a plain decimal integer within ``minimum..maximum``. Callers turn None
    into their 404 (a path) or 400 (a parameter)."""
    return parse_int(value, minimum, maximum)


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime")
            value = value.astimezone(dt.UTC)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
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
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    engine = create_engine(url, **kwargs)
    # A server restart (or a killed backend) must not cost a failed request per pooled
    # connection. ``pool_pre_ping`` would ask the server at every checkout: one round trip
    # more per short transaction (token checks: ~640 req/s against ~1,000 without on
    # PostgreSQL). Instead, a connection the server already closed is recognised at
    # checkout without asking, and a disconnect met later retries the request once.
    event.listen(engine, "checkout", _refuse_closed_connection)
    event.listen(engine, "handle_error", _retry_after_disconnect)
    return engine


def server_closed(dbapi_connection):
    """Whether an idle pooled connection has something to read: a server that ends a
    session (restart, ``pg_terminate_backend``, an idle timeout) sends its FATAL message
    and closes the socket, while an idle session otherwise receives nothing. Costs one
    ``poll`` of the socket, no round trip."""
    try:
        fileno = dbapi_connection.fileno()
    except Exception:  # the driver's connection is closed already
        return True
    poller = select.poll()
    poller.register(fileno, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))


def _refuse_closed_connection(dbapi_connection, _record, _proxy):
    # The pool discards this connection and checks out another one (a new one if need be).
    if server_closed(dbapi_connection):
        raise DisconnectionError("the server closed this pooled connection")


def _retry_after_disconnect(context):
    """A disconnect on an established connection (the server went away between the
    checkout and a statement): SQLAlchemy invalidates the pool's older connections, and
    marking the error retryable lets pyramid_retry run the request again on a new one
    (``retry_attempts``: never a request that carries an upload). A failure to connect at
    all is not retried: the database is down, the error view answers 503. Nor is a
    disconnect during a COMMIT (no statement): the server may have committed before the
    answer was lost, and running the request again could do its work twice."""
    if (context.is_disconnect and context.connection is not None
            and context.statement is not None and not context.is_pre_ping):
        mark_error_retryable(context.sqlalchemy_exception)


_PING = text("SELECT 1")


def reachable(engine):
    """Whether the database answers ``SELECT 1`` on a pooled connection of its own (no
    session, no transaction to join): the health check and /readyz."""
    try:
        with engine.connect() as connection:
            connection.execute(_PING)
        return True
    except Exception:  # any failure to talk to the database means "down"
        return False


class TmSession(Session):
    """A request's session: joins the transaction manager kept in ``info["tm"]``.

    ``zope.sqlalchemy.register(session)`` attaches seven event listeners to each new
    session, which costs more than a simple query (measured: ~0.15 ms a request). The same
    listeners registered once on this class read the request's manager from the session.
    """


def _tm(session):
    return session.info["tm"]


@event.listens_for(TmSession, "after_begin")
def _after_begin(session, transaction, connection):
    join_transaction(session, STATUS_ACTIVE, _tm(session))


@event.listens_for(TmSession, "after_attach")
def _after_attach(session, instance):
    join_transaction(session, STATUS_ACTIVE, _tm(session))


@event.listens_for(TmSession, "after_flush")
def _after_flush(session, flush_context):
    mark_changed(session, _tm(session))


@event.listens_for(TmSession, "after_bulk_update")
@event.listens_for(TmSession, "after_bulk_delete")
def _after_bulk(context):
    mark_changed(context.session, _tm(context.session))


@event.listens_for(TmSession, "do_orm_execute")
def _do_orm_execute(state):
    if state.is_orm_statement and (state.is_update or state.is_insert or state.is_delete):
        mark_changed(state.session, _tm(state.session))


@event.listens_for(TmSession, "before_commit")
def _before_commit(session):
    # Only the transaction manager commits a request's session.
    assert (session.in_nested_transaction()
            or _tm(session).get().status == ZopeStatus.COMMITTING), \
        "commit through the transaction manager"


def get_tm_session(session_factory, transaction_manager):
    return session_factory(info={"tm": transaction_manager})


# Bodies above this are never retried: pyramid_retry would copy them to make them seekable.
RETRY_BODY_LIMIT = 64 * 1024


def retry_attempts(request):
    """pyramid_retry's activate hook: one attempt for uploads, the default otherwise."""
    length = request.content_length or 0
    # tus requests (/api/v1/uploads/) append to a file: never run one twice.
    if (length > RETRY_BODY_LIMIT or "Upload-Token" in request.headers
            or request.path_info.startswith("/api/v1/uploads")):
        return 1
    return None


def _close(session):
    session.info.pop("request", None)
    session.close()


def includeme(config):
    settings = config.get_settings()
    settings["tm.manager_hook"] = pyramid_tm.explicit_manager
    # pyramid_tm would ask who is calling (a token lookup in the database) to label the
    # transaction, above the exception views: with the database down that error escaped
    # as waitress's plain-text 500 instead of our JSON 503. Nothing reads the label.
    settings["tm.annotate_user"] = False
    settings["retry.activate_hook"] = retry_attempts
    config.include("pyramid_tm")
    config.include("pyramid_retry")

    # One pooled connection per waitress thread (and a spare), so none is opened per request.
    # A request may hold a second connection for a moment (the throttles and the audit
    # log write in transactions of their own): room for two per thread.
    threads = settings["waitress.threads"]
    engine = settings.get("collector.engine") or make_engine(
        settings["db_url"], pool_size=threads + 2, max_overflow=max(20, threads + 2))
    session_factory = sessionmaker(bind=engine, class_=TmSession, expire_on_commit=False)
    config.registry["dbsession_factory"] = session_factory
    config.registry["db_engine"] = engine

    def dbsession(request):
        # Tests may hand in their own session through the environ.
        session = request.environ.get("app.dbsession")
        if session is None:
            session = get_tm_session(session_factory, request.tm)
            # Who and from where, for the audit events that services record.
            session.info["request"] = request
            request.add_finished_callback(lambda _request: _close(session))
        return session

    config.add_request_method(dbsession, reify=True)
