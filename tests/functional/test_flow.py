"""The whole path: staff create a ticket, the customer uploads, staff download."""

import hashlib
import os


def test_ticket_upload_download(testapp, factory, staff):
    platform = testapp.post_json("/api/v1/platforms/", {"name": "vm6", "pretty_name": "VM 6"},
                                 headers=staff.headers, status=403)
    assert "permission" in platform.json["detail"]
    factory.platform("vm6")
    created = testapp.post_json("/api/v1/tickets/", {"number": 4242, "platform": "vm6",
                                                     "attempts": 2}, headers=staff.headers,
                                status=201).json
    assert created["attempts"] == 2 and created["user"] == "staff"
    assert len(created["token"]) >= 43

    body = os.urandom(3 * 1024 * 1024 + 17)
    archive = testapp.post("/api/v1/archives/", upload_files=[("file", "logs.tar.gz", body)],
                           headers={"Upload-Token": created["token"]}, status=201).json
    assert archive["sha256"] == hashlib.sha256(body).hexdigest()
    assert archive["md5"] == hashlib.md5(body).hexdigest()
    assert archive["size"] == len(body) and archive["name"] == "logs.tar.gz"
    assert archive["ticket"] == 4242

    ticket = testapp.get("/api/v1/tickets/4242/", headers=staff.headers).json
    assert ticket["attempts"] == 1

    got = testapp.get(f"/api/v1/archives/{archive['id']}/download", headers=staff.headers)
    assert got.body == body
    assert "filename*=UTF-8''logs.tar.gz" in got.headers["Content-Disposition"]
