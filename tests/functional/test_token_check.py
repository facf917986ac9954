"""GET /api/v1/check/token/{token}: the uploads a token can still finish (``resumable``).

The upload page reads them after a reload: an upload that holds the ticket's last attempt
is not a reason to call the token used up. Only the token's own ticket is ever listed, and
an unknown token's answer is the same as it was before the list existed.
"""

import base64
import datetime as dt
from urllib.parse import quote

import pytest
from sqlalchemy import update

from collector.archives.models import TusUpload
from collector.tickets.models import Ticket

V = {"Tus-Resumable": "1.0.0"}
CHUNK = {"Content-Type": "application/offset+octet-stream"}
UNKNOWN = {"detail": "upload token is not valid"}


def b64(text):
    return base64.b64encode(text.encode()).decode()


def start(testapp, token, name, length, sent=0, **headers):
    """A tus upload of ``length`` bytes with ``sent`` of them stored; its URL."""
    if length is not None:
        headers["Upload-Length"] = str(length)
    created = testapp.post("/api/v1/uploads/", b"", status=201, headers={
        **V, "Upload-Token": token, "Upload-Metadata": f"filename {b64(name)}", **headers})
    if sent:
        testapp.patch(created.location, b"x" * sent, status=204, headers={
            **V, **CHUNK, "Upload-Token": token, "Upload-Offset": "0"})
    return created.location


def check(testapp, token, status=200):
    return testapp.get(f"/api/v1/check/token/{token}", status=status).json


def test_an_unfinished_upload_is_listed_with_what_the_server_has(testapp, factory):
    ticket = factory.ticket(factory.platform("vm6"), 41, attempts=3)
    start(testapp, ticket.token, "big300.bin", 1000, sent=410)
    state = check(testapp, ticket.token)
    (upload,) = state["resumable"]
    assert {key: upload[key] for key in ("name", "size", "received")} == {
        "name": "big300.bin", "size": 1000, "received": 410}
    expires = dt.datetime.fromisoformat(upload["expires_at"])
    assert dt.datetime.now(dt.UTC) < expires <= dt.datetime.fromisoformat(state["expires_at"])
    # The list comes last: a client that reads the first "expires_at" (uploader.sh) still
    # reads the token's.
    text = testapp.get(f"/api/v1/check/token/{ticket.token}").text
    assert text.index('"expires_at"') < text.index('"resumable"')
    # The fields of before are untouched: a new upload is still possible.
    assert (state["valid"], state["attempts"], state["reason"]) == (True, 2, None)
    assert state["detail"] == "token is valid" and state["token"] == ticket.token


def test_the_last_attempt_held_by_an_upload_is_listed_not_hidden(testapp, factory):
    # One attempt, reserved by the upload: no new upload, but that one can be finished.
    ticket = factory.ticket(factory.platform("vm6"), 42, attempts=1)
    start(testapp, ticket.token, "node1.tar.gz", 5000, sent=0)
    state = check(testapp, ticket.token)
    assert (state["valid"], state["reason"], state["attempts"]) == (False, "no_attempts", 0)
    assert [(u["name"], u["size"], u["received"]) for u in state["resumable"]] == [
        ("node1.tar.gz", 5000, 0)]


def test_what_cannot_be_resumed_is_not_listed(testapp, factory, dbsession):
    ticket = factory.ticket(factory.platform("vm6"), 43, attempts=10)
    token = ticket.token
    finished = start(testapp, token, "finished.log", 10)
    testapp.patch(finished, b"y" * 10, status=204, headers={
        **V, **CHUNK, "Upload-Token": token, "Upload-Offset": "0"})
    terminated = start(testapp, token, "terminated.log", 10, sent=3)
    testapp.delete(terminated, headers={**V, "Upload-Token": token}, status=204)
    expired = start(testapp, token, "expired.log", 10, sent=3)
    dbsession.execute(update(TusUpload).where(TusUpload.id == expired.rstrip("/").rsplit(
        "/", 1)[-1]).values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
    dbsession.commit()
    start(testapp, token, "piece.log", 10, sent=3, **{"Upload-Concat": "partial"})
    start(testapp, token, "deferred.log", None, **{"Upload-Defer-Length": "1"})
    start(testapp, token, "kept.log", 10, sent=4)
    listed = check(testapp, token)["resumable"]
    # The most recently moved first; a deferred length is null until the client sends it.
    assert [(u["name"], u["size"], u["received"]) for u in listed] == [
        ("kept.log", 10, 4), ("deferred.log", None, 0)]


def test_one_token_never_sees_another_tickets_uploads(testapp, factory):
    platform = factory.platform("vm6")
    mine = factory.ticket(platform, 51, attempts=2)
    theirs = factory.ticket(platform, 52, attempts=2)
    start(testapp, theirs.token, "their-secret-host.tar.gz", 100, sent=10)
    state = check(testapp, mine.token)
    assert state["resumable"] == [] and state["ticket"] == 51
    assert "their-secret-host" not in str(state)
    start(testapp, mine.token, "mine.log", 100, sent=20)
    assert [u["name"] for u in check(testapp, mine.token)["resumable"]] == ["mine.log"]
    assert [u["name"] for u in check(testapp, theirs.token)["resumable"]] == [
        "their-secret-host.tar.gz"]


def test_a_rotated_token_and_a_resolved_ticket(testapp, factory, staff, dbsession):
    ticket = factory.ticket(factory.platform("vm6"), 61, attempts=2)
    old = ticket.token
    start(testapp, old, "before-rotation.log", 100, sent=30)
    new = testapp.post("/api/v1/tickets/61/token/", headers=staff.headers).json["token"]
    # The old token is unknown now, and answers exactly as any unknown token does.
    assert check(testapp, old, status=404) == UNKNOWN
    # The upload belongs to the ticket: its new token may finish it (the tus ACL agrees).
    assert [u["name"] for u in check(testapp, new)["resumable"]] == ["before-rotation.log"]
    testapp.patch_json("/api/v1/tickets/61/", {"resolved": True}, headers=staff.headers)
    state = check(testapp, new)
    assert (state["valid"], state["reason"], state["resumable"]) == (
        False, "ticket_resolved", [])


def test_an_expired_token_lists_nothing_it_could_not_finish(testapp, factory, dbsession):
    ticket = factory.ticket(factory.platform("vm6"), 62, attempts=2)
    start(testapp, ticket.token, "late.log", 100, sent=30)
    # Staff shorten the token's life below the upload's own expiry: no chunk is accepted.
    dbsession.execute(update(Ticket).where(Ticket.id == ticket.id).values(
        expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)))
    dbsession.commit()
    state = check(testapp, ticket.token)
    assert (state["valid"], state["reason"], state["resumable"]) == (
        False, "token_expired", [])


@pytest.mark.parametrize("hostile, status, body", [
    ("x" * 43, 404, UNKNOWN),
    (quote("' OR 1=1 --"), 404, UNKNOWN),
    ("%25", 404, UNKNOWN),
    (quote("\u202e\u00e9 token \u200b"), 404, UNKNOWN),
    ("A" * 4000, 404, UNKNOWN),
    ("%00", 400, {"detail": "NUL characters are not accepted"}),
    # Not this route at all: the path's own 404, as before.
    ("..%2F..%2Fetc%2Fpasswd", 404, {"detail": "Not found."}),
])
def test_hostile_tokens_get_what_an_unknown_token_got(testapp, factory, hostile, status,
                                                      body):
    ticket = factory.ticket(factory.platform("vm6"), 71, attempts=1)
    start(testapp, ticket.token, "held.log", 100, sent=10)
    assert check(testapp, hostile, status=status) == body


def test_the_upload_id_is_not_a_token(testapp, factory):
    # Someone who saw an upload's URL cannot learn anything about its ticket from it.
    ticket = factory.ticket(factory.platform("vm6"), 72, attempts=1)
    url = start(testapp, ticket.token, "held.log", 100, sent=10)
    upload_id = url.rstrip("/").rsplit("/", 1)[-1]
    assert check(testapp, upload_id, status=404) == UNKNOWN
    assert check(testapp, ticket.token[:-1], status=404) == UNKNOWN
    assert check(testapp, ticket.token + "x", status=404) == UNKNOWN
