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


def record_ranges(app, monkeypatch):
    """The ``Range`` of every GET the app's S3 client makes from now on, in order."""
    client = app.registry["archive_storage"].client
    get_object, ranges = client.get_object, []

    def recording(**kwargs):
        ranges.append(kwargs["Range"])
        return get_object(**kwargs)

    monkeypatch.setattr(client, "get_object", recording)
    return ranges


@pytest.mark.parametrize("storage_kind", ["s3"])
def test_s3_downloads_stream_with_the_range_passed_through(testapp, staff, factory, app,
                                                           monkeypatch):
    ticket = factory.ticket(factory.platform("vm6"), 8)
    body = os.urandom(20 * 1024 * 1024 + 5)
    archive = testapp.post("/api/v1/archives/", upload_files=[("file", "big.tgz", body)],
                           headers={"Upload-Token": ticket.token}, status=201).json
    ranges = record_ranges(app, monkeypatch)
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


@on_both_storages
def test_ranges_through_waitress(live_server, factory, staff):
    """A range of a local file is handed to waitress's file wrapper from its start (sent
    from waitress's loop, up to the range's Content-Length); an object's range is iterated.
    Every shape of range, on the API route and the page route, answers as through webtest:
    the bytes, 206 with Content-Range, the validators, 416 past the end, and the whole file
    when If-Range no longer matches."""
    import json
    import urllib.error
    import urllib.request

    ticket = factory.ticket(factory.platform("vm6"), 11)
    size = 3 * 1024 * 1024 + 5
    body = os.urandom(size)
    created = urllib.request.urlopen(urllib.request.Request(
        f"{live_server}/api/v1/archives/?filename=r%C3%A9sum%C3%A9.log", data=body,
        method="POST", headers={"Upload-Token": ticket.token,
                                "Content-Type": "application/octet-stream"}), timeout=30)
    archive = json.loads(created.read())
    urls = [f"{live_server}/api/v1/archives/{archive['id']}/download",
            f"{live_server}/platforms/vm6/tickets/11/archives/{archive['id']}/download"]

    def get(url, method="GET", **headers):
        request = urllib.request.Request(url, method=method, headers={**staff.headers,
                                                                       **headers})
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, answer.headers, answer.read()
        except urllib.error.HTTPError as refused:
            return refused.code, refused.headers, refused.read()

    for url in urls:
        for spec, start, stop in [("-1048576", size - 1048576, size), ("0-0", 0, 1),
                                  ("1000-2999999", 1000, 3000000), ("3000000-", 3000000, size),
                                  (f"{size - 1}-{size + 100}", size - 1, size)]:
            status, headers, data = get(url, Range=f"bytes={spec}")
            assert status == 206, (url, spec)
            assert data == body[start:stop]
            assert headers["Content-Range"] == f"bytes {start}-{stop - 1}/{size}"
            assert int(headers["Content-Length"]) == stop - start
            assert headers["ETag"] == f'"{archive["sha256"]}"'
            assert headers["Last-Modified"] and headers["Accept-Ranges"] == "bytes"
            assert headers["Content-Disposition"] == (
                "attachment; filename=\"resume.log\"; filename*=UTF-8''r%C3%A9sum%C3%A9.log")
        status, headers, data = get(url, "HEAD", Range="bytes=-1048576")
        assert (status, data, headers["Content-Length"]) == (206, b"", "1048576")
        status, headers, data = get(url, Range=f"bytes={size}-")
        assert status == 416 and headers["Content-Range"] == f"bytes */{size}"
        assert "detail" in data.decode()
        status, _, data = get(url, Range="bytes=-10", **{"If-Range": '"stale"'})
        assert status == 200 and data == body
        status, _, data = get(url, Range="bytes=-10", **{"If-Range": f'"{archive["sha256"]}"'})
        assert status == 206 and data == body[-10:]


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


@pytest.fixture
def redirecting(app):
    """STORAGE_DOWNLOAD=redirect (S3 only: the settings refuse it on the local disk)."""
    app.registry.settings["storage.download"] = "redirect"
    return app


def _fetch(url, headers=None):
    """GET a presigned URL as a client would: straight from the object store."""
    import urllib.request

    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}),
                                timeout=30) as answer:
        return answer.status, answer.headers, answer.read()


@pytest.mark.parametrize("storage_kind", ["s3"])
def test_redirect_to_a_presigned_url(testapp, staff, uploaded, redirecting, s3_server,
                                     dbsession):
    from urllib.parse import parse_qs, urlsplit

    from collector.archives.download import content_disposition
    from collector.audit.models import AuditEvent

    archive, body = uploaded
    res = testapp.get(f"/api/v1/archives/{archive['id']}/download", headers=staff.headers,
                      status=302)
    url = res.headers["Location"]
    assert res.body == b"" and res.headers["Cache-Control"] == "private, no-store"
    assert url.startswith(f"{s3_server.endpoint}/{s3_server.bucket}/")
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Expires"] == ["300"] and query["X-Amz-Algorithm"]
    assert query["response-content-disposition"] == [content_disposition(archive["name"])]
    status, headers, fetched = _fetch(url)
    assert (status, fetched) == (200, body)
    assert headers["Content-Disposition"] == content_disposition("Логи сервера (копия).zip")
    assert headers["Content-Type"] == "application/octet-stream"
    # Range is the client's business with the store now.
    status, _, part = _fetch(url, {"Range": "bytes=100-199"})
    assert (status, part) == (206, body[100:200])
    event = dbsession.query(AuditEvent).filter_by(action="archive.download").one()
    assert (event.archive_id, event.detail["redirect"]) == (archive["id"], True)


@pytest.mark.parametrize("storage_kind", ["s3"])
def test_redirect_expiry_is_the_setting(testapp, staff, uploaded, redirecting):
    from urllib.parse import parse_qs, urlsplit

    archive, _ = uploaded
    redirecting.registry.settings["storage.download_expiry"] = 45
    res = testapp.get(f"/api/v1/archives/{archive['id']}/download", headers=staff.headers,
                      status=302)
    assert parse_qs(urlsplit(res.headers["Location"]).query)["X-Amz-Expires"] == ["45"]


@pytest.mark.parametrize("storage_kind", ["s3"])
def test_redirect_only_after_the_acl_and_two_factor(testapp, factory, uploaded, redirecting,
                                                    dbsession):
    from collector.audit.models import AuditEvent

    archive, _ = uploaded
    url = f"/api/v1/archives/{archive['id']}/download"
    res = testapp.get(url, status=401)
    assert "Location" not in res.headers and "X-Amz" not in res.text
    nomfa = factory.token(factory.user("nomfa"), mfa=False)
    res = testapp.get(url, headers=nomfa, status=403)
    assert "Location" not in res.headers and "X-Amz" not in res.text
    # Staff with two-factor, but not a member of a restricted platform: no URL either.
    closed = factory.ticket(factory.platform("hidden", restricted=True), 7)
    hidden = testapp.post("/api/v1/archives/", upload_files=[("file", "h.log", b"h" * 10)],
                          headers={"Upload-Token": closed.token}, status=201).json
    res = testapp.get(f"/api/v1/archives/{hidden['id']}/download",
                      headers=factory.token(factory.user("outsider")), status=404)
    assert "Location" not in res.headers and "X-Amz" not in res.text
    assert dbsession.query(AuditEvent).filter_by(action="archive.download").all() == []


@pytest.mark.parametrize("storage_kind", ["s3"])
def test_redirect_head_missing_object_and_store_failure(testapp, staff, uploaded,
                                                        redirecting, stored, monkeypatch):
    import botocore.exceptions

    archive, body = uploaded
    url = f"/api/v1/archives/{archive['id']}/download"
    # HEAD has no bytes to send: answered here, as when streaming.
    head = testapp.head(url, headers=staff.headers, status=200)
    assert head.headers["Content-Length"] == str(len(body)) and "Location" not in head.headers
    client = redirecting.registry["archive_storage"].client

    def down(**kwargs):
        raise botocore.exceptions.EndpointConnectionError(endpoint_url="http://s3.invalid")

    with monkeypatch.context() as patch:
        patch.setattr(client, "head_object", down)
        res = testapp.get(url, headers=staff.headers, status=503)
        assert res.headers["Retry-After"] == "10"
    for key in stored.keys():
        stored.backend.delete(key)
    res = testapp.get(url, headers=staff.headers, status=404)
    assert "missing" in res.json["detail"]


@pytest.mark.parametrize("storage_kind", ["s3"])
def test_staff_page_download_redirects_too(testapp, factory, uploaded, redirecting,
                                           web_login):
    archive, body = uploaded
    browser = web_login(testapp, factory.user("pagestaff"))
    res = browser.get(f"/archives/{archive['id']}/download", status=302)
    assert _fetch(res.headers["Location"])[2] == body
    testapp.reset()
    res = testapp.get(f"/archives/{archive['id']}/download", status=303)
    assert "/login" in res.headers["Location"]


@pytest.mark.parametrize("storage_kind", ["s3"])
def test_s3_download_through_waitress_reads_each_byte_once(live_server, factory, staff, app,
                                                           monkeypatch):
    """waitress's file wrapper reads ahead and seeks back for every socket send; on an
    object that would be a new ranged GET per send. So an object is streamed by
    iteration: a whole download is a few GETs of growing size, as through webtest."""
    import urllib.request

    ticket = factory.ticket(factory.platform("vm6"), 9)
    body = os.urandom(20 * 1024 * 1024 + 3)
    created = urllib.request.urlopen(urllib.request.Request(
        f"{live_server}/api/v1/archives/?filename=a.bin", data=body, method="POST",
        headers={"Upload-Token": ticket.token, "Content-Type": "application/octet-stream"}),
        timeout=30)
    archive_id = __import__("json").loads(created.read())["id"]
    ranges = record_ranges(app, monkeypatch)
    url = f"{live_server}/api/v1/archives/{archive_id}/download"
    with urllib.request.urlopen(urllib.request.Request(url, headers=staff.headers),
                                timeout=60) as whole:
        assert whole.read() == body
    assert ranges == ["bytes=0-1048575", "bytes=1048576-3145727", "bytes=3145728-7340031",
                      "bytes=7340032-15728639", "bytes=15728640-20971522"]
