"""The storage manager joins the transaction: publish on commit, nothing on abort — the
shared contract (storage_contract.py) on the local disk and on S3 (moto's server), and
what is particular to each backend."""

import os

import pytest

from collector.archives.storage import LocalArchiveStorage

from .storage_contract import ArchiveStorageContract


class TestLocalArchiveStorage(ArchiveStorageContract):

    @pytest.fixture
    def backend(self, tmp_path):
        return LocalArchiveStorage(tmp_path / "data")

    def test_paths_are_built_from_the_key(self, backend):
        key = self.store(backend, b"x")
        assert backend.path(key) == backend.archives / key[:2] / key
        assert list(backend.staging.iterdir()) == []

    def test_stale_staging_files(self, backend):
        (backend.staging / "old.part").write_bytes(b"x")
        os.utime(backend.staging / "old.part", (0, 0))
        (backend.staging / "new.part").write_bytes(b"x")
        assert [p.name for p in backend.stale_staging(3600)] == ["old.part"]


class TestS3ArchiveStorage(ArchiveStorageContract):
    staging_times_are_real = False

    @pytest.fixture
    def backend(self, tmp_path, s3_server):
        from collector.archives.storage import make_backend

        return make_backend({"data_dir": str(tmp_path / "data"),
                             **s3_server.settings(quota=10 * 1024**3)})

    def test_objects_are_named_from_the_key_under_the_prefix(self, backend, s3_server):
        key = self.store(backend, b"x")
        assert list(s3_server.objects(backend.prefix)) == [
            f"{backend.prefix}archives/{key[:2]}/{key}"]
        assert backend.location(key) == f"s3://{s3_server.bucket}/{backend.prefix}" \
            f"archives/{key[:2]}/{key}"

    def test_parts_are_sent_while_the_body_is_read(self, backend, s3_server):
        from collector.archives.storage import s3

        sent_before_the_end = []

        def body(staged):
            for _ in range(3 * s3.PART_SIZE // (1024 * 1024)):
                yield os.urandom(1024 * 1024)
            sent_before_the_end.append(len(staged.parts))

        staged = backend.new_staged()
        backend.write(staged, body(staged), max_size=10**9)
        # Full parts were on the server before the last byte was read.
        assert sent_before_the_end[0] >= 1 and len(staged.parts) == 3
        backend.discard(staged)
        assert s3_server.multipart_uploads(backend.prefix) == []

    def test_sequential_reads_grow_their_window_then_take_the_rest(self, backend,
                                                                     monkeypatch):
        from collector.archives.storage import s3

        monkeypatch.setattr(s3, "READ_WINDOW_MIN", 1000)
        monkeypatch.setattr(s3, "READ_WINDOW_MAX", 4000)
        body = os.urandom(20_000)
        key = self.store(backend, body)
        ranges = []
        get_object = backend.client.get_object

        def recording(**kwargs):
            ranges.append(kwargs["Range"])
            return get_object(**kwargs)

        monkeypatch.setattr(backend.client, "get_object", recording)
        with backend.open(key) as handle:
            handle.raw.seek(0)
            data = b"".join(iter(lambda: handle.raw.read(700), b""))
        assert data == body
        # 1000, 2000, 4000 (the largest window), then the rest at once.
        assert ranges == ["bytes=0-999", "bytes=1000-2999", "bytes=3000-6999",
                          "bytes=7000-19999"]
        del ranges[:]
        with backend.open(key) as handle:  # a seek starts small again
            handle.raw.seek(15_000)
            assert handle.raw.read(10) == body[15_000:15_010]
        assert ranges == ["bytes=15000-15999"]

    def test_presigned_download_url(self, backend, s3_server):
        import urllib.request
        from urllib.parse import parse_qs, urlsplit

        from collector.archives.storage.interfaces import IDirectDownloads

        assert IDirectDownloads.providedBy(backend)
        key = self.store(backend, b"presigned bytes")
        url = backend.download_url(key, 'attachment; filename="a b.log"', 120)
        query = parse_qs(urlsplit(url).query)
        assert (query["X-Amz-Expires"], query["X-Amz-Algorithm"]) == (
            ["120"], ["AWS4-HMAC-SHA256"])
        with urllib.request.urlopen(url, timeout=30) as answer:
            assert answer.read() == b"presigned bytes"
            assert answer.headers["Content-Disposition"] == 'attachment; filename="a b.log"'
        with pytest.raises(FileNotFoundError):
            backend.download_url("ab" + "0" * 30, "attachment", 120)

    def test_only_names_it_makes_are_listed(self, backend, s3_server):
        key = self.store(backend, b"x")
        client = s3_server.client()
        for foreign in ("archives/readme.txt", f"archives/zz/{key}", "other/ab" + "0" * 30,
                        f"archives/{key[:2]}/{key}/x"):
            client.put_object(Bucket=s3_server.bucket, Key=backend.prefix + foreign, Body=b"")
        assert list(backend.keys()) == [key]

    def test_parts_grow_so_that_the_largest_archive_fits_in_10000(self):
        from collector.archives.storage.s3 import MAX_PARTS, PART_SIZE, part_size

        assert part_size(4 * 1024**3) == PART_SIZE
        for largest in (PART_SIZE * MAX_PARTS + 1, 200 * 1024**3, 5 * 1024**4):
            size = part_size(largest)
            assert size % (1024 * 1024) == 0 and size * MAX_PARTS >= largest
            assert size < 2 * largest // MAX_PARTS + PART_SIZE

    def test_usage_is_the_quota_and_the_bytes_stored(self, backend):
        backend.USAGE_TTL = 0
        self.store(backend, b"1" * 1000)
        self.store(backend, b"2" * 234)
        assert backend.usage() == {"total": 10 * 1024**3, "used": 1234,
                                   "free": 10 * 1024**3 - 1234}

    def test_an_unreachable_store_is_not_writable(self, tmp_path, s3_server):
        from collector.archives.storage import make_backend

        settings = {"data_dir": str(tmp_path / "data"), **s3_server.settings(),
                    "storage.endpoint_url": "http://127.0.0.1:9"}
        assert not make_backend(settings).writable()


def test_s3_without_boto3_is_refused_with_a_clear_message(tmp_path, monkeypatch):
    import sys

    from collector.archives.storage import make_backend
    from collector.settings import SettingsError

    monkeypatch.delitem(sys.modules, "collector.archives.storage.s3", raising=False)
    monkeypatch.setitem(sys.modules, "boto3", None)  # what an install without it gives
    with pytest.raises(SettingsError, match=r"STORAGE_URL.*logs-collector\[s3\]"):
        make_backend({"data_dir": str(tmp_path), "storage.url": "s3://bucket/x",
                      "storage.quota": 1})


class _PartsClient:
    """Records the parts an S3 upload sends (no server: only the cutting is checked)."""

    def __init__(self):
        self.parts = []

    def upload_part(self, Body, PartNumber, **_):
        self.parts.append((PartNumber, bytes(Body)))
        return {"ETag": f'"{PartNumber}"'}


@pytest.mark.parametrize("chunk_sizes", [
    [], [1], [7], [8], [9], [3, 5], [3, 5, 8, 1], [20], [8, 8, 8], [2] * 13, [5, 11, 4, 9]])
def test_s3_parts_are_cut_at_the_part_size_whatever_the_chunks(tmp_path, chunk_sizes):
    from collector.archives.storage.s3 import S3ArchiveStorage, S3Staged

    client = _PartsClient()
    backend = S3ArchiveStorage(tmp_path, client, "bucket", "", quota=1)
    data = os.urandom(sum(chunk_sizes))
    chunks, at = [], 0
    for size in chunk_sizes:
        chunks.append(data[at:at + size])
        at += size
    backend._send(S3Staged("ab" * 16, "upload-id"), iter(chunks), 8)
    numbers = [number for number, _ in client.parts]
    assert numbers == list(range(1, len(numbers) + 1))
    sizes = [len(body) for _, body in client.parts]
    # Whole parts, then one short part; an empty archive is one empty part.
    assert all(size == 8 for size in sizes[:-1]) and 0 <= sizes[-1] <= 8
    assert sizes[-1] > 0 or len(sizes) == 1
    assert b"".join(body for _, body in client.parts) == data
