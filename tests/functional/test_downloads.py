"""GET/HEAD /api/v1/archives/{id}/download: streaming, ranges, validators, deletion."""

import os

import pytest
from s3server import on_both_storages


@pytest.fixture
def uploaded(testapp, factory):
    ticket = factory.ticket(factory.platform("vm6"), 5)
    body = os.urandom(1024 * 1024 + 111)
    archive = testapp.post("/api/v1/archives/",
                           upload_files=[("file", "Логи сервера (копия).zip", body)],
                           headers={"Upload-Token": ticket.token}, status=201).json
    return archive, body


@on_both_storages
def test_whole_download(testapp, staff, uploaded):
    archive, body = uploaded
    res = testapp.get(f"/api/v1/archives/{archive['id']}/download", headers=staff.headers)
    assert res.body == body
    assert res.headers["Content-Length"] == str(len(body))
    assert res.headers["Content-Type"] == "application/octet-stream"
    assert res.headers["Accept-Ranges"] == "bytes"
    assert res.headers["ETag"] == f'"{archive["sha256"]}"'
    assert res.headers["Last-Modified"]
    disposition = res.headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="')
    assert "filename*=UTF-8''%D0%9B%D0%BE%D0%B3%D0%B8" in disposition
    head = testapp.head(f"/api/v1/archives/{archive['id']}/download", headers=staff.headers)
    assert head.headers["Content-Length"] == str(len(body)) and head.body == b""


@on_both_storages
@pytest.mark.parametrize("spec,start,stop", [
    ("bytes=0-0", 0, 1), ("bytes=100-199", 100, 200), ("bytes=-500", None, None),
    ("bytes=1048000-", 1048000, None)])
def test_ranges(testapp, staff, uploaded, spec, start, stop):
    archive, body = uploaded
    res = testapp.get(f"/api/v1/archives/{archive['id']}/download",
                      headers={**staff.headers, "Range": spec}, status=206)
    expected = body[-500:] if start is None else body[start:stop]
    assert res.body == expected
    assert res.headers["Content-Length"] == str(len(expected))
    first = len(body) - 500 if start is None else start
    assert res.headers["Content-Range"] == \
        f"bytes {first}-{first + len(expected) - 1}/{len(body)}"


@on_both_storages
def test_unsatisfiable_range_and_conditionals(testapp, staff, uploaded):
    archive, body = uploaded
    url = f"/api/v1/archives/{archive['id']}/download"
    res = testapp.get(url, headers={**staff.headers, "Range": f"bytes={len(body)}-"},
                      status=416)
    assert res.headers["Content-Range"] == f"bytes */{len(body)}"
    assert res.json["detail"] == "requested range not satisfiable"
    etag = f'"{archive["sha256"]}"'
    testapp.get(url, headers={**staff.headers, "If-None-Match": etag}, status=304)
    # If-Range with a stale validator: the whole file, not a fragment of a different one
    res = testapp.get(url, headers={**staff.headers, "Range": "bytes=0-9",
                                    "If-Range": '"other"'}, status=200)
    assert res.body == body
    res = testapp.get(url, headers={**staff.headers, "Range": "bytes=0-9", "If-Range": etag},
                      status=206)
    assert res.body == body[:10]


def test_download_needs_mfa(testapp, factory, uploaded):
    archive, _ = uploaded
    user = factory.user("nomfa")
    res = testapp.get(f"/api/v1/archives/{archive['id']}/download",
                      headers=factory.token(user, mfa=False), status=403)
    assert res.json["detail"] == "two-factor authentication required"
    testapp.get(f"/api/v1/archives/{archive['id']}/download", status=401)
    # metadata stays readable without mfa
    testapp.get(f"/api/v1/archives/{archive['id']}/", headers=factory.token(user, mfa=False))


@on_both_storages
def test_archive_listing_patch_and_delete(testapp, staff, factory, uploaded, stored):
    archive, _ = uploaded
    other = factory.ticket(factory.platform("bill"), 6)
    listed = testapp.get("/api/v1/archives/?ticket=5", headers=staff.headers)
    assert [a["id"] for a in listed.json] == [archive["id"]]
    assert listed.headers["X-Total-Count"] == "1"
    assert testapp.get("/api/v1/archives/?ticket=6", headers=staff.headers).json == []
    assert testapp.get(f"/api/v1/archives/?id={archive['id']}", headers=staff.headers).json
    assert set(listed.json[0]) == {"id", "file", "ticket", "time_create", "name", "size",
                                   "md5", "sha256"}
    moved = testapp.patch_json(f"/api/v1/archives/{archive['id']}/",
                               {"ticket": other.number, "name": "x/../y.zip"},
                               headers=staff.headers).json
    assert (moved["ticket"], moved["name"]) == (6, "y.zip")
    testapp.patch_json(f"/api/v1/archives/{archive['id']}/", {"ticket": 999},
                       headers=staff.headers, status=404)
    testapp.delete(f"/api/v1/archives/{archive['id']}/", headers=staff.headers, status=204)
    assert stored.keys() == []
    testapp.get(f"/api/v1/archives/{archive['id']}/download", headers=staff.headers,
                status=404)


@on_both_storages
def test_deleting_a_ticket_deletes_its_files(testapp, staff, uploaded, stored):
    testapp.delete("/api/v1/tickets/5/", headers=staff.headers, status=204)
    assert stored.keys() == []
    assert testapp.get("/api/v1/archives/", headers=staff.headers).json == []


@on_both_storages
def test_missing_file_is_a_clear_404(testapp, staff, uploaded, stored):
    archive, _ = uploaded
    for key in stored.keys():
        stored.backend.delete(key)
    res = testapp.get(f"/api/v1/archives/{archive['id']}/download", headers=staff.headers,
                      status=404)
    assert "missing" in res.json["detail"]


@pytest.mark.parametrize("storage_kind", ["s3"])
def test_s3_downloads_stream_with_the_range_passed_through(testapp, staff, factory, app,
                                                           monkeypatch):
    ticket = factory.ticket(factory.platform("vm6"), 8)
    body = os.urandom(20 * 1024 * 1024 + 5)
    archive = testapp.post("/api/v1/archives/", upload_files=[("file", "big.tgz", body)],
                           headers={"Upload-Token": ticket.token}, status=201).json
    client = app.registry["archive_storage"].client
    get_object, ranges = client.get_object, []

    def recording(**kwargs):
        ranges.append(kwargs["Range"])
        return get_object(**kwargs)

    monkeypatch.setattr(client, "get_object", recording)
    url = f"/api/v1/archives/{archive['id']}/download"
    res = testapp.get(url, headers={**staff.headers, "Range": "bytes=12345678-12345999"},
                      status=206)
    assert res.body == body[12345678:12346000]
    assert ranges == ["bytes=12345678-13394253"]  # from the asked offset, one window
    del ranges[:]
    assert testapp.get(url, headers=staff.headers).body == body
    # A whole download: a few GETs, each window twice the last (1, 2, 4, 8, 16 MiB).
    assert len(ranges) == 5 and ranges[0] == "bytes=0-1048575"


@on_both_storages
def test_download_through_waitress(live_server, factory, staff):
    """A whole archive goes through the server's file wrapper, a range through the
    seeking iterator: both against a real waitress, on both backends."""
    import urllib.request

    ticket = factory.ticket(factory.platform("vm6"), 9)
    body = os.urandom(3 * 1024 * 1024 + 1)
    boundary = "b0und4ry"
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"a.bin\"\r\n\r\n").encode() + body + f"\r\n--{boundary}--\r\n".encode()
    created = urllib.request.urlopen(urllib.request.Request(
        f"{live_server}/api/v1/archives/", data=form, method="POST", headers={
            "Upload-Token": ticket.token,
            "Content-Type": f"multipart/form-data; boundary={boundary}"}), timeout=30)
    archive_id = __import__("json").loads(created.read())["id"]
    url = f"{live_server}/api/v1/archives/{archive_id}/download"
    with urllib.request.urlopen(urllib.request.Request(url, headers=staff.headers),
                                timeout=30) as whole:
        assert whole.read() == body
    ranged = urllib.request.Request(url, headers={**staff.headers, "Range": "bytes=2000000-"})
    with urllib.request.urlopen(ranged, timeout=30) as part:
        assert part.status == 206 and part.read() == body[2000000:]


@pytest.mark.parametrize("storage_kind", ["s3"])
def test_s3_unavailable_is_a_503_with_retry_after(testapp, staff, uploaded, app, monkeypatch):
    import botocore.exceptions

    archive, _ = uploaded

    def down(**kwargs):
        raise botocore.exceptions.EndpointConnectionError(endpoint_url="http://s3.invalid")

    monkeypatch.setattr(app.registry["archive_storage"].client, "head_object", down)
    res = testapp.get(f"/api/v1/archives/{archive['id']}/download", headers=staff.headers,
                      status=503)
    assert res.headers["Retry-After"] == "10"
    assert res.json["detail"] == "archive storage unavailable, try again shortly"
