"""The upload context's ACL decides who may query, continue or end a tus upload: the
principal ``ticket:{id}`` of another ticket is refused (404, as an unknown upload), and
changing nothing but the ACL changes the answer."""

import pytest
from pyramid.authorization import DENY_ALL, Allow

from collector.resources import UploadNode
from collector.security import Permission

V = {"Tus-Resumable": "1.0.0"}
CHUNK = {"Content-Type": "application/offset+octet-stream"}


@pytest.fixture
def tickets(factory):
    return (factory.ticket(factory.platform("vm6"), 77, attempts=3),
            factory.ticket(factory.platform("other"), 78, attempts=3))


def _create(testapp, token):
    res = testapp.post("/api/v1/uploads/", headers={**V, "Upload-Token": token,
                                                    "Upload-Length": "6"}, status=201)
    return "/" + res.headers["Location"].split("/", 3)[3]


def _calls(testapp, path, token, status):
    headers = {**V, "Upload-Token": token}
    testapp.head(path, headers=headers, status=status)
    res = testapp.patch(path, b"abc", headers={**headers, **CHUNK, "Upload-Offset": "0"},
                        status=status if status == 404 else 204)
    return res


def test_another_tickets_principal_is_refused(testapp, tickets):
    own, other = tickets
    path = _create(testapp, own.token)
    res = _calls(testapp, path, other.token, 404)
    assert res.json["detail"] == "Not found."
    testapp.delete(path, headers={**V, "Upload-Token": other.token}, status=404)
    testapp.head(path, headers={**V, "Upload-Token": own.token}, status=200)


def test_the_acl_decides(testapp, tickets, monkeypatch):
    """Grant the other ticket's principal on the upload: it is let in. Deny everyone: the
    upload's own ticket is refused like a stranger."""
    own, other = tickets
    path = _create(testapp, own.token)

    def shared(node):
        return [(Allow, f"ticket:{node.upload.ticket_id}", Permission.UPLOAD),
                (Allow, f"ticket:{other.id}", Permission.UPLOAD), DENY_ALL]

    monkeypatch.setattr(UploadNode, "__acl__", property(shared))
    _calls(testapp, path, other.token, 200)
    monkeypatch.setattr(UploadNode, "__acl__", property(lambda node: [DENY_ALL]))
    res = testapp.head(path, headers={**V, "Upload-Token": own.token}, status=404)
    assert res.headers["Tus-Resumable"] == "1.0.0"
    testapp.delete(path, headers={**V, "Upload-Token": own.token}, status=404)
    monkeypatch.undo()
    testapp.head(path, headers={**V, "Upload-Token": own.token}, status=200)
