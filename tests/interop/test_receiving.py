"""Bodies hashed as they arrive and kept without a second copy, against a real
``collector serve`` (archives/uploads/receiving.py, storage/spooled.py).

What is checked from outside: every stored archive has the sha256 of what was sent; a raw
body is written to the disk once (``/proc/PID/io``: ``write_bytes`` about the body's
size), a multipart body's spool is freed rather than written back (``write_bytes`` less
``cancelled_write_bytes``); tus chunks (first one linked, later ones copied in the kernel)
add up to the right archive, checksums included; what the app refuses is refused as
before; a body cut off leaves no thread or file behind.
"""

import base64
import functools
import hashlib
import json
import os
import socket
import time

import pytest
from serverproc import MiB, create, patch, receipt, running_place

pytestmark = pytest.mark.slow

SIZE = 12 * MiB


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_place("sqlite", tmp_path_factory.mktemp("receiving")) as server:
        server.start()
        yield server


@pytest.fixture(scope="module")
def token(server):
    return server.ticket(5150, attempts=100, platform="receiving")["token"]


def io_of(pid):
    with open(f"/proc/{pid}/io") as counters:
        return {name: int(value) for name, value in
                (line.split(": ") for line in counters.read().splitlines())}


def written(server, send):
    """(send()'s result, bytes the server wrote to the disk for it, less those it freed
    before they were written back)."""
    before = io_of(server.pid)
    result = send()
    after = io_of(server.pid)
    net = (after["write_bytes"] - before["write_bytes"]) \
        - (after["cancelled_write_bytes"] - before["cancelled_write_bytes"])
    return result, net


def multipart(body, name="part.bin", boundary="receiving-boundary", before=b""):
    data = before + (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                     f"filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                     ).encode() + body + f"\r\n--{boundary}--\r\n".encode()
    return data, f"multipart/form-data; boundary={boundary}"


def stored(server, answer):
    status, _, data = answer
    assert status == 201, data[:500]
    archive = json.loads(data)
    return archive


def test_a_raw_body_becomes_the_archive_written_once(server, token):
    body = os.urandom(SIZE)
    answer, net = written(server, lambda: server.request(
        "PUT", "/api/v1/archives/raw.bin", body, {"Upload-Token": token}, timeout=60))
    archive = stored(server, answer)
    assert archive["sha256"] == hashlib.sha256(body).hexdigest()
    assert archive["size"] == SIZE and archive["name"] == "raw.bin"
    assert server.download_sha256(archive["id"]) == archive["sha256"]
    # The spool itself became the archive: one write of the body (and a few database
    # pages), not two.
    assert SIZE <= net < 1.25 * SIZE, net / SIZE


def test_a_multipart_file_part_is_copied_in_the_kernel_and_its_spool_freed(server, token):
    body = os.urandom(SIZE)
    # A field before the file, and a name with non-ASCII letters.
    field = (b"--receiving-boundary\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\n"
             b"hello\r\n")
    data, content_type = multipart(body, name="journal \u00e9t\u00e9.log", before=field)
    answer, net = written(server, lambda: server.request(
        "POST", "/api/v1/archives/", data, {"Upload-Token": token,
                                           "Content-Type": content_type}, timeout=60))
    archive = stored(server, answer)
    assert archive["sha256"] == hashlib.sha256(body).hexdigest()
    assert archive["size"] == SIZE and archive["name"] == "journal \u00e9t\u00e9.log"
    assert server.download_sha256(archive["id"]) == archive["sha256"]
    assert net < 1.25 * SIZE, net / SIZE


def test_a_chunked_body_is_hashed_as_it_arrives_too(server, token):
    body = os.urandom(3 * MiB + 17)
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall((f"PUT /api/v1/archives/chunked.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      f"Upload-Token: {token}\r\nTransfer-Encoding: chunked\r\n"
                      "Connection: close\r\n\r\n").encode())
        for start in range(0, len(body), 700_000):
            piece = body[start:start + 700_000]
            sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        sock.sendall(b"0\r\n\r\n")
        answer = b""
        while data := sock.recv(65536):
            answer += data
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 201"), answer[-300:]
    assert json.loads(payload)["sha256"] == hashlib.sha256(body).hexdigest()


def test_tus_chunks_first_linked_then_copied_add_up(server, token):
    body = os.urandom(3 * SIZE // 2)
    chunk = SIZE // 2
    path = create(server, token, len(body), name="tus.bin")
    for offset in range(0, len(body), chunk):
        piece = body[offset:offset + chunk]
        checksum = "sha1 " + base64.b64encode(hashlib.sha1(piece).digest()).decode()
        (status, headers, data), net = written(server, functools.partial(
            patch, server, token, path, offset, piece, timeout=60,
            **{"Upload-Checksum": checksum}))
        assert status == 204, data
        assert int(headers["upload-offset"]) == offset + len(piece)
        assert net < 1.25 * len(piece), net / len(piece)
    answer = receipt(server, token, path, status, headers)
    assert answer["sha256"] == hashlib.sha256(body).hexdigest()
    assert server.download_sha256(answer["id"]) == answer["sha256"]


def test_creation_with_upload_of_a_whole_file(server, token):
    body = os.urandom(SIZE // 3)
    metadata = "filename " + base64.b64encode(b"whole.bin").decode()
    status, headers, data = server.request("POST", "/api/v1/uploads/", body, {
        "Tus-Resumable": "1.0.0", "Upload-Token": token, "Upload-Length": str(len(body)),
        "Upload-Metadata": metadata, "Content-Type": "application/offset+octet-stream",
        "Upload-Checksum": "md5 " + base64.b64encode(hashlib.md5(body).digest()).decode()},
        timeout=60)
    assert status == 201, data
    assert json.loads(data)["sha256"] == hashlib.sha256(body).hexdigest()
    assert headers["upload-receipt-sha256"] == hashlib.sha256(body).hexdigest()


@pytest.mark.parametrize("algorithm", ["sha1", "md5", "sha256"])
def test_a_chunk_that_fails_its_checksum_is_not_stored(server, token, algorithm):
    body = os.urandom(2 * MiB)
    path = create(server, token, 2 * len(body))
    wrong = hashlib.new(algorithm, body + b"x").digest()
    status, _, data = patch(server, token, path, 0, body, timeout=60, **{
        "Upload-Checksum": f"{algorithm} {base64.b64encode(wrong).decode()}"})
    assert status == 460, data
    status, headers, _ = server.request("HEAD", path, headers={
        "Tus-Resumable": "1.0.0", "Upload-Token": token})
    assert status == 200 and headers["upload-offset"] == "0"
    # The right bytes at the same offset are taken, and the upload completes right.
    assert patch(server, token, path, 0, body, timeout=60)[0] == 204
    status, headers, _ = patch(server, token, path, len(body), body, timeout=60)
    assert receipt(server, token, path, status, headers)["sha256"] == \
        hashlib.sha256(body + body).hexdigest()


def test_what_the_app_refuses_stays_refused(server, token):
    body = os.urandom(MiB)
    # Multipart without a file field; without a closing boundary; a raw body to a tus
    # upload at the wrong offset; an unknown checksum algorithm; no token at all.
    data, content_type = multipart(body)
    no_file = data.replace(b'name="file"', b'name="other"')
    assert server.request("POST", "/api/v1/archives/", no_file, {
        "Upload-Token": token, "Content-Type": content_type})[0] == 400
    cut = data[:-len(b"\r\n--receiving-boundary--\r\n")]
    assert server.request("POST", "/api/v1/archives/", cut, {
        "Upload-Token": token, "Content-Type": content_type})[0] == 400
    path = create(server, token, 2 * len(body))
    assert patch(server, token, path, 5, body)[0] == 409
    status, _, data = patch(server, token, path, 0, body, **{"Upload-Checksum": "crc32 AAAA"})
    assert status == 400 and b"crc32" in data
    assert server.request("PUT", "/api/v1/archives/x.bin", body)[0] == 401
    # Another upload's running hashes are never taken for this one: a chunk at the same
    # offset of a second upload is hashed from its own bytes.
    other = create(server, token, 2 * len(body))
    first = os.urandom(len(body))
    assert patch(server, token, path, 0, body)[0] == 204
    assert patch(server, token, other, 0, first)[0] == 204
    status, headers, _ = patch(server, token, other, len(body), body)
    assert receipt(server, token, other, status, headers)["sha256"] == \
        hashlib.sha256(first + body).hexdigest()


def threads_of(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


def test_a_body_cut_off_leaves_no_thread_or_file(server, token):
    tmp = server.data_dir / "tmp"
    baseline = threads_of(server.pid)
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall((f"PUT /api/v1/archives/cut.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          f"Upload-Token: {token}\r\nContent-Length: {8 * MiB}\r\n\r\n"
                          ).encode() + os.urandom(2 * MiB))
            time.sleep(0.2)
    deadline = time.monotonic() + 10
    while threads_of(server.pid) > baseline and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threads_of(server.pid) <= baseline
    # The spools were unnamed files: nothing is left in the staging directory.
    assert [p.name for p in tmp.iterdir() if not p.name.startswith(".")] == []
