"""PostgreSQL sessions ended by the server between or during requests (a restart, an
idle timeout, ``pg_terminate_backend``): the client never sees an error.

The pool does not ping the server at every checkout (collector/db.py): a pooled
connection the server closed is recognised at checkout by its socket, and a disconnect
met after the checkout retries the request once. Both are shown here with real
backends killed by the server, on the test's own database only.
"""

import time

import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.pool import NullPool

from collector.db import server_closed

pytestmark = [pytest.mark.commits]

@pytest.fixture
def killer(engine, db_backend):
    """``kill(pid=None)``: end the given backend, or every backend the app's pool has
    handed out so far (not the other tests' connections to this database), from a
    connection outside that pool; returns how many were ended."""
    if db_backend != "postgresql":
        pytest.skip("sessions ended by the server: PostgreSQL only")
    outside = create_engine(engine.url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    pooled = set()

    def seen(dbapi_connection, _record, _proxy):
        pooled.add(dbapi_connection.info.backend_pid)

    event.listen(engine, "checkout", seen)

    def kill(pid=None):
        pids = list(pooled) if pid is None else [pid]
        with outside.connect() as connection:
            return sum(connection.execute(text("SELECT pg_terminate_backend(pid) FROM "
                                               "unnest(CAST(:pids AS int[])) AS pid"),
                                          {"pids": pids}).scalars())

    yield kill
    event.remove(engine, "checkout", seen)
    outside.dispose()


def requests_succeed(testapp, staff, ticket, name):
    state = testapp.get(f"/api/v1/check/token/{ticket.token}", status=200).json
    assert state["valid"] is True and state["ticket"] == ticket.number
    listed = testapp.get("/api/v1/tickets/", headers=staff.headers, status=200).json
    assert ticket.number in [row["number"] for row in listed]
    stored = testapp.post("/api/v1/archives/", upload_files=[("file", name, b"log line\n")],
                          headers={"Upload-Token": ticket.token}, status=201).json
    assert stored["name"] == name and stored["size"] == 9
    page = testapp.get(f"/api/v1/archives/{stored['id']}/download", headers=staff.headers,
                       status=200)
    assert page.body == b"log line\n"


def test_backends_killed_between_requests_cost_no_error(testapp, engine, factory, staff,
                                                        killer):
    ticket = factory.ticket(factory.platform())
    factory.session.close()
    requests_succeed(testapp, staff, ticket, "before.log")
    assert engine.pool.checkedin() >= 1
    assert killer() >= 1
    requests_succeed(testapp, staff, ticket, "after.log")
    # Twice in a row, the new connections being the ones ended this time.
    assert killer() >= 1
    requests_succeed(testapp, staff, ticket, "again.log")


def test_a_closed_pooled_connection_is_seen_without_a_round_trip(engine, killer):
    with engine.connect() as connection:
        pid = connection.execute(text("SELECT pg_backend_pid()")).scalar()
        dbapi_connection = connection.connection.dbapi_connection
        assert not server_closed(dbapi_connection)
    assert killer(pid) == 1
    # The server's FATAL message and end of stream arrive without being asked for.
    for _ in range(200):
        if server_closed(dbapi_connection):
            break
        time.sleep(0.01)
    assert server_closed(dbapi_connection)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT pg_backend_pid()")).scalar() != pid


def test_a_backend_killed_after_the_checkout_is_retried(testapp, engine, factory, staff,
                                                        killer):
    """The server ends the session just after the pool handed the connection out (the
    socket looked fine): the statement fails with a disconnect, and the request is run
    again on a new connection, once."""
    ticket = factory.ticket(factory.platform())
    factory.session.close()
    killed = []

    def end_it_now(dbapi_connection, _record, _proxy):
        if killed:
            return
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            pid = cursor.fetchone()[0]
        killed.append(killer(pid))

    event.listen(engine, "checkout", end_it_now)
    try:
        state = testapp.get(f"/api/v1/check/token/{ticket.token}", status=200).json
        assert state["valid"] is True
        assert killed == [1]
        killed.clear()
        listed = testapp.get("/api/v1/tickets/", headers=staff.headers, status=200).json
        assert killed == [1]
        assert ticket.number in [row["number"] for row in listed]
    finally:
        event.remove(engine, "checkout", end_it_now)
