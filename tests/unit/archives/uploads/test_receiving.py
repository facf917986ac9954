"""The follower that hashes a spooled body as it arrives (archives/uploads/receiving.py):
in memory while it keeps up, from the spool file when it falls behind, in order either way."""

import errno
import hashlib
import os
import random
import threading

import pytest

from collector.archives.uploads import receiving
from collector.archives.uploads.tus.hashes import HASHES, Hashes


def feed(buffer, body, seed, pause_every=0):
    """Append ``body`` in random pieces (as waitress's recv does), then complete it."""
    rng = random.Random(seed)
    position = 0
    while position < len(body):
        size = rng.choice([1, 7, 4096, 65536, 262144, 1 << 20])
        buffer.append(body[position:position + size])
        position += size
        if pause_every and rng.randrange(pause_every) == 0:
            threading.Event().wait(0.001)
    buffer.complete()


@pytest.mark.parametrize("queue_max", [receiving.QUEUE_MAX, 64 * 1024, 1])
def test_raw_digest_is_right_whether_the_follower_keeps_up_or_not(tmp_path, monkeypatch,
                                                                   queue_max):
    monkeypatch.setattr(receiving, "QUEUE_MAX", queue_max)
    body = os.urandom(5 * 1024 * 1024 + 123)
    buffer = receiving.SpoolBuffer(tmp_path, receiving.RawPlan(len(body)))
    try:
        feed(buffer, body, seed=queue_max, pause_every=50)
        digest = buffer.digest(timeout=30)
        assert (digest.kind, digest.start, digest.size) == ("raw", 0, len(body))
        assert digest.sha256 == hashlib.sha256(body).hexdigest()
        assert digest.md5 is None or digest.md5 == hashlib.md5(body).hexdigest()
        # What the app reads as wsgi.input is the body, from its start.
        assert buffer.getfile().read() == body
    finally:
        buffer.close()


def test_multipart_digest_finds_the_file_part(tmp_path, monkeypatch):
    monkeypatch.setattr(receiving, "QUEUE_MAX", 100_000)
    content = os.urandom(3 * 1024 * 1024) + b"\r\n--almost-the-boundary"
    head = (b"--b0undary\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nvalue\r\n"
            b"--b0undary\r\nContent-Disposition: form-data; name=\"file\"; "
            b"filename=\"x.log\"\r\n\r\n")
    body = head + content + b"\r\n--b0undary--\r\n"
    buffer = receiving.SpoolBuffer(tmp_path, receiving.plan_for(
        "/api/v1/archives/", {"CONTENT_TYPE": "multipart/form-data; boundary=b0undary"},
        len(body)))
    try:
        feed(buffer, body, seed=3)
        digest = buffer.digest(timeout=30)
        assert (digest.kind, digest.filename) == ("multipart", "x.log")
        assert (digest.start, digest.size) == (0, len(content))
        assert digest.sha256 == hashlib.sha256(content).hexdigest()
        # The file part is in a file of its own, which can become the archive.
        assert os.pread(digest.fd, len(content) + 1, 0) == content
        assert digest.linkable
    finally:
        buffer.close()


def test_a_multipart_body_without_its_closing_boundary_is_refused(tmp_path):
    body = (b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\r\n"
            + os.urandom(20 * 1024 * 1024))
    buffer = receiving.SpoolBuffer(tmp_path, receiving.plan_for(
        "/", {"CONTENT_TYPE": "multipart/form-data; boundary=b"}, len(body)))
    try:
        feed(buffer, body, seed=5)
        digest = buffer.digest(timeout=30)
        assert digest.error.detail == "multipart body ended inside the file (client gone?)"
        assert digest.error.status == 400
        assert digest.fd is None
    finally:
        buffer.close()


def test_a_malformed_multipart_body_is_left_to_the_app(tmp_path):
    body = b"--b\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nx\r\n--b--\r\n"
    buffer = receiving.SpoolBuffer(tmp_path, receiving.plan_for(
        "/", {"CONTENT_TYPE": "multipart/form-data; boundary=b"}, len(body)))
    try:
        feed(buffer, body, seed=1)
        assert buffer.digest(timeout=30) is None
    finally:
        buffer.close()


def test_a_tus_chunk_continues_only_the_hashes_saved_for_its_offset(tmp_path):
    first, second = os.urandom(300_000), os.urandom(700_000)
    saved = Hashes()
    saved.update(first)
    HASHES.put("upload-a", len(first), saved)
    headers = {"CONTENT_TYPE": "application/offset+octet-stream",
               "UPLOAD_OFFSET": str(len(first))}
    try:
        buffer = receiving.SpoolBuffer(tmp_path, receiving.plan_for(
            "/api/v1/uploads/upload-a", headers, len(second)))
        feed(buffer, second, seed=2)
        digest = buffer.digest(timeout=30)
        buffer.close()
        assert digest.base == ("upload-a", len(first))
        assert digest.hashes.sha256.hexdigest() == hashlib.sha256(first + second).hexdigest()
        # Left in place (the app takes it only after its checks), and not changed.
        assert HASHES.peek("upload-a", len(first)).sha256.hexdigest() == \
            hashlib.sha256(first).hexdigest()
        # Another offset, or another upload: no hashes to continue (the app rebuilds them).
        for path, offset in (("/api/v1/uploads/upload-a", 5), ("/api/v1/uploads/b", 300_000)):
            buffer = receiving.SpoolBuffer(tmp_path, receiving.plan_for(
                path, {**headers, "UPLOAD_OFFSET": str(offset)}, len(second)))
            feed(buffer, second, seed=4)
            assert buffer.digest(timeout=30).hashes is None
            buffer.close()
    finally:
        HASHES.forget("upload-a")


@pytest.mark.parametrize("headers", [
    {"CONTENT_TYPE": "application/offset+octet-stream", "UPLOAD_OFFSET": "-1"},
    {"CONTENT_TYPE": "application/offset+octet-stream", "UPLOAD_OFFSET": "\u0661"},
    {"CONTENT_TYPE": "application/offset+octet-stream", "UPLOAD_OFFSET": "0",
     "UPLOAD_CHECKSUM": "crc32 AAAA"},
    {"CONTENT_TYPE": "multipart/form-data"},
])
def test_requests_the_app_will_refuse_get_no_plan(headers):
    assert receiving.plan_for("/api/v1/uploads/x", headers, 10) is None


def test_an_abandoned_body_ends_its_follower(tmp_path):
    buffer = receiving.SpoolBuffer(tmp_path, receiving.RawPlan(10 * 1024 * 1024))
    buffer.append(os.urandom(1024 * 1024))
    follower = buffer.follower
    buffer.close()
    follower.thread.join(5)
    assert not follower.thread.is_alive()
    assert follower.result is None
    assert os.listdir(tmp_path) == []


def test_a_full_disk_while_the_file_part_is_written_is_a_507(tmp_path, monkeypatch):
    body = (b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\r\n"
            + os.urandom(3 * 1024 * 1024) + b"\r\n--b--\r\n")
    buffer = receiving.SpoolBuffer(tmp_path, receiving.plan_for(
        "/", {"CONTENT_TYPE": "multipart/form-data; boundary=b"}, len(body)))
    pwrite = os.pwrite

    def full_past_1mib(fd, data, offset):
        # The spool's writes go through; the file part's fail once it holds 1 MiB.
        if fd != buffer.fd and offset >= 1024 * 1024:
            raise OSError(errno.ENOSPC, "No space left on device")
        return pwrite(fd, data, offset)

    monkeypatch.setattr(receiving.os, "pwrite", full_past_1mib)
    try:
        feed(buffer, body, seed=6)
        digest = buffer.digest(timeout=30)
    finally:
        monkeypatch.undo()
        buffer.close()
    assert digest.error.status == 507 and "No space left" in digest.error.detail
    assert digest.fd is None
    assert os.listdir(tmp_path) == []
