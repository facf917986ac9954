"""The contract every store of partial tus uploads (``IUploadStore``) passes, used as the
tus rules use it: create, lock, append at the committed offset, read back, finish into an
archive through the storage manager and its transaction, remove, list.

A test module subclasses ``UploadStoreContract`` and provides a ``stores`` fixture: the
archive backend and the upload store under test, as ``make_upload_stores`` pairs them.
"""

import hashlib
import os

import pytest
import transaction
from zope.interface.verify import verifyObject

from collector.archives.storage import IUploadStore, StorageManager, UploadBusy

MiB = 1024 * 1024
MAX_SIZE = 10 * 1024**3


def _chunks(blob, size=700_000):
    return (blob[i:i + size] for i in range(0, len(blob), size))


def _read(store, key, layout, length):
    return b"".join(store.read(key, layout, length))


class Refused(Exception):
    """A request body that breaks off (the client went away, or its checksum failed)."""


def _breaking(blob, after):
    yield blob[:after]
    raise Refused()


class UploadStoreContract:

    @pytest.fixture
    def backend(self, stores):
        return stores[0]

    @pytest.fixture
    def store(self, stores):
        return stores[1]

    def finish(self, backend, store, key, layout, blob, commit=True):
        """``store.finish`` in a transaction that commits (or aborts); the staged archive."""
        tm = transaction.TransactionManager(explicit=True)
        tm.begin()
        manager = StorageManager(backend, tm)
        staged = store.finish(manager, key, layout, len(blob), hashlib.md5(blob).hexdigest(),
                              hashlib.sha256(blob).hexdigest())
        if commit:
            tm.commit()
        else:
            tm.abort()
        return staged

    def test_provides_the_interface(self, store):
        assert verifyObject(IUploadStore, store)

    def test_a_new_upload_is_owned_by_its_store(self, store):
        key, layout = store.create(MAX_SIZE)
        assert store.owns(layout)
        assert key in store.location(key)
        assert _read(store, key, layout, 0) == b""

    def test_appended_chunks_read_back_in_order(self, store):
        key, layout = store.create(MAX_SIZE)
        # Across an S3 segment's boundary (8 MiB), in odd pieces, then a small chunk.
        first, second = os.urandom(9 * MiB + 17), os.urandom(1000)
        store.append(key, layout, 0, _chunks(first))
        store.append(key, layout, len(first), iter([second]))
        assert _read(store, key, layout, len(first) + len(second)) == first + second
        assert _read(store, key, layout, 10) == first[:10]

    def test_bytes_past_the_offset_are_replaced(self, store):
        """What a request whose commit never came left counts for nothing."""
        key, layout = store.create(MAX_SIZE)
        committed, lost, sent = b"a" * 5000, b"b" * 3000, b"c" * 100
        store.append(key, layout, 0, iter([committed + lost]))
        store.append(key, layout, len(committed), iter([sent]))
        assert _read(store, key, layout, 5100) == committed + sent
        # An empty chunk at the committed offset stores nothing and breaks nothing.
        store.append(key, layout, 5100, iter([]))
        assert _read(store, key, layout, 5100) == committed + sent

    def test_a_broken_body_leaves_the_committed_bytes(self, store):
        key, layout = store.create(MAX_SIZE)
        committed = os.urandom(3 * MiB)
        store.append(key, layout, 0, iter([committed]))
        with pytest.raises(Refused):
            store.append(key, layout, len(committed), _breaking(os.urandom(MiB), 1000))
        assert _read(store, key, layout, len(committed)) == committed
        rest = os.urandom(2000)
        store.append(key, layout, len(committed), iter([rest]))
        assert _read(store, key, layout, len(committed) + 2000) == committed + rest

    def test_reading_more_than_is_stored_fails(self, store):
        key, layout = store.create(MAX_SIZE)
        store.append(key, layout, 0, iter([b"short"]))
        with pytest.raises(OSError):
            _read(store, key, layout, 6)

    def test_lock_is_exclusive_until_released(self, store):
        key, _ = store.create(MAX_SIZE)
        held = store.lock(key)
        if held is None:
            assert store.shared  # the database row lock keeps writers apart there
            return
        with pytest.raises(UploadBusy):
            store.lock(key)
        held.release()
        store.lock(key).release()

    def test_finish_commits_an_archive_and_keeps_the_upload_until_removed(self, backend,
                                                                          store):
        key, layout = store.create(MAX_SIZE)
        blob = os.urandom(9 * MiB + 5)
        store.append(key, layout, 0, _chunks(blob))
        staged = self.finish(backend, store, key, layout, blob)
        assert (staged.size, staged.sha256) == (len(blob), hashlib.sha256(blob).hexdigest())
        with backend.open(staged.key) as archive:
            assert archive.read() == blob
        assert _read(store, key, layout, len(blob)) == blob
        store.remove(key)
        assert key not in set(store.keys(0))
        with pytest.raises(OSError):
            _read(store, key, layout, len(blob))

    def test_an_aborted_finish_leaves_the_upload_whole_and_no_archive(self, backend, store):
        key, layout = store.create(MAX_SIZE)
        blob = os.urandom(2 * MiB)
        store.append(key, layout, 0, iter([blob]))
        staged = self.finish(backend, store, key, layout, blob, commit=False)
        assert not backend.exists(staged.key)
        assert list(backend.keys()) == [] and list(backend.stale_staging(0)) == []
        assert _read(store, key, layout, len(blob)) == blob
        # Finished again (the client resends the last chunk), it becomes the archive.
        again = self.finish(backend, store, key, layout, blob)
        assert list(backend.keys()) == [again.key]

    def test_keys_list_uploads_untouched_for_a_while(self, store):
        key, layout = store.create(MAX_SIZE)
        store.append(key, layout, 0, iter([b"bytes"]))
        assert key in set(store.keys(0))
        assert key not in set(store.keys(3600))

    def test_removing_twice_or_a_missing_upload_is_no_error(self, store):
        key, layout = store.create(MAX_SIZE)
        store.append(key, layout, 0, iter([b"bytes"]))
        store.remove(key)
        store.remove(key)
        store.remove("ab" * 16)
        assert key not in set(store.keys(0))
