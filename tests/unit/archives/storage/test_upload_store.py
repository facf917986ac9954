"""The stores of partial tus uploads pass one contract (upload_store_contract.py): local
files, S3 segments locked by the database row (PostgreSQL), and S3 segments locked by a
local file (SQLite); plus what is particular to each, and the choice of store."""

import os

import pytest

from collector.archives.storage import (
    LocalArchiveStorage,
    LocalUploadStore,
    make_backend,
    make_upload_stores,
)

from .upload_store_contract import MAX_SIZE, UploadStoreContract

SQLITE = "sqlite:////tmp/unused.sqlite3"
POSTGRESQL = "postgresql+psycopg://unused@127.0.0.1/unused"


def _s3_stores(tmp_path, s3_server, db_url):
    settings = {"data_dir": str(tmp_path / "data"), "db_url": db_url,
                **s3_server.settings(quota=10 * 1024**3)}
    backend = make_backend(settings)
    return backend, make_upload_stores(settings, backend)


class TestLocalUploadStore(UploadStoreContract):

    @pytest.fixture
    def stores(self, tmp_path):
        settings = {"data_dir": str(tmp_path / "data"), "db_url": SQLITE}
        backend = LocalArchiveStorage(settings["data_dir"])
        return backend, make_upload_stores(settings, backend).new

    def test_an_upload_is_a_file_under_uploads(self, store, tmp_path):
        key, layout = store.create(MAX_SIZE)
        assert layout is None and store.label == "upload file"
        assert store.path(key) == tmp_path / "data" / "uploads" / key
        assert store.path(key).read_bytes() == b""

    def test_the_archive_is_a_second_name_of_the_file(self, backend, store):
        """Moved into place by a hard link, never copied: the same inode."""
        key, layout = store.create(MAX_SIZE)
        blob = os.urandom(1000)
        store.append(key, layout, 0, iter([blob]))
        staged = self.finish(backend, store, key, layout, blob)
        assert os.path.samefile(backend.path(staged.key), store.path(key))
        assert list(backend.staging.iterdir()) == []

    def test_a_missing_file_is_not_found(self, store):
        with pytest.raises(FileNotFoundError):
            store.append("ab" * 16, None, 0, iter([b"x"]))
        assert store.lock("ab" * 16) is None


class TestS3UploadStore(UploadStoreContract):
    """PostgreSQL: every instance reaches the segments; the row lock keeps writers apart."""

    @pytest.fixture
    def stores(self, tmp_path, s3_server):
        backend, uploads = _s3_stores(tmp_path, s3_server, POSTGRESQL)
        return backend, uploads.new

    def test_segments_are_named_from_the_key_under_the_prefix(self, store, backend,
                                                              s3_server, tmp_path):
        key, layout = store.create(MAX_SIZE)
        assert layout == 8 * 1024 * 1024 and store.shared and store.lock(key) is None
        store.append(key, layout, 0, iter([b"x" * (layout + 1)]))
        assert sorted(s3_server.objects(f"{backend.prefix}uploads/").items()) == [
            (f"{backend.prefix}uploads/{key}/000000", layout),
            (f"{backend.prefix}uploads/{key}/000001", 1)]
        assert list((tmp_path / "data" / "uploads").iterdir()) == []

    def test_an_empty_chunk_makes_no_request(self, store, monkeypatch):
        key, layout = store.create(MAX_SIZE)
        store.append(key, layout, 0, iter([b"abc"]))

        def refused(**kwargs):
            raise AssertionError("no request expected")

        monkeypatch.setattr(store.client, "get_object", refused)
        monkeypatch.setattr(store.client, "put_object", refused)
        store.append(key, layout, 3, iter([]))

    def test_segments_count_in_the_usage(self, store, backend):
        backend.USAGE_TTL = 0
        key, layout = store.create(MAX_SIZE)
        store.append(key, layout, 0, iter([b"y" * 1234]))
        assert backend.usage()["used"] == 1234


class TestS3UploadStoreOnSqlite(UploadStoreContract):
    """SQLite (one machine): the segments in S3, an empty local file as each upload's lock."""

    @pytest.fixture
    def stores(self, tmp_path, s3_server):
        backend, uploads = _s3_stores(tmp_path, s3_server, SQLITE)
        return backend, uploads.new

    def test_the_lock_is_a_local_file_removed_with_the_upload(self, store, tmp_path):
        key, layout = store.create(MAX_SIZE)
        assert not store.shared
        lock_file = tmp_path / "data" / "uploads" / key
        assert lock_file.read_bytes() == b""
        store.remove(key)
        assert not lock_file.exists()


def test_each_upload_finds_its_store(tmp_path, s3_server):
    """A local upload begun before the move to S3 is still found there; segments are not
    found on a server that has left S3."""
    backend, uploads = _s3_stores(tmp_path, s3_server, POSTGRESQL)
    assert uploads.of(8 * 1024 * 1024) is uploads.new
    assert isinstance(uploads.of(None), LocalUploadStore)
    local = make_upload_stores({"data_dir": str(tmp_path / "local"), "db_url": SQLITE},
                               LocalArchiveStorage(tmp_path / "local"))
    assert local.of(None) is local.new and local.of(8 * 1024 * 1024) is None
