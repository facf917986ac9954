"""The storage manager joins the transaction: publish on commit, nothing on abort."""

import hashlib
import os

import pytest
import transaction

from collector.archives.storage import LocalArchiveStorage, StorageManager, TooLarge


class FailingVote:
    """A data manager that votes no after the storage manager has published."""

    def __init__(self, tm):
        self.transaction_manager = tm

    def sortKey(self):
        return "~zz-fails-last"

    def abort(self, txn):
        pass

    tpc_begin = commit = tpc_finish = tpc_abort = abort

    def tpc_vote(self, txn):
        raise RuntimeError("database refused the commit")


@pytest.fixture
def backend(tmp_path):
    return LocalArchiveStorage(tmp_path)


def _files(backend):
    return sorted(p.name for p in backend.archives.rglob("*") if p.is_file())


def test_commit_publishes_with_hashes(backend):
    tm = transaction.TransactionManager(explicit=True)
    data = [os.urandom(300_000) for _ in range(5)]
    with tm:
        storage = StorageManager(backend, tm)
        staged = storage.stage(iter(data), max_size=10**9)
        assert _files(backend) == []  # not visible before the commit
    blob = b"".join(data)
    assert staged.sha256 == hashlib.sha256(blob).hexdigest()
    assert staged.md5 == hashlib.md5(blob).hexdigest() and staged.size == len(blob)
    assert backend.path(staged.key).read_bytes() == blob
    assert list(backend.staging.iterdir()) == []


def test_abort_removes_staging(backend):
    tm = transaction.TransactionManager(explicit=True)
    tm.begin()
    StorageManager(backend, tm).stage([b"abc"], max_size=10)
    assert len(list(backend.staging.iterdir())) == 1
    tm.abort()
    assert list(backend.staging.iterdir()) == [] and _files(backend) == []


def test_failed_vote_after_publish_takes_the_file_back(backend):
    tm = transaction.TransactionManager(explicit=True)
    tm.begin()
    StorageManager(backend, tm).stage([b"abc"], max_size=10)
    tm.get().join(FailingVote(tm))
    with pytest.raises(RuntimeError):
        tm.commit()
    tm.abort()
    assert _files(backend) == [] and list(backend.staging.iterdir()) == []


def test_too_large_is_refused_while_streaming(backend):
    tm = transaction.TransactionManager(explicit=True)
    tm.begin()
    with pytest.raises(TooLarge):
        StorageManager(backend, tm).stage([b"12345", b"678"], max_size=6)
    tm.abort()
    assert list(backend.staging.iterdir()) == []


def test_delete_only_after_a_successful_commit(backend):
    tm = transaction.TransactionManager(explicit=True)
    with tm:
        staged = StorageManager(backend, tm).stage([b"keep me"], max_size=100)
    tm.begin()
    StorageManager(backend, tm).delete_after_commit(staged.key)
    tm.abort()
    assert backend.exists(staged.key)
    with tm:
        StorageManager(backend, tm).delete_after_commit(staged.key)
    assert not backend.exists(staged.key)


def test_stale_staging_and_keys(backend):
    (backend.staging / "old.part").write_bytes(b"x")
    os.utime(backend.staging / "old.part", (0, 0))
    (backend.staging / "new.part").write_bytes(b"x")
    assert [p.name for p in backend.stale_staging(3600)] == ["old.part"]
    assert list(backend.keys()) == []
    assert backend.writable()
