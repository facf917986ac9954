"""The contract every archive backend (``IArchiveStorage``) passes, through the storage
manager and the transaction as the app uses them (Kinto's ``storage/testing.py`` shape).

A test module subclasses ``ArchiveStorageContract`` and provides a ``backend`` fixture.
"""

import hashlib
import io
import os

import pytest
import transaction
from zope.interface.verify import verifyObject

from collector.archives.storage import IArchiveStorage, StorageManager, TooLarge
from collector.archives.storage.streams import MD5_INLINE_MAX


class FailingVote:
    """A data manager that votes no after the storage manager has published (the
    database refusing its commit)."""

    def __init__(self, tm):
        self.transaction_manager = tm

    def sortKey(self):
        return "~zz-fails-last"

    def abort(self, txn):
        pass

    tpc_begin = commit = tpc_finish = tpc_abort = abort

    def tpc_vote(self, txn):
        raise RuntimeError("database refused the commit")


class Database:
    """Stands for zope.sqlalchemy: sorted after the storage manager; at its vote (the
    database's commit) it records whether the archives its rows name exist."""

    def __init__(self, tm, backend, keys):
        self.transaction_manager = tm
        self.backend, self.keys, self.seen = backend, keys, None

    def sortKey(self):
        return "~sqlalchemy:test"

    def abort(self, txn):
        pass

    tpc_begin = commit = tpc_finish = tpc_abort = abort

    def tpc_vote(self, txn):
        self.seen = {key: self.backend.exists(key) for key in self.keys}


def _chunks(blob, size=300_000):
    return (blob[i:i + size] for i in range(0, len(blob), size))


class ArchiveStorageContract:
    # Whether the server reports when staging began (moto's server dates every multipart
    # upload 2010-11-10, so the age rule cannot be seen there; AWS and MinIO report it).
    staging_times_are_real = True

    def leftovers(self, backend):
        """Everything the backend holds: archives and staging of any age."""
        return sorted(backend.keys()) + [str(item) for item in backend.stale_staging(0)]

    def store(self, backend, blob):
        tm = transaction.TransactionManager(explicit=True)
        with tm:
            staged = StorageManager(backend, tm).stage(_chunks(blob), max_size=10**10)
        return staged.key

    def test_provides_the_interface(self, backend):
        assert verifyObject(IArchiveStorage, backend)

    def test_commit_publishes_with_hashes(self, backend):
        tm = transaction.TransactionManager(explicit=True)
        # Larger than an S3 part, not a multiple of it: several parts and a short last one.
        blob = os.urandom(19 * 1024 * 1024 + 12345)
        with tm:
            staged = StorageManager(backend, tm).stage(_chunks(blob), max_size=10**9)
            assert list(backend.keys()) == []  # not visible before the commit
        assert staged.sha256 == hashlib.sha256(blob).hexdigest()
        # Past MD5_INLINE_MAX the md5 is left to the background job (null until then).
        md5 = hashlib.md5(blob).hexdigest() if len(blob) <= MD5_INLINE_MAX else None
        assert staged.md5 == md5 and staged.size == len(blob)
        with backend.open(staged.key) as handle:
            assert handle.read() == blob
        assert self.leftovers(backend) == [staged.key]

    def test_small_archive_has_its_md5_at_once(self, backend):
        blob = os.urandom(min(MD5_INLINE_MAX, 4 * 1024 * 1024))
        tm = transaction.TransactionManager(explicit=True)
        with tm:
            staged = StorageManager(backend, tm).stage(_chunks(blob), max_size=10**9)
        assert staged.md5 == hashlib.md5(blob).hexdigest()
        assert staged.sha256 == hashlib.sha256(blob).hexdigest()

    def test_empty_archive(self, backend):
        key = self.store(backend, b"")
        with backend.open(key) as handle:
            assert handle.read() == b""

    def test_abort_leaves_nothing(self, backend):
        tm = transaction.TransactionManager(explicit=True)
        tm.begin()
        StorageManager(backend, tm).stage(_chunks(os.urandom(9 * 1024 * 1024)),
                                          max_size=10**9)
        assert len(self.leftovers(backend)) == 1  # the staging, until the abort
        tm.abort()
        assert self.leftovers(backend) == []

    def test_too_large_is_refused_while_streaming_and_leaves_nothing(self, backend):
        tm = transaction.TransactionManager(explicit=True)
        tm.begin()
        with pytest.raises(TooLarge):
            StorageManager(backend, tm).stage([b"12345", b"678"], max_size=6)
        tm.abort()
        assert self.leftovers(backend) == []

    def test_failed_vote_after_publish_takes_the_archive_back(self, backend):
        tm = transaction.TransactionManager(explicit=True)
        tm.begin()
        staged = StorageManager(backend, tm).stage([b"abc"], max_size=10)
        tm.get().join(FailingVote(tm))
        with pytest.raises(RuntimeError):
            tm.commit()
        tm.abort()
        assert not backend.exists(staged.key)
        assert self.leftovers(backend) == []

    def test_the_archive_exists_before_the_database_commits(self, backend):
        tm = transaction.TransactionManager(explicit=True)
        tm.begin()
        staged = StorageManager(backend, tm).stage([b"row and object"], max_size=100)
        database = Database(tm, backend, [staged.key])
        tm.get().join(database)
        tm.commit()
        assert database.seen == {staged.key: True}

    def test_adopted_file_is_published_and_left_alone_by_an_abort(self, backend, tmp_path):
        blob = os.urandom(6 * 1024 * 1024)
        source = tmp_path / "finished-upload"
        source.write_bytes(blob)
        md5, sha256 = hashlib.md5(blob).hexdigest(), hashlib.sha256(blob).hexdigest()
        tm = transaction.TransactionManager(explicit=True)
        tm.begin()
        StorageManager(backend, tm).adopt(source, len(blob), md5, sha256)
        tm.abort()
        assert source.read_bytes() == blob and self.leftovers(backend) == []
        tm.begin()
        StorageManager(backend, tm).adopt(source, len(blob), md5, sha256)
        tm.get().join(FailingVote(tm))
        with pytest.raises(RuntimeError):
            tm.commit()
        tm.abort()
        assert source.read_bytes() == blob and self.leftovers(backend) == []
        with tm:
            staged = StorageManager(backend, tm).adopt(source, len(blob), md5, sha256)
        assert (staged.size, staged.md5, staged.sha256) == (len(blob), md5, sha256)
        with backend.open(staged.key) as handle:
            assert handle.read() == blob
        # The file became the archive (local: renamed; S3: uploaded, then removed).
        assert not source.exists()

    def test_delete_only_after_a_successful_commit(self, backend):
        key = self.store(backend, b"keep me")
        tm = transaction.TransactionManager(explicit=True)
        tm.begin()
        StorageManager(backend, tm).delete_after_commit(key)
        tm.abort()
        assert backend.exists(key)
        tm.begin()
        StorageManager(backend, tm).delete_after_commit(key)
        assert backend.exists(key)  # not before the commit
        tm.commit()
        assert not backend.exists(key) and list(backend.keys()) == []
        backend.delete(key)  # deleting a missing archive is not an error

    def test_ranged_reads(self, backend):
        blob = os.urandom(3 * 1024 * 1024 + 7)
        key = self.store(backend, blob)
        with backend.open(key) as handle:
            assert handle.seekable() and handle.readable()
            assert handle.read(10) == blob[:10]
            handle.seek(2 * 1024 * 1024 + 3)
            assert handle.read(100_000) == blob[2 * 1024 * 1024 + 3:][:100_000]
            handle.seek(5)
            assert handle.read(5) == blob[5:10]
            assert handle.tell() == 10
            handle.seek(-7, io.SEEK_END)
            assert handle.read() == blob[-7:]
            assert handle.read(10) == b""
            handle.seek(len(blob) + 100)
            assert handle.read(10) == b""

    def test_open_of_a_missing_archive_is_file_not_found(self, backend):
        with pytest.raises(FileNotFoundError):
            backend.open("ab" + "0" * 30)
        assert not backend.exists("ab" + "0" * 30)

    def test_keys_list_every_archive_for_purge(self, backend):
        keys = {self.store(backend, f"archive {n}".encode()) for n in range(3)}
        assert set(backend.keys()) == keys
        orphan = sorted(keys)[0]
        backend.delete(orphan)
        assert set(backend.keys()) == keys - {orphan}
        # Put in place just now: its row may be committing, so no purge may take it yet.
        assert list(backend.keys(older_than=3600)) == []

    def test_usage_and_writable(self, backend):
        usage = backend.usage()
        assert set(usage) >= {"total", "used", "free"}
        assert usage["total"] > 0 and 0 <= usage["free"] <= usage["total"]
        assert usage["used"] <= usage["total"]
        assert backend.writable()

    def test_stale_staging_finds_what_a_crash_left(self, backend):
        # A process died while staging: no transaction will ever abort this.
        staged = backend.new_staged()
        backend.write(staged, [b"half an upload"], max_size=100)
        stale = list(backend.stale_staging(0))
        assert len(stale) == 1
        if self.staging_times_are_real:
            assert list(backend.stale_staging(3600)) == []  # young: may be committing now
        backend.remove_stale(stale[0])
        assert self.leftovers(backend) == []
