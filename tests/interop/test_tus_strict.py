"""A strict tus 1.0.0 client against a real ``collector serve``: what go-tus and TUSKit expect.

go-tus treats any PATCH answer but 204 as a failure (after the whole file was sent), and
both read their state from headers only. The client here is written for this test on
``http.client``, over one keep-alive connection per upload as those clients use: a byte of
body on a 204 (which must have none) would be read as the start of the next answer and
break it, so "no body" is proven on the wire, not only by a Content-Length.

For every answer it checks the exact status (201 with Location on creation, 204 on every
PATCH including the last, 200 on HEAD, 204 on DELETE and OPTIONS) and the headers tus
requires (Tus-Resumable on all but OPTIONS, Upload-Offset on PATCH and HEAD, Upload-Expires
on creation and PATCH, Cache-Control: no-store on HEAD). It resumes after an interrupted
chunk by asking HEAD, then reads the receipt with GET and compares its sha256 with the
file's. One server (SQLite) serves the whole module.
"""

import base64
import hashlib
import http.client
import json
import os
import socket
import urllib.parse

import pytest
from serverproc import running_place

pytestmark = pytest.mark.slow

VERSION = "1.0.0"
CHUNK_TYPE = "application/offset+octet-stream"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_place("sqlite", tmp_path_factory.mktemp("strict")) as server:
        server.start()
        yield server


@pytest.fixture(scope="module")
def token(server):
    return server.ticket(4711, attempts=100, platform="strict")["token"]


class Answer:
    def __init__(self, response, body):
        self.status = response.status
        self.headers = {name.lower(): value for name, value in response.getheaders()}
        self.body = body

    def __getitem__(self, name):
        return self.headers[name.lower()]

    def get(self, name):
        return self.headers.get(name.lower())


class StrictClient:
    """Only what a strict client accepts: any other status or a missing header fails."""

    def __init__(self, server, token, override=False):
        # override: PATCH sent as POST with X-HTTP-Method-Override (go-tus's
        # OverridePatchMethod, for proxies that drop PATCH)
        self.server, self.token, self.override = server, token, override
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)

    def close(self):
        self.conn.close()

    def send(self, method, path, body=b"", expect=None, **headers):
        headers = {"Upload-Token": self.token, **headers}
        if method != "OPTIONS":
            headers["Tus-Resumable"] = VERSION
        headers["Content-Length"] = str(len(body))
        self.conn.request(method, path, body=body, headers=headers)
        response = self.conn.getresponse()
        answer = Answer(response, response.read())
        assert answer.status == expect, (method, answer.status, answer.body[:300])
        if method != "OPTIONS":
            assert answer.get("Tus-Resumable") == VERSION, (method, answer.headers)
        if answer.status == 204:
            assert answer.get("Content-Length") in (None, "0"), answer.headers
            assert answer.body == b""
        return answer

    def options(self):
        answer = self.send("OPTIONS", "/api/v1/uploads/", expect=204)
        assert VERSION in answer["Tus-Version"].split(",")
        assert int(answer["Tus-Max-Size"]) > 0
        return set(answer["Tus-Extension"].split(","))

    def create(self, length=None, first=b"", checksum=None, **headers):
        if length is None:
            headers["Upload-Defer-Length"] = "1"
        else:
            headers["Upload-Length"] = str(length)
        headers["Upload-Metadata"] = "filename " + base64.b64encode(b"strict.bin").decode()
        if first:
            headers["Content-Type"] = CHUNK_TYPE
            if checksum:
                headers["Upload-Checksum"] = checksum(first)
        answer = self.send("POST", "/api/v1/uploads/", first, expect=201, **headers)
        assert answer["Location"]
        assert answer["Upload-Expires"].endswith(" GMT")
        if first:
            assert answer["Upload-Offset"] == str(len(first))
        return urllib.parse.urlsplit(answer["Location"]).path, answer

    def patch(self, path, offset, chunk, checksum=None, **headers):
        if checksum:
            headers["Upload-Checksum"] = checksum(chunk)
        method = "PATCH"
        if self.override:
            method, headers["X-HTTP-Method-Override"] = "POST", "PATCH"
        answer = self.send(method, path, chunk, expect=204, **headers, **{
            "Upload-Offset": str(offset), "Content-Type": CHUNK_TYPE})
        assert answer["Upload-Offset"] == str(offset + len(chunk))
        assert answer["Upload-Expires"].endswith(" GMT")
        return answer

    def head(self, path, length=None):
        answer = self.send("HEAD", path, expect=200)
        assert answer["Cache-Control"] == "no-store"
        if length is None:
            assert answer["Upload-Defer-Length"] == "1"
        else:
            assert answer["Upload-Length"] == str(length)
        return int(answer["Upload-Offset"])

    def receipt(self, path):
        self.conn.request("GET", path, headers={"Upload-Token": self.token})
        response = self.conn.getresponse()
        body = response.read()
        assert response.status == 200, body
        return json.loads(body)


def interrupted_patch(server, token, path, offset, chunk):
    """A PATCH whose connection drops half-way through its body (a client killed, a VPN
    gone): the server must survive it and the upload stay resumable."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        head = (f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: {VERSION}\r\n"
                f"Upload-Token: {token}\r\nUpload-Offset: {offset}\r\n"
                f"Content-Type: {CHUNK_TYPE}\r\nContent-Length: {len(chunk)}\r\n\r\n")
        sock.sendall(head.encode() + chunk[:len(chunk) // 2])


def sha1_checksum(chunk):
    return "sha1 " + base64.b64encode(hashlib.sha1(chunk).digest()).decode()


SIZES = {"1 byte": (1, 65536), "chunks that divide it": (3 * 65536, 65536),
         "chunks that do not": (200_001, 65536)}
MODES = ["creation", "creation-with-upload", "defer-length", "checksum", "method-override"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size_name", sorted(SIZES))
def test_a_strict_client_uploads_resumes_and_reads_its_receipt(server, token, mode,
                                                               size_name):
    size, chunk_size = SIZES[size_name]
    data = os.urandom(size)
    client = StrictClient(server, token, override=mode == "method-override")
    try:
        extensions = client.options()
        assert {"creation", "creation-with-upload", "creation-defer-length", "checksum",
                "termination", "expiration", "concatenation"} <= extensions
        checksum = sha1_checksum if mode == "checksum" else None
        first = data[:chunk_size] if mode == "creation-with-upload" else b""
        length = None if mode == "defer-length" else size
        path, last = client.create(length, first, checksum)
        offset = len(first)
        interrupted = False
        while offset < size:
            chunk = data[offset:offset + chunk_size]
            if not interrupted and len(chunk) > 1:
                # The first chunk sent by PATCH is cut off on the wire; HEAD says where
                # to go on.
                interrupted = True
                interrupted_patch(server, token, path, offset, chunk)
                offset = client.head(path, length)
                continue
            headers = {}
            if length is None and offset + len(chunk) == size:
                headers["Upload-Length"] = str(size)  # known now (defer-length)
            last = client.patch(path, offset, chunk, checksum, **headers)
            offset += len(chunk)
        assert interrupted == (size - len(first) > 1)
        # The last PATCH (or the 201 that carried the whole file) names the archive.
        assert last["Upload-Archive-Id"]
        assert last["Upload-Receipt-Sha256"] == hashlib.sha256(data).hexdigest()
        assert client.head(path, size) == size
        receipt = client.receipt(path)
        assert receipt["sha256"] == hashlib.sha256(data).hexdigest()
        assert receipt["md5"] == hashlib.md5(data).hexdigest()
        assert (receipt["size"], receipt["name"]) == (size, "strict.bin")
        assert str(receipt["id"]) == last["Upload-Archive-Id"]
    finally:
        client.close()


def test_a_strict_client_terminates_and_the_upload_is_gone(server, token):
    client = StrictClient(server, token)
    try:
        path, _ = client.create(10)
        client.patch(path, 0, b"12345")
        client.send("DELETE", path, expect=204)
        for method in ("HEAD", "PATCH"):
            gone = client.send(method, path, b"", expect=404, **{
                "Upload-Offset": "5", "Content-Type": CHUNK_TYPE})
            assert gone.get("Upload-Offset") is None
    finally:
        client.close()


def test_a_zero_byte_file_is_refused_before_anything_is_spent(server, token):
    """tus allows Upload-Length: 0 (an upload complete at creation); this server refuses
    it (docs/tus-conformance.md, creation-4): an empty file holds no logs."""
    client = StrictClient(server, token)
    try:
        attempts = server.api("GET", "/api/v1/tickets/4711/")["attempts"]
        answer = client.send("POST", "/api/v1/uploads/", expect=400,
                             **{"Upload-Length": "0"})
        assert "empty" in json.loads(answer.body)["detail"]
        assert server.api("GET", "/api/v1/tickets/4711/")["attempts"] == attempts
    finally:
        client.close()
